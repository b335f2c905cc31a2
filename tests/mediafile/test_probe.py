from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chairside.mediafile import CorruptMedia, UnsupportedMedia, probe_image, probe_video
from chairside.mediafile.generate import make_heic, make_jpeg, make_png, make_video

FRAME = 1 / 30

PhotoMaker = Callable[..., Path]


def _cut(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _mdat(data: bytes) -> tuple[int, int]:
    """Offset and size of the top-level 'mdat' box (32-bit size, as the generator writes)."""
    offset = 0
    while offset < len(data):
        size, box_type = struct.unpack(">I4s", data[offset : offset + 8])
        if box_type == b"mdat":
            return offset, size
        offset += size
    raise AssertionError("no mdat")


# --- videos ------------------------------------------------------------------------------


def test_probe_reports_duration_size_rate_codec_and_bitrate_of_1080p_clip(
    clip_1080p: Path,
) -> None:
    info = probe_video(clip_1080p)
    assert info.duration_s == pytest.approx(2.0, abs=FRAME)
    assert (info.width, info.height) == (1920, 1080)
    assert info.fps == pytest.approx(30.0)
    assert info.codec == "h264"
    assert info.bitrate is not None
    assert 12_000_000 <= info.bitrate <= 16_500_000
    assert info.rotation == 0


def test_probe_reads_a_clip_whose_index_is_at_the_end(clip_moov_at_end: Path) -> None:
    info = probe_video(clip_moov_at_end)
    assert info.duration_s == pytest.approx(2.0, abs=FRAME)
    assert (info.width, info.height, info.codec) == (1920, 1080, "h264")


def test_probe_reads_hevc(hevc_clip: Path) -> None:
    info = probe_video(hevc_clip)
    assert info.codec == "hevc"
    assert (info.width, info.height) == (640, 360)
    assert info.duration_s == pytest.approx(1.0, abs=FRAME)


def test_portrait_phone_video_reports_displayed_size(tmp_path: Path) -> None:
    path = make_video(tmp_path / "phone.mp4", seconds=0.3, width=320, height=180, rotation=90)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (180, 320, 90)


@pytest.mark.parametrize("layout", ["faststart", "moov_at_end"])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_mp4_is_corrupt(
    tmp_path: Path, clips_by_layout: dict[str, Path], layout: str, fraction: float
) -> None:
    cut = _cut(clips_by_layout[layout], tmp_path / "cut.mp4", fraction)
    with pytest.raises(CorruptMedia) as caught:
        probe_video(cut)
    assert "damaged or incomplete" in caught.value.message


def test_cut_mp4_is_corrupt_even_when_its_box_sizes_were_patched_to_fit(
    tmp_path: Path, clip_1080p: Path
) -> None:
    # A writer that fixed up the 'mdat' size after losing data: the boxes add up,
    # but the index still points past the end of the file.
    data = bytearray(clip_1080p.read_bytes()[: int(clip_1080p.stat().st_size * 0.9)])
    offset, _ = _mdat(bytes(data))
    data[offset : offset + 4] = struct.pack(">I", len(data) - offset)
    path = tmp_path / "patched.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMedia, match="ends before the recording does"):
        probe_video(path)


def test_garbage_after_a_valid_ftyp_is_refused(tmp_path: Path, clip_1080p: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(clip_1080p.read_bytes()[:32] + random.Random(1).randbytes(500_000))
    with pytest.raises((CorruptMedia, UnsupportedMedia)):
        probe_video(path)


@pytest.mark.parametrize("where", ["all", "tail"])
def test_intact_header_with_garbage_pictures_is_corrupt(
    tmp_path: Path, clip_1080p: Path, where: str
) -> None:
    data = bytearray(clip_1080p.read_bytes())
    offset, size = _mdat(bytes(data))
    start = offset + 8 if where == "all" else offset + size * 3 // 4
    data[start : offset + size] = random.Random(2).randbytes(offset + size - start)
    path = tmp_path / "garbled.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptMedia):
        probe_video(path)


def test_video_in_an_unsupported_codec_is_refused_naming_the_codec(tmp_path: Path) -> None:
    import av

    path = tmp_path / "mpeg4.mp4"
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(5):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    with pytest.raises(UnsupportedMedia, match="MPEG-4 Part 2") as caught:
        probe_video(path)
    assert "H.264 or H.265" in caught.value.message


def test_photo_given_to_probe_video_is_refused(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "clip.mp4", width=64, height=48)
    with pytest.raises(UnsupportedMedia, match="not a video"):
        probe_video(path)


# --- photos ------------------------------------------------------------------------------

TAKEN = datetime(2025, 3, 14, 10, 30, 15, tzinfo=timezone(timedelta(hours=9)))


@pytest.mark.parametrize("maker", [make_jpeg, make_heic, make_png], ids=["jpeg", "heic", "png"])
def test_capture_time_and_orientation_are_read_from_exif(tmp_path: Path, maker: PhotoMaker) -> None:
    path = maker(tmp_path / "photo", width=160, height=120, captured_at=TAKEN, orientation=3)
    info = probe_image(path)
    assert info.captured_at == TAKEN
    assert info.captured_at is not None
    assert info.captured_at.utcoffset() == timedelta(hours=9)
    assert info.orientation == 3
    assert (info.width, info.height) == (160, 120)


def test_capture_time_keeps_its_own_utc_offset(tmp_path: Path) -> None:
    taken = datetime(2025, 7, 1, 8, 0, 0, tzinfo=timezone(timedelta(hours=-7)))
    info = probe_image(make_jpeg(tmp_path / "a.jpg", width=64, height=48, captured_at=taken))
    assert info.captured_at == taken
    assert info.captured_at is not None
    assert info.captured_at.utcoffset() == timedelta(hours=-7)


def test_capture_time_without_offset_is_taken_as_tokyo_time(tmp_path: Path) -> None:
    naive = datetime(2025, 3, 14, 10, 30, 15)
    info = probe_image(make_jpeg(tmp_path / "a.jpg", width=64, height=48, captured_at=naive))
    assert info.captured_at == naive.replace(tzinfo=ZoneInfo("Asia/Tokyo"))


def test_photo_without_exif_has_no_capture_time_or_orientation(tmp_path: Path) -> None:
    info = probe_image(make_png(tmp_path / "a.png", width=64, height=48))
    assert (info.captured_at, info.orientation, info.mime) == (None, None, "image/png")


@pytest.mark.parametrize("maker", [make_jpeg, make_heic], ids=["jpeg", "heic"])
@pytest.mark.parametrize("orientation", [6, 8])
def test_rotated_photo_reports_swapped_width_and_height(
    tmp_path: Path, maker: PhotoMaker, orientation: int
) -> None:
    path = maker(tmp_path / "photo", width=160, height=120, orientation=orientation)
    info = probe_image(path)
    assert (info.width, info.height) == (120, 160)
    assert info.orientation == orientation


@pytest.mark.parametrize("maker", [make_jpeg, make_heic, make_png], ids=["jpeg", "heic", "png"])
def test_truncated_photo_is_corrupt(tmp_path: Path, maker: PhotoMaker) -> None:
    whole = maker(tmp_path / "whole", width=320, height=240)
    cut = _cut(whole, tmp_path / "cut", 0.6)
    with pytest.raises(CorruptMedia) as caught:
        probe_image(cut)
    assert "photo file is damaged or incomplete" in caught.value.message


def test_video_given_to_probe_image_is_refused(clip_1080p: Path) -> None:
    with pytest.raises(UnsupportedMedia, match="not a photo"):
        probe_image(clip_1080p)


def test_photo_too_large_to_decode_safely_is_refused_as_too_large(tmp_path: Path) -> None:
    # Only the PNG header is read: 20000 x 10000 = 200 megapixels.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 20_000, 10_000, 8, 2, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(UnsupportedMedia, match="too large to process \\(200 megapixels\\)"):
        probe_image(path)
