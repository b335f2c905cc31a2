"""JPEG thumbnails of videos and photos, and browser-ready JPEGs of HEIC/PNG photos."""

from __future__ import annotations

import io
import os
from fractions import Fraction

from PIL import Image, ImageOps, ImageStat

from chairside.mediafile._av import (
    display_rotation,
    duration_seconds,
    frame_at,
    frame_to_pil,
    open_input,
    video_stream,
)
from chairside.mediafile._photo import DEFAULT_MAX_PIXELS, open_photo
from chairside.mediafile.errors import CorruptMedia

THUMBNAIL_QUALITY = 80
DISPLAY_QUALITY = 85
#: Below this mean luma (0..255, full range) a frame counts as black.
BLACK_LUMA = 16.0
#: Where to look for a representative still, as fractions of the clip after the first try.
_LATER_POINTS = (0.25, 0.5, 0.75)

_ROTATE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
           270: Image.Transpose.ROTATE_90}  # fmt: skip


def make_thumbnail(path: str | os.PathLike[str], kind: str, max_side: int = 480,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A JPEG no larger than ``max_side`` on its long side, upright, without metadata."""
    if kind == "video":
        still = video_still(path, max_side)
    elif kind == "image":
        still = _photo(path, max_side, max_pixels)
    else:
        raise ValueError(f"kind must be 'video' or 'image', not {kind!r}")
    return _jpeg(still, quality=THUMBNAIL_QUALITY)


def make_display_jpeg(path: str | os.PathLike[str], max_side: int = 2560,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A photo (HEIC, PNG or JPEG) as an upright JPEG that every browser shows."""
    return _jpeg(_photo(path, max_side, max_pixels), quality=DISPLAY_QUALITY, progressive=True)


def _photo(path: str | os.PathLike[str], max_side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    with open_photo(path, max_pixels=max_pixels) as im:
        width, height = im.size
        scale = min(1.0, max_side / max(width, height))
        # JPEG decodes at 1/2..1/8 scale; HEIC may use its embedded thumbnail.
        im.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        upright = ImageOps.exif_transpose(im)
        rgb = _to_rgb(upright)
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode.startswith("I"):  # 16-bit greyscale PNG
        return im.convert("I").point(lambda value: value / 256).convert("RGB")
    return im.convert("RGB")


def video_still(path: str | os.PathLike[str], max_side: int) -> Image.Image:
    """A representative, upright picture from early in the clip.

    Recordings often start black while the microscope light comes up, so try
    ``min(1 s, 10 %)`` first, then later points; the first frame that is not nearly
    black wins, else the brightest one seen.
    """
    with open_input(path) as container:
        stream = video_stream(container)
        duration = duration_seconds(container, stream) or 0.0
        brightest: tuple[float, Image.Image] | None = None
        for seconds in _still_times(duration):
            frame = frame_at(container, stream, seconds)
            if frame is None:
                continue
            width, height = _fit(frame.width, frame.height, stream.sample_aspect_ratio, max_side)
            picture = frame_to_pil(frame, width, height)
            rotation = display_rotation(frame)
            if rotation:
                picture = picture.transpose(_ROTATE[rotation])
            luma = ImageStat.Stat(picture.convert("L")).mean[0]
            if luma >= BLACK_LUMA:
                return picture
            if brightest is None or luma > brightest[0]:
                brightest = (luma, picture)
    if brightest is None:
        raise CorruptMedia.video("no picture could be decoded", detail="no frame for thumbnail")
    return brightest[1]


def _still_times(duration: float) -> list[float]:
    first = min(1.0, 0.1 * duration)
    later = [duration * point for point in _LATER_POINTS if duration * point > first]
    return [first, *later]


def _fit(width: int, height: int, sar: Fraction | None, max_side: int) -> tuple[int, int]:
    """Display size (square pixels) scaled to fit ``max_side``, never enlarged."""
    display_width = width * float(sar) if sar else float(width)
    scale = min(1.0, max_side / max(display_width, height))
    return max(2, round(display_width * scale)), max(2, round(height * scale))


def _jpeg(im: Image.Image, *, quality: int, progressive: bool = False) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=quality, optimize=True, progressive=progressive)
    return buffer.getvalue()
