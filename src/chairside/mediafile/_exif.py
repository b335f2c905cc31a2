"""Read and write the few EXIF fields Chairside uses: capture time and orientation."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from PIL import ExifTags, Image

from chairside.domain.calendar import CLINIC_TZ

#: Capture times without a UTC offset are clinic-local; all clinics are in Japan (no DST).

ORIENTATION = 0x0112
DATETIME_ORIGINAL = 0x9003
DATETIME_DIGITIZED = 0x9004
OFFSET_TIME_ORIGINAL = 0x9011
OFFSET_TIME_DIGITIZED = 0x9012
SUBSEC_TIME_ORIGINAL = 0x9291
SUBSEC_TIME_DIGITIZED = 0x9292

#: EXIF orientations whose display swaps width and height.
TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})

_EXIF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def orientation_of(im: Image.Image) -> int | None:
    """The photo's EXIF orientation (1..8), or None when absent or invalid.

    pillow-heif applies HEIF rotation itself and resets EXIF orientation to 1, keeping the
    original value in ``info["original_orientation"]``.
    """
    value: object = im.info.get("original_orientation") if im.format == "HEIF" else None
    if value is None:
        value = im.getexif().get(ORIENTATION)
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    return None


def captured_at_of(exif: Image.Exif) -> datetime | None:
    """DateTimeOriginal (else DateTimeDigitized) as an aware datetime.

    Uses OffsetTimeOriginal when present; otherwise the time is taken as clinic-local.
    """
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    for when_tag, offset_tag, subsec_tag in (
        (DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, SUBSEC_TIME_ORIGINAL),
        (DATETIME_DIGITIZED, OFFSET_TIME_DIGITIZED, SUBSEC_TIME_DIGITIZED),
    ):
        parsed = parse_exif_datetime(
            ifd.get(when_tag), offset=ifd.get(offset_tag), subsec=ifd.get(subsec_tag)
        )
        if parsed is not None:
            return parsed
    return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 ")


def parse_exif_datetime(
    value: object, *, offset: object = None, subsec: object = None
) -> datetime | None:
    text = _text(value)
    match = _EXIF_DATETIME.match(text or "")
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:  # 0000:00:00 00:00:00 and other placeholders
        return None
    subsec_text = _text(subsec)
    if subsec_text and subsec_text.isdigit():
        naive = naive.replace(microsecond=int(subsec_text[:6].ljust(6, "0")))
    offset_match = _EXIF_OFFSET.match(_text(offset) or "")
    if offset_match is None:
        return naive.replace(tzinfo=CLINIC_TZ)
    sign, hours, minutes = offset_match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= timedelta(hours=24):
        return naive.replace(tzinfo=CLINIC_TZ)
    return naive.replace(tzinfo=timezone(-delta if sign == "-" else delta))


def build_exif(*, captured_at: datetime | None, orientation: int | None) -> Image.Exif:
    """EXIF as a camera writes it: local wall time plus its UTC offset when known."""
    exif = Image.Exif()
    if orientation is not None:
        if not 1 <= orientation <= 8:
            raise ValueError(f"EXIF orientation must be 1..8, not {orientation}")
        exif[ORIENTATION] = orientation
    if captured_at is not None:
        ifd = exif.get_ifd(ExifTags.IFD.Exif)
        ifd[DATETIME_ORIGINAL] = captured_at.strftime("%Y:%m:%d %H:%M:%S")
        if captured_at.microsecond:
            ifd[SUBSEC_TIME_ORIGINAL] = f"{captured_at.microsecond:06d}"
        utcoffset = captured_at.utcoffset()
        if utcoffset is not None:
            minutes = int(utcoffset.total_seconds()) // 60
            sign = "-" if minutes < 0 else "+"
            ifd[OFFSET_TIME_ORIGINAL] = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return exif
