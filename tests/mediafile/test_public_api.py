from __future__ import annotations

import chairside.mediafile


def test_public_names_are_pinned() -> None:
    assert sorted(chairside.mediafile.__all__) == [
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
    for name in chairside.mediafile.__all__:
        assert getattr(chairside.mediafile, name) is not None
