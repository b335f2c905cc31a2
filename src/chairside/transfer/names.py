"""Names in the folder trees the import reads and the export writes: safe on Windows, macOS and Linux.

Export layout (inside the BagIt bag's `data/` folder):

    <clinic name>/<chart no> <patient name>/<YYYY-MM-DD>/<HHMMSS>_動画.mp4
                                                       /<HHMMSS>_写真.jpg
                                                       /<HHMMSS>_動画_描画1.png + .json
    patients.csv   media.csv

Every folder or file name goes through `safe_component`: no character Windows forbids
(`\\ / : * ? " < > |`, control characters), no trailing dot or space, no reserved device
name (`CON`, `NUL`, `COM1`…), NFC (macOS stores decomposed names; we compare in NFC), and
at most 120 characters (255 bytes of UTF-8 at most on every file system). The original
chart number stays exact in `patients.csv` and `media.csv`, which the import reads back.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime

from chairside.domain.calendar import CLINIC_TZ

_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f\\/:*?"<>|]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
MAX_COMPONENT = 120

#: Media ids of imported files: UUIDv5 in this namespace of "clinic/relative path/sha256".
IMPORT_NAMESPACE = uuid.UUID("6f1d3c2e-8a7b-5e4f-9c0d-1b2a3c4d5e6f")

_EXT = {"video/mp4": ".mp4", "video/quicktime": ".mov", "image/jpeg": ".jpg", "image/png": ".png",
        "image/heic": ".heic", "image/heif": ".heif"}

WORDS = {
    "ja": {"video": "動画", "image": "写真", "drawing": "描画"},
    "en": {"video": "video", "image": "photo", "drawing": "drawing"},
}


def safe_component(text: str, limit: int = MAX_COMPONENT) -> str:
    """One folder or file name that Windows, macOS and Linux all accept, readable Japanese kept."""
    text = unicodedata.normalize("NFC", text)
    text = _FORBIDDEN.sub("_", text)
    text = " ".join(text.split())  # tabs, ideographic and double spaces: one plain space
    text = text[:limit].rstrip(". ").lstrip(" ")
    if not text:
        return "_"
    if text.split(".")[0].upper().rstrip() in _RESERVED:
        text = "_" + text
    return text


def patient_folder(chart_no: str, name: str) -> str:
    return safe_component(f"{chart_no} {name}".strip())


def parse_patient_folder(folder: str) -> tuple[str, str]:
    """A source folder's chart number and name: `00123 山田太郎` → (`00123`, `山田太郎`); no space: all chart number.

    Splits at the first space (ASCII or ideographic) or, when there is none, at the first `_`
    after leading digits (`00123_山田太郎`); the chart number is never empty.
    """
    folder = unicodedata.normalize("NFC", folder).strip()
    parts = folder.replace("\u3000", " ").split(None, 1)
    if len(parts) == 2:
        return parts[0], parts[1].strip()
    m = re.fullmatch(r"(\d+)_(.+)", folder)
    if m:
        return m.group(1), m.group(2).strip()
    return folder, ""


def extension(mime: str, original: str) -> str:
    ext = _EXT.get(mime)
    if ext:
        return ext
    suffix = original.rsplit(".", 1)[-1].lower() if "." in original else ""
    return f".{safe_component(suffix, 8)}" if suffix else ".bin"


def media_stem(kind: str, captured_at: datetime, lang: str) -> tuple[str, str]:
    """The day folder and the file stem of an item: (`2026-11-20`, `101530_動画`)."""
    local = captured_at.astimezone(CLINIC_TZ)
    word = WORDS[lang]["video" if kind == "video" else "image"]
    return local.strftime("%Y-%m-%d"), f"{local.strftime('%H%M%S')}_{word}"


def import_media_id(clinic_id: uuid.UUID, relpath: str, sha256: str) -> uuid.UUID:
    """The media id of an imported file: the same file at the same place always gets the same id."""
    return uuid.uuid5(IMPORT_NAMESPACE, f"{clinic_id}/{unicodedata.normalize('NFC', relpath)}/{sha256}")


def unique(path: str, taken: set[str]) -> str:
    """`path`, or `path` with `_2`, `_3`… before its extension, so no two files share a name (case-insensitively,
    as on Windows and macOS); adds the chosen name to `taken`."""
    base, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        base, ext = path, ""
    else:
        ext = "." + ext
    candidate, n = path, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{base}_{n}{ext}"
    taken.add(candidate.casefold())
    return candidate
