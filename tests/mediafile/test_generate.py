from __future__ import annotations

from itertools import islice
from pathlib import Path

import av
import pytest

from chairside.mediafile import probe_video
from chairside.mediafile.generate import encoder_available, make_long_video, make_video

MiB = 1 << 20


def test_make_video_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    def make(name: str, seed: int) -> Path:
        return make_video(tmp_path / name, seconds=0.5, width=320, height=180, seed=seed)

    first, again, other = make("a.mp4", 3), make("b.mp4", 3), make("c.mp4", 4)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_make_video_starts_with_the_requested_black_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "a.mp4", seconds=0.3, width=160, height=90, black_lead_frames=3)
    with av.open(str(path)) as container:
        lumas = [_mean_luma(frame) for frame in islice(container.decode(video=0), 5)]
    assert all(luma <= 17 for luma in lumas[:3])
    assert all(luma > 40 for luma in lumas[3:])


def _mean_luma(frame: av.VideoFrame) -> float:
    plane = frame.planes[0]
    data = bytes(plane)
    rows = [data[row * plane.line_size :][: plane.width] for row in range(plane.height)]
    return sum(map(sum, rows)) / (plane.width * plane.height)


def test_make_video_records_label_as_title(tmp_path: Path) -> None:
    path = make_video(tmp_path / "a.mp4", seconds=0.2, width=160, height=90, label="山田 molar")
    with av.open(str(path)) as container:
        assert container.metadata.get("title") == "山田 molar"


def test_make_video_rejects_odd_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        make_video(tmp_path / "a.mp4", width=321, height=180)
    assert not (tmp_path / "a.mp4").exists()


def test_hevc_encoder_is_reported_consistently() -> None:
    assert encoder_available("h264")
    assert encoder_available("hevc") == ("libx265" in av.codecs_available)
    assert not encoder_available("prores")


def test_long_video_reaches_target_size_with_duration_matching_bitrate(tmp_path: Path) -> None:
    path = make_long_video(tmp_path / "long.mp4", target_bytes=64 * MiB)
    size = path.stat().st_size
    info = probe_video(path)  # includes the index-vs-file-size and tail-decode checks
    assert size >= 64 * MiB
    assert info.duration_s == pytest.approx(size * 8 / 15_000_000, rel=0.05)
    assert (info.width, info.height, info.codec, info.fps) == (1920, 1080, "h264", 30.0)


def test_long_video_by_duration_is_exact_to_the_frame(tmp_path: Path) -> None:
    path = make_long_video(tmp_path / "long.mp4", seconds=7.5, width=320, height=180,
                           bitrate=1_000_000, faststart=True)  # fmt: skip
    assert probe_video(path).duration_s == pytest.approx(7.5, abs=1 / 30)


def test_long_video_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="target_bytes or seconds"):
        make_long_video(tmp_path / "long.mp4")
