"""The SSD migration import: a clinic's folder tree (or a Chairside export) brought in, resumably and verified.

Two source layouts are read:

- **folders**: a folder per patient at the top (`00123 山田太郎`, `00123_山田太郎` or just `00123`),
  holding videos and photos at any depth, plus an optional `patients.csv` at the top (see csvfile.py).
- **chairside-export**: a bag written by `chairside export` (`bagit.txt`, `data/media.csv`,
  `data/patients.csv`): items keep their media ids, capture times, original names and patients,
  so export → import is a lossless round trip. The dentist's notes, an item's teeth and tags come back too:
  added to what the clinic has, never removing or overwriting anything there.

Each file is read once: copied into a staging file next to the blob store while its SHA-256 is
computed ("as read"), then handed to the one ingest path (media/ingest.py), which adopts the
staging file as the blob; the stored blob is then read back and hashed again ("as stored").
With `--server` the SDK uploads it instead and compares the server's SHA-256 with the one read.

A file's media id is UUIDv5 of clinic, relative path and SHA-256 (names.import_media_id): a
second run, after a stop at any moment, can never store it twice, with or without the journal
(journal.py), which only spares re-reading files already done.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from chairside.domain.calendar import CLINIC_TZ
from chairside.media.tags import clean_tags
from chairside.mediafile import CorruptMedia, MediaError, UnsupportedMedia, probe_image, probe_video, sniff
from chairside.transfer import csvfile
from chairside.transfer.journal import Entry, Journal
from chairside.transfer.names import import_media_id, parse_patient_folder
from chairside.transfer.pipe import copy_hashed
from chairside.transfer.progress import NoProgress, Progress, TransferError

_SYSTEM_NAMES = {"thumbs.db", "desktop.ini", ".ds_store", "$recycle.bin", "system volume information",
                 ".spotlight-v100", ".trashes", ".fseventsd", ".chairside", ".chairside-export"}


# --- what is read from the source ---------------------------------------------------------------

@dataclass(frozen=True)
class PatientInfo:
    chart_no: str
    name: str
    name_kana: str
    birth_date: date | None = None
    sex: str = "unknown"
    note: str = ""  # patients.csv's メモ/備考/note column


@dataclass(frozen=True)
class Candidate:
    path: Path
    relpath: str  # from the source root, "/"-separated, NFC
    size: int
    mtime_ns: int
    patient: PatientInfo
    media_id: uuid.UUID | None = None  # from an export's media.csv
    captured_at: datetime | None = None
    filename: str = ""
    teeth: tuple[int, ...] = ()  # an export's media.csv: FDI numbers, tags, the item's note
    tags: tuple[str, ...] = ()
    note: str = ""


@dataclass
class Plan:
    layout: str
    candidates: list[Candidate]
    skipped: list[dict[str, str]] = field(default_factory=list)
    csv_errors: list[dict[str, Any]] = field(default_factory=list)
    csv_encoding: str | None = None
    drawings: list[tuple[str, Path]] = field(default_factory=list)  # an export's drawing JSON files


def source_missing(path: Path) -> TransferError:
    return TransferError(
        f"取り込み元 {path} が見つからないか読めません。SSD が接続されているか、パスが正しいか確認してください。 / "
        f"The source {path} is missing or cannot be read: check that the SSD is plugged in and the path is right.",
        "source-missing")


def source_gone(path: Path) -> TransferError:
    return TransferError(
        f"取り込み中に {path} が読めなくなりました（SSD が外れた可能性があります）。接続し直して同じコマンドを"
        "もう一度実行すると、続きから再開します（取り込み済みのファイルは重複しません）。 / "
        f"{path} stopped being readable during the import (was the SSD unplugged?). Plug it in and run the same "
        "command again: it continues where it stopped, without duplicating anything.", "source-gone")


def _is_system(name: str) -> bool:
    return name.startswith((".", "~$", "._")) or name.casefold() in _SYSTEM_NAMES


def _rel(root: Path, path: Path) -> str:
    return unicodedata.normalize("NFC", path.relative_to(root).as_posix())


def check_source_root(root: Path) -> None:
    try:
        if not root.is_dir():
            raise source_missing(root)
        with os.scandir(root) as it:
            next(it, None)
    except OSError:
        raise source_missing(root) from None


def scan(root: Path) -> Plan:
    """Every file the source holds, each with its patient, or with the reason it is skipped."""
    check_source_root(root)
    if (root / "bagit.txt").is_file() and (root / "data" / "media.csv").is_file():
        return _scan_export(root)
    return _scan_folders(root)


def _scan_folders(root: Path) -> Plan:
    plan = Plan("folders", [])
    rows: dict[str, csvfile.PatientRow] = {}
    csv_path = next((p for p in root.iterdir() if p.name.casefold() == "patients.csv" and p.is_file()), None)
    if csv_path is not None:
        rows, errors, plan.csv_encoding = csvfile.read_patients(csv_path)
        plan.csv_errors = [{"line": e.line, "reason": e.reason} for e in errors]
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry == csv_path:
            continue
        if _is_system(entry.name):
            continue
        if not entry.is_dir():
            plan.skipped.append({"path": _rel(root, entry), "reason": "患者フォルダの外にあります / not inside a "
                                 "patient folder"})
            continue
        chart_no, folder_name = parse_patient_folder(entry.name)
        row = rows.get(chart_no)
        name = (row.name if row and row.name else folder_name) or chart_no
        kana = (row.name_kana if row and row.name_kana else "") or name
        info = PatientInfo(chart_no[:40], name[:200], kana[:200], row.birth_date if row else None,
                           row.sex if row else "unknown", row.note if row else "")
        for path in _walk(entry):
            st = path.stat()
            plan.candidates.append(Candidate(path, _rel(root, path), st.st_size, st.st_mtime_ns, info,
                                             filename=path.name))
    return plan


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_system(d))
        for name in sorted(filenames):
            if not _is_system(name):
                yield Path(dirpath) / name


def _scan_export(root: Path) -> Plan:
    plan = Plan("chairside-export", [])
    data = root / "data"
    patients: dict[str, PatientInfo] = {}
    if (data / "patients.csv").is_file():
        rows, errors, plan.csv_encoding = csvfile.read_patients(data / "patients.csv")
        plan.csv_errors = [{"line": e.line, "reason": e.reason} for e in errors]
        patients = {c: PatientInfo(r.chart_no, r.name or c, r.name_kana or r.name or c, r.birth_date, r.sex, r.note)
                    for c, r in rows.items()}
    for row in csvfile.read_table(data / "media.csv"):
        rel = row.get("file", "")
        path = data / rel
        chart = row.get("chart_no", "")
        info = patients.get(chart) or PatientInfo(chart, row.get("patient_name") or chart,
                                                  row.get("patient_name") or chart)
        try:
            st = path.stat()
            media_id = uuid.UUID(row["media_id"])
            captured = datetime.fromisoformat(row["captured_at"])
            teeth = tuple(int(n) for n in (row.get("teeth") or "").split())
        except (OSError, KeyError, ValueError) as e:
            plan.skipped.append({"path": f"data/{rel}", "reason": f"media.csv の行が使えません / unusable media.csv "
                                 f"row: {e}"})
            continue
        tags = tuple(tag for tag in (row.get("tags") or "").splitlines() if tag.strip())
        plan.candidates.append(Candidate(path, f"data/{rel}", st.st_size, st.st_mtime_ns, info, media_id, captured,
                                         row.get("original_filename") or path.name, teeth, tags,
                                         row.get("note") or ""))
    plan.drawings = [(_rel(root, p), p) for p in sorted(data.rglob("*.json")) if not _is_system(p.name)]
    return plan


# --- where it goes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Staged:
    path: Path  # what ingest or the upload reads
    sha256: str
    temporary: bool


@dataclass(frozen=True)
class Stored:
    kind: str
    sha256: str  # as the server reports it
    size: int
    duration_s: float
    verify: Callable[[], tuple[str, int]] | None = None  # reads the stored bytes back: (SHA-256, size)


class Skip(Exception):
    """The file is not imported, for a reason a person can act on (not a photo or video, damaged)."""


class Unverified(Exception):
    """The file could not be stored and verified (different bytes, a refusal, an I/O error)."""


class Target(Protocol):
    def patient(self, info: PatientInfo) -> tuple[uuid.UUID, bool]:
        """The patient's id at the clinic, created when new (True)."""

    def stage(self, c: Candidate, progress: Progress) -> Staged:
        """Read the file once, hashing it; may raise OSError (the caller tells a vanished source apart)."""

    def store(self, staged: Staged, c: Candidate, media_id: uuid.UUID, patient_id: uuid.UUID,
              captured_at: datetime | None) -> Stored: ...

    def discard(self, staged: Staged) -> None: ...

    def finish(self) -> dict[str, Any]:
        """After a complete run: set the onboarding plan; answer what changed."""


def copy_hashing(src: Path, dst: Path | None, progress: Progress) -> str:
    """Read `src` once, hashing it ("as read"); write it to `dst` (fsynced) when given. Memory: a few MiB."""
    with src.open("rb", buffering=0) as f:
        if dst is None:
            return copy_hashed(f, None, progress.advance)
        with dst.open("wb", buffering=0) as out:
            return copy_hashed(f, out, progress.advance)


def hash_file(path: Path) -> str:
    return copy_hashing(path, None, NoProgress())


# --- the run --------------------------------------------------------------------------------------

@dataclass
class Report:
    source: str
    clinic_id: str
    layout: str
    dry_run: bool
    files: int = 0
    bytes: int = 0
    video_hours: float = 0.0
    new_files: int = 0
    already_imported: int = 0
    patients_created: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    unverified: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    csv_errors: list[dict[str, Any]] = field(default_factory=list)
    csv_encoding: str | None = None
    complete: bool = False
    drawings: int = 0
    details: int = 0  # items and patients given notes, teeth or tags from the source
    plan: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def run_import(source: Path, clinic_id: uuid.UUID, target: Target | None, journal: Journal | None, *,
               progress: Progress | None = None, after_file: Callable[[str], None] | None = None) -> Report:
    """Import `source` for `clinic_id` into `target` (None: a dry run that only reads and reports)."""
    progress = progress or NoProgress()
    plan = scan(source)
    report = Report(str(source), str(clinic_id), plan.layout, target is None, skipped=list(plan.skipped),
                    csv_errors=plan.csv_errors, csv_encoding=plan.csv_encoding)
    todo: list[Candidate] = []
    for c in plan.candidates:
        done = journal.get(c.relpath) if journal else None
        if done is not None and done.size == c.size and done.mtime_ns == c.mtime_ns and done.status == "done":
            report.already_imported += 1
            continue
        todo.append(c)
    progress.start(len(todo), sum(c.size for c in todo))
    seen_sha: dict[str, str] = {}
    if journal is not None:
        seen_sha = {e.sha256: e.relpath for e in journal.entries("done")}
    dry_seconds = 0.0

    def check_source(err: OSError) -> None:
        try:
            check_source_root(source)
        except TransferError:
            raise source_gone(source) from err

    # The "as stored" read-back of file n runs on a second thread while file n+1 is copied (one waits at most).
    pending: list[_Pending] = []

    def settle(p: _Pending) -> None:
        assert journal is not None
        try:
            _settle(p, journal, report, seen_sha)
        except Unverified as e:
            report.unverified.append({"path": p.c.relpath, "reason": str(e)})
            progress.note(f"NOT imported {p.c.relpath}: {e}")

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-verify") as pool:
        try:
            for c in todo:
                try:
                    if target is None:
                        dry_seconds += _dry_check(c)
                        progress.advance(c.size)
                        report.new_files += 1
                        report.bytes += c.size
                    else:
                        pending.append(_import_one(c, clinic_id, target, report, progress, check_source, pool))
                except Skip as e:
                    report.skipped.append({"path": c.relpath, "reason": str(e)})
                    progress.note(f"skipped {c.relpath}: {e}")
                except Unverified as e:
                    report.unverified.append({"path": c.relpath, "reason": str(e)})
                    progress.note(f"NOT imported {c.relpath}: {e}")
                while pending and (len(pending) > 1 or pending[0].check is None or pending[0].check.done()):
                    settle(pending.pop(0))
                progress.file_done(c.relpath)
                if after_file is not None:
                    after_file(c.relpath)
        finally:  # a stop (source gone, disk full) still records what was stored and verified
            while pending:
                settle(pending.pop(0))
    if target is None:
        report.files = report.new_files
        report.video_hours = round(dry_seconds / 3600, 3)
        report.complete = not report.unverified
        return report
    assert journal is not None
    _import_drawings(plan, target, journal, report, progress)
    _import_details(plan, target, journal, report, progress)
    report.files, report.bytes, seconds = journal.totals("done")
    report.video_hours = round(seconds / 3600, 3)
    report.complete = not report.unverified
    if report.complete:
        report.plan = target.finish()
    return report


def _import_drawings(plan: Plan, target: Target, journal: Journal, report: Report, progress: Progress) -> None:
    """An export's drawings (`*_描画N.json`) back over their items, once each (with --data only)."""
    add = getattr(target, "drawing", None)
    for relpath, path in plan.drawings:
        done = journal.get(relpath)
        if done is not None and done.status == "drawing":
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != "chairside-drawing/1":
                continue
            if add is None:
                report.skipped.append({"path": relpath, "reason": "描画は --data のときだけ取り込みます / drawings are "
                                       "imported with --data only"})
                continue
            add(uuid.UUID(str(doc["media_id"])), doc["shapes"], doc.get("media_time_s"))
        except (OSError, ValueError, KeyError, Skip) as e:
            report.skipped.append({"path": relpath, "reason": f"描画を取り込めません / drawing not imported: {e}"})
            progress.note(f"skipped {relpath}: {e}")
            continue
        journal.put(Entry(relpath, 0, 0, "", str(doc["drawing_id"]), "drawing", kind="drawing"))
        report.drawings += 1


@dataclass(frozen=True)
class Additions:
    """What an import writes onto an item: None where it leaves the item as it is."""

    teeth: list[int] | None
    tags: list[str] | None
    note: str | None


def additions(have_teeth: Iterable[int], have_tags: Iterable[str], have_note: str,
              teeth: Iterable[int], tags: Iterable[str], note: str) -> Additions:
    """The one rule for what the dentist wrote, on its way in: teeth and tags join the item's own (nothing is
    taken away), a note is written only where there is none. ValueError for a tag that is not text."""
    had_teeth, had_tags = set(have_teeth), set(have_tags)
    new_tags = set(clean_tags(tags))
    return Additions(None if set(teeth) <= had_teeth else sorted(had_teeth | set(teeth)),
                     None if new_tags <= had_tags else sorted(had_tags | new_tags),
                     note if note.strip() and not have_note else None)


def _import_details(plan: Plan, target: Target, journal: Journal, report: Report, progress: Progress) -> None:
    """The notes, teeth and tags of an export (and a patients.csv's notes) onto what was imported.

    Added, never taken away: teeth and tags join the item's own; a note is written only where there is none.
    Each is applied once (the journal keeps what was applied), so a second run changes nothing."""
    add = getattr(target, "details", None)
    note_patient = getattr(target, "patient_note", None)
    wanted = [c for c in plan.candidates if c.teeth or c.tags or c.note]
    notes = {c.patient.chart_no: c.patient for c in plan.candidates if c.patient.note.strip()}
    if add is None or note_patient is None:
        if wanted or notes:
            where = "data/media.csv" if plan.layout == "chairside-export" else "patients.csv"
            report.skipped.append({"path": where, "reason": "メモ・歯番・タグは --data のときだけ取り込みます / "
                                   "notes, teeth and tags are imported with --data only"})
        return
    for c in wanted:
        done = journal.get(c.relpath)
        if done is None or done.status != "done":
            continue  # the item itself was not imported
        key = f"details:{done.media_id}"
        applied = json.dumps([c.teeth, c.tags, c.note], ensure_ascii=False)
        if journal.meta(key) == applied:
            continue
        try:
            add(uuid.UUID(done.media_id), c.teeth, c.tags, c.note)
        except Skip as e:
            report.skipped.append({"path": c.relpath, "reason": f"メモ・歯番・タグを取り込めません / notes, teeth or "
                                   f"tags not imported: {e}"})
            progress.note(f"skipped the notes, teeth or tags of {c.relpath}: {e}")
            continue
        journal.set_meta(key, applied)
        report.details += 1
    imported = {c.patient.chart_no for c in plan.candidates
                if (entry := journal.get(c.relpath)) is not None and entry.status == "done"}
    for chart_no, info in notes.items():
        key = f"patient-note:{chart_no}"
        if chart_no not in imported or journal.meta(key) == info.note:
            continue
        try:
            note_patient(info)
        except Skip as e:
            report.skipped.append({"path": f"patients.csv ({chart_no})", "reason": f"患者メモを取り込めません / "
                                   f"patient note not imported: {e}"})
            continue
        journal.set_meta(key, info.note)
        report.details += 1


def _dry_check(c: Candidate) -> float:
    """What the import would say of the file, without storing it: its video seconds, or Skip."""
    if c.size == 0:
        raise Skip("空のファイル（0 バイト）です / empty file (0 bytes)")
    try:
        kind = sniff(c.path).kind
        if kind == "video":
            return probe_video(c.path).duration_s or 0.0
        probe_image(c.path)
        return 0.0
    except (UnsupportedMedia, CorruptMedia, MediaError) as e:
        raise Skip(f"{e.message}") from None
    except OSError as e:
        raise Unverified(f"読めません / cannot be read: {e.strerror or e}") from None


def _captured_at(c: Candidate) -> datetime | None:
    """The capture time: the export's, a photo's EXIF (None: ingest reads it), else the file's modification time."""
    if c.captured_at is not None:
        return c.captured_at if c.captured_at.tzinfo else c.captured_at.replace(tzinfo=CLINIC_TZ)
    mtime = datetime.fromtimestamp(c.mtime_ns / 1e9, UTC)
    try:
        if sniff(c.path).kind == "image" and probe_image(c.path).captured_at is not None:
            return None
    except (MediaError, OSError):
        pass
    return mtime


@dataclass
class _Pending:
    """A file stored, its "as stored" check still running."""

    c: Candidate
    sha256: str  # as read
    media_id: uuid.UUID
    stored: Stored
    check: Future[tuple[str, int]] | None


def _import_one(c: Candidate, clinic_id: uuid.UUID, target: Target, report: Report, progress: Progress,
                check_source: Callable[[OSError], None], pool: ThreadPoolExecutor) -> _Pending:
    if c.size == 0:
        raise Skip("空のファイル（0 バイト）です / empty file (0 bytes)")
    try:
        sniff(c.path)
        captured = _captured_at(c)
    except MediaError as e:
        raise Skip(e.message) from None
    except OSError as e:
        check_source(e)
        raise Unverified(f"読めません / cannot be read: {e.strerror or e}") from None
    try:
        staged = target.stage(c, progress)
        try:
            media_id = c.media_id or import_media_id(clinic_id, c.relpath, staged.sha256)
            patient_id, created = target.patient(c.patient)
            report.patients_created += int(created)
            stored = target.store(staged, c, media_id, patient_id, captured)
        finally:
            target.discard(staged)
    except OSError as e:
        if is_full(e):
            raise TransferError(
                f"取り込み先のディスクがいっぱいです: {e.filename or ''}。空きを作ってから同じコマンドを"
                "もう一度実行すると続きから再開します。 / The disk that receives the import is full: "
                "make space, then run the same command again; it continues where it stopped.", "target-full") from e
        check_source(e)
        raise Unverified(f"読み書きできませんでした / read or write failed: {e.strerror or e}") from None
    check = pool.submit(stored.verify) if stored.verify is not None else None
    return _Pending(c, staged.sha256, media_id, stored, check)


def _settle(p: _Pending, journal: Journal, report: Report, seen_sha: dict[str, str]) -> None:
    """Compare what was stored with what was read; journal the file as done."""
    try:
        sha, size = p.check.result() if p.check is not None else (p.stored.sha256, p.stored.size)
    except Exception as e:
        raise Unverified(f"保存した内容を読み戻せません / the stored bytes cannot be read back: {e}") from None
    if sha != p.sha256 or size != p.c.size:
        raise Unverified(f"保存された内容が読んだ内容と一致しません / stored bytes differ from the bytes read "
                         f"(sha256 {sha[:12]}… ≠ {p.sha256[:12]}…)")
    if p.sha256 in seen_sha and seen_sha[p.sha256] != p.c.relpath:
        report.duplicates.append({"path": p.c.relpath, "same_as": seen_sha[p.sha256]})
    seen_sha.setdefault(p.sha256, p.c.relpath)
    journal.put(Entry(p.c.relpath, p.c.size, p.c.mtime_ns, p.sha256, str(p.media_id), "done", "", p.stored.kind,
                      p.stored.duration_s))
    report.new_files += 1


def default_journal_path(base: Path, source: Path, clinic_id: uuid.UUID) -> Path:
    key = hashlib.sha256(f"{clinic_id}|{source.resolve()}".encode()).hexdigest()[:16]
    return base / f"import-{key}.sqlite"


def clear_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def is_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)
