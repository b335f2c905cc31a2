"""An upload's tus metadata, checked: ids, the file's own name, the capture time (Japan time when no zone)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from chairside.domain.calendar import CLINIC_TZ
from chairside.uploads.tus import bad

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_filename(name: str) -> str:
    if _UNSAFE_NAME.search(name) or name in (".", "..") or len(name) > 255:
        raise bad(
            "The file name contains characters that are not allowed (a path, '/' or '\\', or "
            "control characters). Send only the file's own name, such as 'IMG_0001.JPG'.",
            code="bad-filename",
        )
    return name.strip() or "upload"


def parse_captured_at(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise bad(f"captured_at '{value[:40]}' is not an ISO 8601 date and time, "
                   "such as 2026-11-24T10:30:00+09:00.", code="bad-captured-at") from None
    return when if when.tzinfo else when.replace(tzinfo=CLINIC_TZ)


def metadata_uuid(meta: dict[str, str], key: str) -> uuid.UUID:
    value = meta.get(key)
    if not value:
        raise bad(f"The upload's metadata must name '{key}'.", code="missing-metadata")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise bad(f"'{key}' in the upload's metadata is not a valid id.", code="bad-metadata") from None
