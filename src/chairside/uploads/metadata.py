"""An upload's tus metadata, checked: ids, the file's own name, the capture time (Japan time when no zone)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from chairside.domain.calendar import CLINIC_TZ
from chairside.domain.text import UnsafeText, visible_text
from chairside.uploads.tus import bad

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_filename(name: str) -> str:
    """The file's own name in NFC; refused with a path, control or bidi characters (a name that displays
    in another order than it is), or nothing visible; no name at all is 'upload'."""
    if not name.strip():
        return "upload"
    try:
        visible = visible_text(name)
    except UnsafeText:
        visible = ""
    if not visible or _UNSAFE_NAME.search(visible) or visible in (".", "..") or len(visible) > 255:
        raise bad(
            "The file name contains characters that are not allowed (a path, '/' or '\\', control or "
            "text-direction characters, or only invisible ones). Send only the file's own name, such as "
            "'IMG_0001.JPG'.",
            code="bad-filename",
        )
    return visible


# A capture time a clinic's photo or recording can have: old film scans are dated back to 1900; the far end
# keeps every later date computation (UTC, month ends, cursors) away from the calendar's end at 9999.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def parse_captured_at(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise bad(f"captured_at '{value[:40]}' is not an ISO 8601 date and time, "
                   "such as 2026-11-24T10:30:00+09:00.", code="bad-captured-at") from None
    when = when if when.tzinfo else when.replace(tzinfo=CLINIC_TZ)
    try:
        in_range = EARLIEST <= when.astimezone(UTC) < LATEST
    except OverflowError:  # 0001-01-01 or 9999-12-31 moved to UTC leaves the calendar
        in_range = False
    if not in_range:
        raise bad(f"captured_at '{value[:40]}' is outside the years 1900 to 2199; send the date and time the "
                  "photo or recording was taken, such as 2026-11-24T10:30:00+09:00.", code="bad-captured-at")
    return when


def metadata_uuid(meta: dict[str, str], key: str) -> uuid.UUID:
    value = meta.get(key)
    if not value:
        raise bad(f"The upload's metadata must name '{key}'.", code="missing-metadata")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise bad(f"'{key}' in the upload's metadata is not a valid id.", code="bad-metadata") from None
