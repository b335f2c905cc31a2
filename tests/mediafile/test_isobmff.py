from __future__ import annotations

import io
import struct

import pytest

from chairside.mediafile._isobmff import BoxError, iter_top_level_boxes, parse_ftyp


def _walk(data: bytes) -> list[tuple[str, int]]:
    return [(b.type, b.size) for b in iter_top_level_boxes(io.BytesIO(data), len(data))]


def test_64_bit_box_sizes_of_recordings_over_4_gib_are_followed() -> None:
    # A >4 GiB recording stores mdat with size=1 and a 64-bit "largesize"; here small.
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 10) + b"\x00" * 10
    moov = struct.pack(">I4s", 8, b"moov")
    assert _walk(mdat + moov) == [("mdat", 26), ("moov", 8)]


def test_box_running_to_end_of_file_is_accepted() -> None:
    assert _walk(struct.pack(">I4s", 0, b"mdat") + b"\x00" * 100) == [("mdat", 108)]


def test_box_reaching_past_the_end_is_reported_as_truncation() -> None:
    with pytest.raises(BoxError) as caught:
        _walk(struct.pack(">I4s", 1000, b"mdat") + b"\x00" * 100)
    assert caught.value.truncated


def test_unreadable_box_type_is_reported_as_damage() -> None:
    with pytest.raises(BoxError) as caught:
        _walk(struct.pack(">I", 16) + b"\x00\xff\x01\x02" + b"\x00" * 8)
    assert not caught.value.truncated


def test_ftyp_brands_are_parsed() -> None:
    head = struct.pack(">I4s4sI", 24, b"ftyp", b"heic", 0) + b"mif1heic"
    ftyp = parse_ftyp(head)
    assert ftyp is not None
    assert ftyp.major == "heic"
    assert ftyp.compatible == ("mif1", "heic")
