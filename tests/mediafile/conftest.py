"""Real clips, encoded once per test session (each takes well under a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chairside.mediafile import generate


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def clip_1080p(clip_dir: Path) -> Path:
    """2 s of 1080p30 H.264 at 15 Mbit/s, index at the front, 3 black frames first."""
    return generate.make_video(clip_dir / "faststart.mp4", seconds=2.0, faststart=True)


@pytest.fixture(scope="session")
def clip_moov_at_end(clip_dir: Path) -> Path:
    """Same picture, index at the end (as a recorder writes it)."""
    return generate.make_video(clip_dir / "moov-at-end.mp4", seconds=2.0, faststart=False)


@pytest.fixture(scope="session")
def clips_by_layout(clip_1080p: Path, clip_moov_at_end: Path) -> dict[str, Path]:
    return {"faststart": clip_1080p, "moov_at_end": clip_moov_at_end}


@pytest.fixture(scope="session")
def hevc_clip(clip_dir: Path) -> Path:
    if not generate.encoder_available("hevc"):
        pytest.skip("PyAV's FFmpeg has no libx265 encoder")
    return generate.make_video(
        clip_dir / "hevc.mp4", seconds=1.0, width=640, height=360, codec="hevc", bitrate=2_000_000
    )
