"""`chairside import` and `chairside export`: a clinic's data in from an SSD, and a whole contract out onto one.

Both draw a Rich progress bar on standard error (bytes, files, rate, time left) and print a JSON
summary on standard output as their last output. Exit codes: 0 every file verified; 1 some file
not verified (listed in `unverified`); 2 refused before starting (bad option, missing source,
unknown clinic); 3 stopped part-way (source unplugged, target full): run the same command again
to continue.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from chairside.cli.common import emit, fail, load_settings, parse_uuid
from chairside.transfer.progress import TransferError

_err = Console(stderr=True)


class RichProgress:
    """Bytes, files, rate and time left, on standard error (standard output keeps the JSON)."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[files]}"), console=_err,
                            disable=not enabled, transient=False)
        self.bytes_task: TaskID | None = None
        self.files = 0
        self.total_files = 0

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, files: int, total_bytes: int) -> None:
        self.total_files = files
        self.bytes_task = self.bar.add_task("", total=total_bytes or None, files=f"0/{files} files")

    def advance(self, n: int) -> None:
        if self.bytes_task is not None:
            self.bar.advance(self.bytes_task, n)

    def file_done(self, name: str) -> None:
        self.files += 1
        if self.bytes_task is not None:
            self.bar.update(self.bytes_task, files=f"{self.files}/{self.total_files} files")

    def note(self, message: str) -> None:
        self.bar.console.print(message, markup=False, highlight=False)


def _stopped(e: TransferError, partial: dict[str, Any] | None) -> None:
    _err.print(f"error: {e.message}", markup=False, highlight=False)
    emit({"error": e.code, "detail": e.message, **(partial or {})})
    raise typer.Exit(3 if e.code in ("source-gone", "target-full") else 2)


def import_(
    source: Annotated[Path, typer.Option("--from", help="The folder to import: a folder per patient (chart number, "
                                         "optionally name) with an optional patients.csv, or a Chairside export.")],
    clinic: Annotated[str, typer.Option("--clinic", help="The clinic's id: patients are registered there.")],
    data: Annotated[Path | None, typer.Option("--data", help="Data folder of the server (run on the server).")] = None,
    database_url: Annotated[str | None, typer.Option("--database-url", envvar="CHAIRSIDE_DATABASE_URL",
                                                     help="SQLAlchemy URL (with --data).")] = None,
    server: Annotated[str | None, typer.Option("--server", help="URL of the cloud or the clinic's relay.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="A station token (with --server).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read everything and report; store nothing.")] = False,
    state: Annotated[Path | None, typer.Option("--state", help="Folder of the resumable journal (default: "
                                               "DATA/transfer, or ~/.chairside with --server).")] = None,
    progress: Annotated[bool, typer.Option(help="Draw the progress bar.")] = True,
) -> None:
    """Bring a clinic's existing recordings and photos in (resumable, verified); prints a JSON summary."""
    from chairside.transfer import importer
    from chairside.transfer.journal import Journal

    clinic_id = parse_uuid(clinic, "clinic")
    if (data is None) == (server is None):
        fail("give either --data DIR (on the server) or --server URL --token T")
    if server is not None and not token:
        fail("--server needs --token")
    try:
        importer.scan(source) if dry_run else importer.check_source_root(source)
    except TransferError as e:
        _stopped(e, None)
    if dry_run:
        with RichProgress("checking", progress) as bar:
            report = importer.run_import(source, clinic_id, None, None, progress=bar)
        emit(report.as_dict())
        raise typer.Exit(1 if report.unverified else 0)
    journal_dir = state or ((data / "transfer") if data is not None else Path.home() / ".chairside")
    journal = Journal(importer.default_journal_path(journal_dir, source, clinic_id))
    ctx: Any = None
    client: Any = None
    try:
        target: Any
        if data is not None:
            from chairside.context import build_context
            from chairside.transfer.targets import LocalTarget
            ctx = build_context(load_settings(data, database_url))
            staging = data / "transfer" / f"staging-{journal.path.stem}"
            importer.clear_dir(staging)
            target = LocalTarget(ctx, clinic_id, staging)
        else:
            from chairside.client import Client
            from chairside.transfer.targets import RemoteTarget
            assert server is not None and token is not None
            client = Client(server, token)
            target = RemoteTarget(client, clinic_id)
        with RichProgress("importing", progress) as bar:
            report = importer.run_import(source, clinic_id, target, journal, progress=bar)
    except TransferError as e:
        files, size, seconds = journal.totals("done")
        _stopped(e, {"files": files, "bytes": size, "video_hours": round(seconds / 3600, 3), "skipped": []})
    finally:
        journal.close()
        if ctx is not None:
            ctx.db.dispose()
        if client is not None:
            client.close()
    emit(report.as_dict())
    raise typer.Exit(1 if report.unverified else 0)




def export(
    to: Annotated[Path, typer.Option("--to", help="The target folder (on the SSD): a BagIt bag is written there.")],
    contract: Annotated[str | None, typer.Option("--contract", help="Export the whole contract.")] = None,
    patient: Annotated[list[str] | None, typer.Option("--patient", help="Export this patient (repeat for "
                                                      "several).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder of the server (run on the server).")] = None,
    database_url: Annotated[str | None, typer.Option("--database-url", envvar="CHAIRSIDE_DATABASE_URL",
                                                     help="SQLAlchemy URL (with --data).")] = None,
    server: Annotated[str | None, typer.Option("--server", help="URL of the cloud or the clinic's relay.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="A token that may read the patients (with "
                                              "--server).")] = None,
    english_names: Annotated[bool, typer.Option("--english-names", help="Folder and file words in English "
                                                "(video, photo, drawing) instead of Japanese.")] = False,
    progress: Annotated[bool, typer.Option(help="Draw the progress bar.")] = True,
) -> None:
    """Write a contract's (or some patients') photos, videos, drawings and patients.csv as a BagIt bag; resumable."""
    from chairside.transfer import exporter
    from chairside.transfer.journal import Journal

    if (contract is None) == (not patient):
        fail("give either --contract ID or --patient ID (repeatable)")
    if (data is None) == (server is None):
        fail("give either --data DIR (on the server) or --server URL --token T")
    if server is not None and not token:
        fail("--server needs --token")
    contract_id = parse_uuid(contract, "contract") if contract else None
    patient_ids = [parse_uuid(p, "patient") for p in patient or []]
    try:
        to.mkdir(parents=True, exist_ok=True)
        journal = Journal(exporter.journal_path(to))
    except OSError as e:
        _stopped(exporter.target_unwritable(to, e.strerror or str(e)), None)
    ctx: Any = None
    source: Any = None
    try:
        if data is not None:
            from chairside.context import build_context
            from chairside.transfer.sources import LocalSource
            ctx = build_context(load_settings(data, database_url))
            source = LocalSource(ctx, contract_id, patient_ids)
        else:
            from chairside.client import Client
            from chairside.transfer.sources import RemoteSource
            assert server is not None and token is not None
            source = RemoteSource(Client(server, token), server, token, patient_ids)
        with RichProgress("exporting", progress) as bar:
            try:
                report = exporter.run_export(source, to, journal, english=english_names, progress=bar)
            except sqlite3.OperationalError as e:  # the journal lives on the target disk too
                if "full" not in str(e):
                    raise
                raise exporter.target_full(to) from e
    except TransferError as e:
        try:
            files, size, _ = journal.totals("done")
        except Exception:  # a journal on a full disk: the summary says what it can
            files = size = 0
        _stopped(e, {"files": files, "bytes": size, "skipped": []})
    finally:
        journal.close()
        if ctx is not None:
            ctx.db.dispose()
        if source is not None and hasattr(source, "close"):
            source.close()
    emit(report.as_dict())
    raise typer.Exit(1 if report.unverified else 0)
