"""Which files of the watch folder are recordings, and whose: the two layouts and the sidecar JSON.

Pure rules over `PurePath`s, so the same code is tested with Windows paths (`PureWindowsPath`) on
any machine: capture PCs are often Windows.

- Layout `folder` (the default): `DIR/<chart number>/<file>`. The folder's first word is the chart
  number; the rest of its name, when there is any, is the patient's name (`00123 山田 太郎`).
  Deeper folders belong to the same chart (`DIR/00123/2026-12-07/rec.mp4`). A sidecar next to the
  file, when present, adds the details (and may name the chart itself).
- Layout `sidecar`: every file needs a sidecar JSON next to it, `<file>.json` or `<stem>.json`,
  with `chart_no` and, to register a new patient, `name` (and `kana`, `birth_date`, `sex`),
  plus `captured_at` (ISO 8601; without a zone it is Japan time, as the server reads it).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePath, PureWindowsPath
from typing import Any

LAYOUTS = ("folder", "sidecar")
STATE_DIR = ".chairside"
SENT_DIR = ".sent"
# Names capture software uses while a file is being written, and the files of the OS and editors.
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".lock", ".swp", "~")
_IGNORED_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}
_SEPARATORS = (" ", "\u3000", "\t")
# Characters Windows forbids in a file name, and its reserved device names.
WINDOWS_FORBIDDEN = set('<>:"/\\|?*') | {chr(c) for c in range(32)}
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


class LayoutError(ValueError):
    """A file whose patient cannot be worked out: `ja` and `en` say what to do."""

    def __init__(self, ja: str, en: str, *, wait: bool = False) -> None:
        super().__init__(en)
        self.ja = ja
        self.en = en
        self.wait = wait  # True: may resolve by itself (a sidecar still to come); False: someone must act


@dataclass(frozen=True)
class Sidecar:
    chart_no: str | None = None
    name: str | None = None
    kana: str | None = None
    birth_date: date | None = None
    sex: str = "unknown"
    captured_at: datetime | None = None
    clinic_id: str | None = None


@dataclass(frozen=True)
class Target:
    """Whose file this is: the chart number and what is known to register the patient when missing."""

    chart_no: str
    name: str | None = None
    kana: str | None = None
    birth_date: date | None = None
    sex: str = "unknown"
    captured_at: datetime | None = None
    clinic_id: str | None = None


def relative_parts(root: PurePath, path: PurePath) -> tuple[str, ...] | None:
    """`path`'s parts below `root`, or None when it is not inside it. Windows paths compare without case
    (as NTFS does), and both sides are NFC-normalised (macOS writes names decomposed)."""
    def norm(p: PurePath) -> list[str]:
        parts = [unicodedata.normalize("NFC", s) for s in p.parts]
        return [s.casefold() for s in parts] if isinstance(p, PureWindowsPath) else parts

    r, p = norm(root), norm(path)
    if len(p) <= len(r) or p[: len(r)] != r:
        return None
    return tuple(unicodedata.normalize("NFC", s) for s in path.parts[len(r):])


def is_candidate(parts: tuple[str, ...]) -> bool:
    """A file the agent may send: not in its own folders, not hidden, not a sidecar or a temporary file."""
    if not parts or parts[0] in (STATE_DIR, SENT_DIR):
        return False
    if any(p.startswith((".", "~$")) for p in parts):
        return False
    name = parts[-1].casefold()
    return not (name.endswith(".json") or name.endswith(_TEMP_SUFFIXES) or name in _IGNORED_NAMES)


def split_folder(folder: str) -> tuple[str, str | None]:
    """`00123 山田 太郎` → ("00123", "山田 太郎"); `00123` → ("00123", None). Full-width spaces count too.
    The chart number is kept as written, characters Windows forbids included (the server accepts any)."""
    text = unicodedata.normalize("NFC", folder).strip().strip(".")
    for i, ch in enumerate(text):
        if ch in _SEPARATORS:
            rest = text[i + 1:].strip(" \u3000\t")
            return text[:i], rest or None
    return text, None


def sidecar_candidates(path: PurePath) -> list[PurePath]:
    """Where a file's sidecar may be: `rec.mp4.json`, then `rec.json`."""
    return [path.with_name(path.name + ".json"), path.with_name(path.stem + ".json")]


def parse_sidecar(text: str) -> Sidecar:
    """The sidecar's fields; a `LayoutError` (wait=True: it may still be being written) when unreadable."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise LayoutError("サイドカー JSON が読めません（書き込み中か、形式の誤りです）。",
                          "The sidecar JSON cannot be read (still being written, or not valid JSON).",
                          wait=True) from None
    if not isinstance(raw, dict):
        raise LayoutError("サイドカー JSON の中身がオブジェクトではありません。",
                          "The sidecar JSON is not an object.", wait=True)
    chart = _text(raw, "chart_no", "chart_number", "chart")
    try:
        birth = date.fromisoformat(b) if (b := _text(raw, "birth_date", "birthdate")) else None
        captured = datetime.fromisoformat(c) if (c := _text(raw, "captured_at")) else None
    except ValueError:
        raise LayoutError("サイドカー JSON の日付が読めません（例: 1980-04-01、2026-12-07T10:30:00+09:00）。",
                          "A date in the sidecar JSON cannot be read (e.g. 1980-04-01, 2026-12-07T10:30:00+09:00).",
                          wait=True) from None
    sex = _text(raw, "sex") or "unknown"
    if sex not in ("male", "female", "other", "unknown"):
        sex = "unknown"
    return Sidecar(chart_no=chart, name=_text(raw, "name"), kana=_text(raw, "kana", "name_kana"),
                   birth_date=birth, sex=sex, captured_at=captured, clinic_id=_text(raw, "clinic_id"))


def _text(raw: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = raw.get(key)
        if value is not None and str(value).strip():
            return unicodedata.normalize("NFC", str(value)).strip()
    return None


def resolve(layout: str, parts: tuple[str, ...], sidecar: Sidecar | None) -> Target:
    """Whose file `DIR/<parts…>` is, under `layout`, with its sidecar (None when it has none)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    side = sidecar or Sidecar()
    folder_chart, folder_name = split_folder(parts[0]) if layout == "folder" and len(parts) >= 2 else (None, None)
    if layout == "sidecar" and sidecar is None:
        raise LayoutError("サイドカー JSON（カルテ番号など）を待っています。"
                          "ファイルと同じ名前の .json を置いてください。",
                          "Waiting for the sidecar JSON (chart number and details) named like the file.", wait=True)
    chart = side.chart_no or folder_chart
    if not chart:
        if layout == "folder":
            raise LayoutError("カルテ番号が分かりません。カルテ番号のフォルダ（例: 00123）に入れてください。",
                              "No chart number: put the file in a folder named after the chart number (e.g. 00123).")
        raise LayoutError("サイドカー JSON にカルテ番号（chart_no）がありません。",
                          "The sidecar JSON has no chart number (chart_no).")
    name = side.name or (folder_name if chart == folder_chart else None)
    return Target(chart_no=chart, name=name, kana=side.kana, birth_date=side.birth_date, sex=side.sex,
                  captured_at=side.captured_at, clinic_id=side.clinic_id)


def windows_safe(name: str) -> str:
    """`name` made valid on Windows: forbidden characters → `_`, no trailing dot or space, no device name.
    (What the agent writes itself; it never renames the capture software's files.)"""
    out = "".join("_" if ch in WINDOWS_FORBIDDEN else ch for ch in name).rstrip(" .") or "_"
    if out.split(".")[0].upper() in WINDOWS_RESERVED:
        out = "_" + out
    return out
