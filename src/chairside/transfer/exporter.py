"""The whole-contract export: every photo and video, drawings and patients, as a BagIt bag plain file browsers read.

    TO/bagit.txt, bag-info.txt, manifest-sha256.txt, tagmanifest-sha256.txt   (BagIt 0.97, SHA-256)
    TO/data/patients.csv, media.csv                                          (UTF-8 with BOM, for Excel)
         with the dentist's notes on each patient and item, an item's teeth (FDI) and tags as columns
    TO/data/<clinic>/<chart no> <name>/<YYYY-MM-DD>/<HHMMSS>_動画.mp4          (names: names.py)
    TO/.chairside-export/journal.sqlite                                      (the resumable state)

Each file is streamed from the source into `NAME.part` while hashed, compared with the SHA-256
the server holds, fsynced, dropped from the page cache and **read back from the disk** and hashed
again; only then renamed into place and written to the journal. A run stopped at any moment
(a kill, a reboot, a full disk) continues with the next run: what the journal says is done is
never written again, and a half-written `.part` is removed. A full target disk stops the run with
a clear message (exit 3); after space is made the same command continues.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chairside.domain.calendar import CLINIC_TZ
from chairside.transfer import csvfile, overlay
from chairside.transfer.importer import Unverified, is_full
from chairside.transfer.journal import Entry, Journal
from chairside.transfer.names import WORDS, extension, media_stem, patient_folder, safe_component, unique
from chairside.transfer.pipe import BackgroundWriter
from chairside.transfer.progress import NoProgress, Progress, TransferError
from chairside.transfer.sources import Details, ExportDrawing, ExportItem, ExportPatient, Source

STATE_DIR = ".chairside-export"
CHUNK = 1 << 20  # pipe.CHUNK: a piece stays in the CPU's cache (5x faster here than 4 MiB)
MEDIA_COLUMNS = ("file", "media_id", "chart_no", "patient_name", "clinic", "kind", "mime", "captured_at",
                 "original_filename", "size", "sha256", "duration_s", "teeth", "tags", "note")
NOTE_HEADER = {"ja": "メモ", "en": "note"}


def journal_path(to: Path) -> Path:
    return to / STATE_DIR / "journal.sqlite"


def target_full(to: Path) -> TransferError:
    return TransferError(
        f"書き出し先 {to} のディスクがいっぱいです。空きを作るか別のディスクに替えてから、同じコマンドをもう一度"
        "実行してください。書き出し済みのファイルはそのまま使われ、続きから再開します。 / The target disk "
        f"{to} is full. Make space (or use a larger disk), then run the same command again: what is written is kept "
        "and the export continues where it stopped.", "target-full")


def target_unwritable(to: Path, why: str) -> TransferError:
    return TransferError(f"書き出し先 {to} に書き込めません（{why}）。 / Cannot write to {to} ({why}).",
                         "target-unwritable")


@dataclass
class ExportReport:
    to: str
    files: int = 0
    bytes: int = 0
    new_files: int = 0
    already_exported: int = 0
    patients: int = 0
    items: int = 0
    drawings: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    unverified: list[dict[str, str]] = field(default_factory=list)
    complete: bool = False
    bag_valid: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_back(path: Path) -> tuple[str, int]:
    """fsync `path`, drop its cached pages, and answer its SHA-256 and size as read back from the disk.

    run_export calls this on a second thread for file n while file n+1 is written, so the wait for the
    disk (fsync, read) overlaps the next file's streaming."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
                size += n
    finally:
        os.close(fd)
    return h.hexdigest(), size


@dataclass(frozen=True)
class Part:
    """A file written to `NAME.part`, not yet fsynced nor read back (read_back does both)."""

    relpath: str
    path: Path
    sha256: str
    size: int


class Writer:
    """Writes files into the bag: stream → `.part` → fsync → read back → rename → fsync the folder.

    `begin` and `complete` split the work so that the read-back of one file can run while the next is
    written (run_export); `write` does both at once. Every `.part` in flight is named in the journal
    first, so a run after a crash removes it.
    """

    def __init__(self, to: Path, journal: Journal, progress: Progress) -> None:
        self.to, self.journal, self.progress = to, journal, progress
        for key, leftover in journal.metas("writing:"):
            (to / leftover).unlink(missing_ok=True)
            journal.del_meta(key)

    def _failed(self, part: Path, e: OSError) -> TransferError:
        part.unlink(missing_ok=True)
        if is_full(e):
            return target_full(self.to)
        return target_unwritable(self.to, e.strerror or str(e))

    def begin(self, relpath: str, chunks: Iterable[bytes], expected_sha: str | None = None,
              count: bool = True) -> Part:
        final = self.to / relpath
        part = final.with_name(final.name + ".part")
        part_rel = part.relative_to(self.to).as_posix()
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.journal.set_meta(f"writing:{part_rel}", part_rel)
            h = hashlib.sha256()
            size = 0
            with part.open("wb", buffering=0) as out:
                background = BackgroundWriter(out)  # writes chunk n while chunk n+1 is read and hashed
                try:
                    for chunk in chunks:
                        background.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
                        if count:
                            self.progress.advance(len(chunk))
                except BaseException:
                    background.abort()
                    raise
                background.close(fsync=False)  # read_back fsyncs, on the verifying thread
            written = h.hexdigest()
            if expected_sha is not None and written != expected_sha:
                raise Unverified("元のデータが保存時の SHA-256 と一致しません / the source bytes do not match their "
                                 f"stored SHA-256 ({written[:12]}… ≠ {expected_sha[:12]}…)")
        except OSError as e:
            raise self._failed(part, e) from e
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return Part(relpath, part, written, size)

    def complete(self, part: Part, back: tuple[str, int]) -> None:
        """Compare the read-back with what was written; rename into place; fsync the folder."""
        final = self.to / part.relpath
        try:
            if back != (part.sha256, part.size):
                part.path.unlink(missing_ok=True)
                raise Unverified("書き込んだファイルを読み戻すと内容が違います（ディスクの故障の可能性）/ "
                                 "the file read back differs from what was written (a failing disk?)")
            os.replace(part.path, final)
            _fsync_dir(final.parent)
        except OSError as e:
            raise self._failed(part.path, e) from e
        finally:
            self.journal.del_meta(f"writing:{part.path.relative_to(self.to).as_posix()}")

    def write(self, relpath: str, chunks: Iterable[bytes], expected_sha: str | None = None,
              count: bool = True) -> tuple[str, int]:
        part = self.begin(relpath, chunks, expected_sha, count)
        try:
            back = read_back(part.path)
        except OSError as e:
            raise self._failed(part.path, e) from e
        self.complete(part, back)
        return part.sha256, part.size

    def write_small(self, relpath: str, data: bytes, kind: str) -> None:
        """A generated file (a CSV, a drawing): skipped when the journal has these very bytes there already."""
        sha = hashlib.sha256(data).hexdigest()
        done = self.journal.get(relpath)
        if done is not None and done.sha256 == sha and (self.to / relpath).is_file():
            return
        self.write(relpath, [data], sha, count=False)
        self.journal.put(Entry(relpath, len(data), 0, sha, f"{kind}:{relpath}", "done", kind=kind))


def _patient_folders(patients: list[ExportPatient], journal: Journal) -> dict[str, str]:
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for p in patients:
        known = journal.meta(f"patient:{p.id}")
        if known:
            folders[p.id] = known
            taken.add(known.casefold())
    for p in patients:
        if p.id in folders:
            continue
        base = f"data/{safe_component(p.clinic_name)}/{patient_folder(p.chart_no, p.name)}"
        folder, n = base, 1
        while folder.casefold() in taken:
            n += 1
            folder = f"{base}_{n}"
        taken.add(folder.casefold())
        journal.set_meta(f"patient:{p.id}", folder)
        folders[p.id] = folder
    return folders


def run_export(source: Source, to: Path, journal: Journal, *, english: bool = False, progress: Progress | None = None,
               after_file: Callable[[str], None] | None = None) -> ExportReport:
    progress = progress or NoProgress()
    report = ExportReport(str(to))
    lang = journal.meta("lang") or ("en" if english else "ja")  # the first run's choice keeps the names stable
    journal.set_meta("lang", lang)
    writer = Writer(to, journal, progress)
    patients = source.patients()
    folders = _patient_folders(patients, journal)
    report.patients = len(patients)

    todo_files = todo_bytes = 0
    for p in patients:  # a first pass for the progress bar's totals (the listing only)
        for item in source.media(p):
            done = journal.by_media(item.id)
            if done is None or done.status != "done":
                todo_files += 1
                todo_bytes += item.size
    progress.start(todo_files, todo_bytes)

    # The read-back of file n runs on a second thread while file n+1 is written (one waits at most).
    pending: list[tuple[Part, Future[tuple[str, int]], ExportItem, ExportPatient, Details]] = []
    patient_notes: dict[str, str] = {}

    def settle() -> None:
        part, check, item, p, details = pending.pop(0)
        try:
            writer.complete(part, check.result())
        except Unverified as e:
            report.unverified.append({"path": part.relpath, "media_id": item.id, "reason": str(e)})
            progress.note(f"NOT exported {part.relpath}: {e}")
            return
        except OSError as e:
            raise writer._failed(part.path, e) from e
        journal.put(Entry(part.relpath, part.size, 0, part.sha256, item.id, "done", kind=item.kind,
                          duration_s=item.duration_s or 0.0,
                          info=json.dumps(_media_row(part.relpath, item, p, details), ensure_ascii=False)))
        report.new_files += 1
        source.exported(p, [item])
        _drawings(item, part.relpath)
        progress.file_done(part.relpath)
        if after_file is not None:
            after_file(part.relpath)

    def _drawings(item: ExportItem, relpath: str) -> None:
        for n, drawing in enumerate(source.drawings(item), start=1):
            _write_drawing(writer, relpath, n, drawing, item, lang)
            report.drawings += 1

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-verify") as pool:
        try:
            for p in patients:
                folder = folders[p.id]
                taken = {r.casefold() for r in journal.under(folder + "/")}
                items = source.media(p)
                details = source.details(p, items)
                patient_notes[p.id] = details.note
                for item in items:
                    report.items += 1
                    done = journal.by_media(item.id)
                    if done is not None and done.status == "done" and (to / done.relpath).is_file():
                        report.already_exported += 1
                        row = json.dumps(_media_row(done.relpath, item, p, details), ensure_ascii=False)
                        if row != done.info:  # teeth, tags or a note changed since: media.csv says what is now
                            journal.put(replace(done, info=row))
                        _drawings(item, done.relpath)
                        continue
                    day, stem = media_stem(item.kind, item.captured_at, lang)
                    relpath = done.relpath if done is not None else unique(
                        f"{folder}/{day}/{stem}{extension(item.mime, item.filename)}", taken)
                    try:
                        part = writer.begin(relpath, source.content(item), item.sha256)
                    except (TransferError, KeyboardInterrupt):
                        raise
                    except Exception as e:  # the source could not give the bytes (a missing blob, a server error)
                        report.unverified.append({"path": relpath, "media_id": item.id,
                                                  "reason": f"読み出せません / cannot be read: {e}"})
                        progress.note(f"NOT exported {relpath}: {e}")
                        continue
                    pending.append((part, pool.submit(read_back, part.path), item, p, details))
                    while pending and (len(pending) > 1 or pending[0][1].done()):
                        settle()
        finally:  # a stop (a full disk, a kill) still finishes and records what was written and read back
            while pending:
                settle()

    header = list(csvfile.HEADERS[lang]) + (["クリニック", "フォルダ", "patient_id"] if lang == "ja"
                                            else ["clinic", "folder", "patient_id"]) + [NOTE_HEADER[lang]]
    rows: list[list[object]] = [
        [p.chart_no, p.name, p.name_kana, p.birth_date.isoformat() if p.birth_date else "",
         csvfile.SEX_JA.get(p.sex, p.sex) if lang == "ja" else p.sex, p.clinic_name,
         folders[p.id].removeprefix("data/"), p.id, patient_notes.get(p.id, "")] for p in patients]
    writer.write_small("data/patients.csv", csvfile.render(header, rows), "csv")
    _write_media_csv(writer, journal)
    report.files, report.bytes, _ = journal.totals("done")
    report.complete = not report.unverified
    write_bag(to, journal, lang)
    report.bag_valid = validate_fast(to)
    return report


def _media_row(relpath: str, item: ExportItem, p: ExportPatient, details: Details) -> dict[str, Any]:
    """media.csv's row. Teeth are FDI numbers separated by spaces; tags one per line in the cell (a tag holds no
    line break, so any other character may appear in one)."""
    return {"file": relpath.removeprefix("data/"), "media_id": item.id, "chart_no": p.chart_no,
            "patient_name": p.name, "clinic": p.clinic_name, "kind": item.kind, "mime": item.mime,
            "captured_at": item.captured_at.astimezone(CLINIC_TZ).isoformat(), "original_filename": item.filename,
            "size": item.size, "sha256": item.sha256, "duration_s": item.duration_s,
            "teeth": " ".join(str(n) for n in details.teeth.get(item.id, ())),
            "tags": "\n".join(details.tags.get(item.id, ())), "note": details.notes.get(item.id, "")}


def _write_drawing(writer: Writer, relpath: str, n: int, d: ExportDrawing, item: ExportItem, lang: str) -> None:
    base = relpath.rsplit(".", 1)[0] + f"_{WORDS[lang]['drawing']}{n}"
    doc = {"format": "chairside-drawing/1", "drawing_id": d.id, "media_id": item.id, "version": d.version,
           "media_time_s": d.media_time_s, "author": d.author_name, "updated_at": d.updated_at.isoformat(),
           "coordinates": "fractions 0..1 of the picture as shown upright", "shapes": d.shapes}
    writer.write_small(base + ".json", json.dumps(doc, ensure_ascii=False, indent=2).encode() + b"\n", "drawing")
    done = writer.journal.get(base + ".png")
    if done is not None and done.info == f"{d.id}@{d.version}" and (writer.to / done.relpath).is_file():
        return
    png = overlay.render_png(d.shapes, item.width, item.height)
    sha, size = writer.write(base + ".png", [png], hashlib.sha256(png).hexdigest(), count=False)
    writer.journal.put(Entry(base + ".png", size, 0, sha, f"drawing:{base}.png", "done", kind="drawing",
                             info=f"{d.id}@{d.version}"))


def _write_media_csv(writer: Writer, journal: Journal) -> None:
    """media.csv from the journal, streamed (a 27 TB contract has millions of rows): what the import reads back."""
    def chunks() -> Iterator[bytes]:
        yield csvfile.render(list(MEDIA_COLUMNS), [])
        batch: list[list[object]] = []
        for e in journal.entries("done"):
            if e.kind not in ("video", "image") or not e.info:
                continue
            row = json.loads(e.info)
            batch.append([row.get(c) if row.get(c) is not None else "" for c in MEDIA_COLUMNS])
            if len(batch) >= 1000:
                yield csvfile.render_rows(batch)
                batch = []
        yield csvfile.render_rows(batch)

    sha, size = writer.write("data/media.csv", chunks(), None, count=False)
    journal.put(Entry("data/media.csv", size, 0, sha, "csv:data/media.csv", "done", kind="csv"))


def _manifest_name(relpath: str) -> str:
    return relpath.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def write_bag(to: Path, journal: Journal, lang: str) -> None:
    """bagit.txt, manifest-sha256.txt (from the journal, streamed), bag-info.txt and tagmanifest-sha256.txt."""
    writer = Writer(to, journal, NoProgress())
    files = total = 0

    def manifest() -> Iterator[bytes]:
        nonlocal files, total
        lines: list[str] = []
        for e in journal.entries("done"):
            files += 1
            total += e.size
            lines.append(f"{e.sha256}  {_manifest_name(e.relpath)}\n")
            if len(lines) >= 1000:
                yield "".join(lines).encode()
                lines = []
        yield "".join(lines).encode()

    tags: dict[str, bytes] = {"bagit.txt": b"BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n"}
    writer.write("bagit.txt", [tags["bagit.txt"]], count=False)
    writer.write("manifest-sha256.txt", manifest(), count=False)
    tags["manifest-sha256.txt"] = b""  # hashed from the disk below
    info = (f"Bagging-Date: {datetime.now(UTC).astimezone(CLINIC_TZ).date().isoformat()}\n"
            f"Bag-Software-Agent: chairside export\nPayload-Oxum: {total}.{files}\n"
            f"External-Description: Chairside export ({'Japanese' if lang == 'ja' else 'English'} names)\n")
    writer.write("bag-info.txt", [info.encode()], count=False)
    lines = []
    for name in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt"):
        sha, _ = read_back(to / name)
        lines.append(f"{sha}  {name}\n")
    writer.write("tagmanifest-sha256.txt", ["".join(lines).encode()], count=False)


def validate_fast(to: Path) -> bool:
    """The bagit library's own check of the bag's structure and Payload-Oxum (counts and bytes, not hashes:
    every file was hashed as read back already; `bagit.py --validate TO` re-hashes everything)."""
    import bagit

    try:
        bagit.Bag(str(to)).validate(fast=True)
    except bagit.BagError:
        return False
    return True
