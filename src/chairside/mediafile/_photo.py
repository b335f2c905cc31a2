"""Open photos with Pillow safely: only the parser the bytes call for, errors translated."""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from chairside.mediafile.errors import CorruptMedia, UnsupportedMedia
from chairside.mediafile.sniff import Sniffed, sniff

#: Pillow plugin names per sniffed MIME type; Pillow tries no other parser.
PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/heic": "HEIF"}

# Image decoding failures Pillow and pillow-heif raise for damaged files.
_IMAGE_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


#: The pixel budget of one photo (settings.max_photo_pixels): 50 MP covers the largest intraoral and DSLR photos.
DEFAULT_MAX_PIXELS = 50_000_000


@contextmanager
def open_photo(
    path: str | os.PathLike[str], sniffed: Sniffed | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[Image.Image]:
    """Open a photo with only the Pillow plugin its bytes call for; refused (before any pixel is decoded:
    Pillow reads only the header on open) when it has more than `max_pixels` pixels."""
    sniffed = sniffed or sniff(path)
    if sniffed.kind != "image":
        raise UnsupportedMedia.wrong_kind("photo", "video")
    if sniffed.mime == "image/heic":
        # Registers the HEIC opener with Pillow on first use: pillow-heif costs ~7 MB of memory
        # that a server receiving only videos and JPEGs never needs.
        from chairside.mediafile import _heif  # noqa: F401
    with (
        open(path, "rb") as fp,
        corrupt_photo_on_error(),
        Image.open(fp, formats=[PIL_FORMATS[sniffed.mime]]) as im,
    ):
        width, height = im.size
        if width * height > max_pixels:
            raise UnsupportedMedia.too_large(width * height / 1e6)
        yield im


@contextmanager
def corrupt_photo_on_error() -> Iterator[None]:
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise UnsupportedMedia.too_large(_megapixels(exc)) from exc
    except _IMAGE_DECODE_ERRORS as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise CorruptMedia.photo(
            "it could not be read to the end", detail=f"{type(exc).__name__}: {exc}"
        ) from exc


def _megapixels(exc: Image.DecompressionBombError) -> float:
    match = re.search(r"\d+", str(exc))  # "Image size (N pixels) exceeds limit of ..."
    return int(match[0]) / 1e6 if match else 0.0
