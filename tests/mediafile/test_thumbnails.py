from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from chairside.mediafile import CorruptMedia, make_display_jpeg, make_thumbnail
from chairside.mediafile.generate import make_heic, make_jpeg, make_png, make_video


def _open_jpeg(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG"
    im.load()
    return im


def _brightness(im: Image.Image) -> float:
    return float(ImageStat.Stat(im.convert("L")).mean[0])


def test_video_thumbnail_is_a_bright_jpeg_although_the_clip_starts_black(
    clip_1080p: Path,
) -> None:
    im = _open_jpeg(make_thumbnail(clip_1080p, "video"))
    assert im.size == (480, 270)
    assert _brightness(im) > 60


def test_video_thumbnail_looks_further_when_the_early_point_is_still_black(
    tmp_path: Path,
) -> None:
    # 40 black frames: the first try (10 % of 2 s = frame 6) is black, later ones are not.
    path = make_video(tmp_path / "dark-start.mp4", seconds=2.0, width=320, height=180,
                      black_lead_frames=40)  # fmt: skip
    assert _brightness(_open_jpeg(make_thumbnail(path, "video"))) > 60


def test_all_black_video_still_gets_a_thumbnail(tmp_path: Path) -> None:
    path = make_video(tmp_path / "black.mp4", seconds=0.5, width=160, height=90,
                      black_lead_frames=15)  # fmt: skip
    im = _open_jpeg(make_thumbnail(path, "video"))
    assert _brightness(im) < 16


def test_portrait_phone_video_thumbnail_is_upright(tmp_path: Path) -> None:
    path = make_video(tmp_path / "phone.mp4", seconds=0.3, width=320, height=180, rotation=90)
    assert _open_jpeg(make_thumbnail(path, "video")).size == (180, 320)


def test_hevc_video_thumbnail_works(hevc_clip: Path) -> None:
    im = _open_jpeg(make_thumbnail(hevc_clip, "video", max_side=320))
    assert im.size == (320, 180)
    assert _brightness(im) > 30


def test_heic_thumbnail_is_an_upright_jpeg(tmp_path: Path) -> None:
    path = make_heic(tmp_path / "phone.heic", width=640, height=480, orientation=6)
    im = _open_jpeg(make_thumbnail(path, "image"))
    assert im.size == (360, 480)


def test_jpeg_thumbnail_applies_exif_orientation(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "a.jpg", width=800, height=600, orientation=6)
    im = _open_jpeg(make_thumbnail(path, "image", max_side=200))
    assert im.size == (150, 200)
    # The generator marks the stored top-left corner white; turned 90° clockwise for
    # display it ends up top-right.
    rgb = im.convert("RGB")
    assert _brightness(rgb.crop((130, 0, 150, 20))) > 230
    assert _brightness(rgb.crop((0, 0, 20, 20))) < 230


def test_thumbnail_carries_no_exif(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "a.jpg", width=320, height=240, orientation=6)
    im = _open_jpeg(make_thumbnail(path, "image"))
    assert im.getexif().get(0x0112) is None


def test_small_photo_is_not_enlarged(tmp_path: Path) -> None:
    path = make_png(tmp_path / "a.png", width=100, height=80)
    assert _open_jpeg(make_thumbnail(path, "image")).size == (100, 80)


def test_transparent_png_is_flattened_onto_white(tmp_path: Path) -> None:
    path = make_png(tmp_path / "a.png", width=400, height=400, alpha=True)
    im = _open_jpeg(make_display_jpeg(path))
    assert im.mode == "RGB"
    assert _brightness(im.crop((0, 0, 20, 20))) > 245


def test_display_jpeg_of_heic_fits_the_requested_size(tmp_path: Path) -> None:
    path = make_heic(tmp_path / "a.heic", width=800, height=600)
    im = _open_jpeg(make_display_jpeg(path, max_side=500))
    assert im.size == (500, 375)


def test_thumbnail_of_truncated_photo_is_corrupt(tmp_path: Path) -> None:
    data = make_jpeg(tmp_path / "a.jpg", width=640, height=480).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptMedia):
        make_thumbnail(cut, "image")


def test_unknown_kind_is_a_programming_error(clip_1080p: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        make_thumbnail(clip_1080p, "audio")
