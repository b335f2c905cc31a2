from __future__ import annotations

import chairside.media


def test_public_names_are_pinned() -> None:
    assert sorted(chairside.media.__all__) == [
        "CorruptMedia",
        "ImageInfo",
        "MediaError",
        "MediaKind",
        "Sniffed",
        "UnsupportedMedia",
        "VideoInfo",
        "make_display_jpeg",
        "make_thumbnail",
        "probe_image",
        "probe_video",
        "sniff",
        "sniff_head",
    ]
    for name in chairside.media.__all__:
        assert getattr(chairside.media, name) is not None
