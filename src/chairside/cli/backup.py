"""`chairside backup`: generations of a site to a folder or an S3 bucket; list, verify, restore, drill, check.

Parsing and printing only: the work is in ``chairside.backup`` (docs/backups.md).
"""

from __future__ import annotations

import fcntl
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from chairside.backup import catalog, notices
from chairside.backup.drill import drill as run_drill
from chairside.backup.manifest import Manifest
from chairside.backup.restore import RestoreError, restore, restore_settings
from chairside.backup.retention import Policy
from chairside.backup.run import run_backup
from chairside.backup.seal import SCHEME_NONE, KeySealer, PlainSealer, Sealer
from chairside.backup.targets import Target, TargetError, open_target
from chairside.backup.verify import verify as run_verify
from chairside.cli.common import DatabaseUrl, DataDir, emit, fail, load_settings
from chairside.context import Context, build_context
from chairside.keys import MasterKey, MasterKeyError
from chairside.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Backups: generations to a folder or S3 (Object Lock), verify, restore.")

TargetOpt = Annotated[str, typer.Option("--to", help="Backup target: a folder, file:///path or "
                                                      "s3://bucket/prefix?endpoint_url=… (AWS_* credentials).")]
FromOpt = Annotated[str, typer.Option("--from", help="Backup target to read (as for --to).")]
GenerationOpt = Annotated[str, typer.Option("--generation", help="A generation id, or 'latest'.")]
MasterKeyOpt = Annotated[
    Path | None,
    typer.Option("--master-key", help="Master key file (default: the master_key_file setting)."),
]


def _settings(data: Path | None, database_url: str | None, master_key: Path | None = None) -> Settings:
    settings = load_settings(data or Path(tempfile.gettempdir()) / "chairside-backup", database_url)
    if master_key is not None:
        from dataclasses import replace

        settings = replace(settings, master_key_file=master_key)
    return settings


def _target(url: str, settings: Settings) -> Target:
    try:
        return open_target(url, lock_days=settings.backup_lock_days)
    except (ValueError, TargetError) as exc:
        fail(str(exc))


def _master(settings: Settings) -> MasterKey | None:
    if settings.master_key_file is None:
        return None
    try:
        return MasterKey.load(settings.master_key_file)
    except MasterKeyError as exc:
        fail(str(exc))


def _reading_sealer(manifest: Manifest, settings: Settings, target: Target) -> Sealer:
    if manifest.encryption == SCHEME_NONE:
        return PlainSealer()
    master = _master(settings)
    if master is None:
        fail(f"この世代は暗号化されています。マスターキー（{manifest.master_key_id}）を --master-key か "
             f"CHAIRSIDE_MASTER_KEY_FILE で指定してください / generation {manifest.generation} is encrypted: give "
             f"master key {manifest.master_key_id} with --master-key or CHAIRSIDE_MASTER_KEY_FILE")
    return KeySealer(master, target)


def _resolve(target: Target, generation: str) -> Manifest:
    try:
        return catalog.resolve(target, generation)
    except catalog.GenerationNotFound as exc:
        fail(str(exc))


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A Rich progress bar per phase on standard error (quiet when it is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bars: dict[str, Any] = {}
    lock = threading.Lock()
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal) as progress:

        def update(phase: str, done: int, total: int) -> None:
            with lock:
                if phase not in bars:
                    bars[phase] = progress.add_task(phase, total=total or None)
                progress.update(bars[phase], completed=done, total=total or None)

        yield update


@contextmanager
def _run_lock(settings: Settings) -> Iterator[None]:
    """One backup run of a site at a time (a second one would race the first one's pruning)."""
    path = settings.data_dir / "backup" / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fail("別のバックアップが実行中です / another backup of this site is running")
        yield


@app.command("run")
def run(
    to: TargetOpt,
    data: DataDir = Path("./chairside-data"),
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option(help="Blobs sent at once.")] = 4,
    prune: Annotated[bool, typer.Option(help="Drop generations the retention policy no longer keeps.")] = True,
) -> None:
    """Take a generation: the metadata snapshot, every blob the target lacks, the manifest last."""
    settings = _settings(data, database_url)
    with _run_lock(settings):
        try:
            target = open_target(to, lock_days=settings.backup_lock_days)
            ctx = build_context(settings, upgrade=False)
        except Exception as exc:
            notices.raise_notice(settings, "failed", to, f"{type(exc).__name__}: {exc}")
            fail(str(exc))
        try:
            master = _master(settings)
            sealer: Sealer = KeySealer(master, target) if master is not None else PlainSealer()
            with _progress() as progress:
                manifest = run_backup(settings.database_url, ctx.blobs, target, sealer,
                                      settings.data_dir / "backup" / "scratch", workers=workers, on_progress=progress,
                                      database_key=ctx.db.key)
                dropped = catalog.prune(target, _policy(settings), keep_also=manifest.generation) if prune else []
        except Exception as exc:
            notices.raise_notice(settings, "failed", target.url, f"{type(exc).__name__}: {exc}")
            fail(f"バックアップに失敗しました / the backup failed: {exc}")
        finally:
            ctx.db.dispose()
            ctx.blobs.close()
            target.close()
    summary = manifest.summary()
    summary["pruned"] = dropped
    if sealer.scheme == SCHEME_NONE:
        summary["warning"] = ("マスターキーが未設定のため暗号化されていません / not encrypted: no master key is "
                              "configured (master_key_file)")
    emit(summary)
    if manifest.missing_blobs:
        notices.raise_notice(settings, "incomplete", target.url,
                             f"{len(manifest.missing_blobs)} blob(s) named by the database are missing from the data "
                             f"folder: {', '.join(manifest.missing_blobs[:5])}")
        raise typer.Exit(1)


def _policy(settings: Settings) -> Policy:
    return Policy(settings.backup_keep_daily, settings.backup_keep_weekly, settings.backup_keep_monthly)


@app.command("list")
def list_(to: TargetOpt) -> None:
    """The complete generations in the target, oldest first (JSON)."""
    settings = _settings(None, None)
    with _target(to, settings) as target:
        try:
            found = catalog.generations(target)
            unfinished = catalog.incomplete(target)
        except TargetError as exc:
            fail(str(exc))
        emit({"target": target.url, "locked": target.locked, "generations": [m.summary() for m in found],
              "incomplete": unfinished})


@app.command("verify")
def verify(
    to: TargetOpt,
    generation: GenerationOpt = "latest",
    sample: Annotated[float, typer.Option(help="Fraction of the blobs to read back (1 = all).")] = 1.0,
    master_key: MasterKeyOpt = None,
    workers: Annotated[int, typer.Option(help="Blobs read at once.")] = 4,
) -> None:
    """Read a generation back and check every SHA-256; exit 1 naming each mismatch."""
    if not 0 < sample <= 1:
        fail("--sample must be a fraction in (0, 1]")
    settings = _settings(None, None, master_key)
    with _target(to, settings) as target:
        manifest = _resolve(target, generation)
        sealer = _reading_sealer(manifest, settings, target)
        with _progress() as progress:
            report = run_verify(target, sealer, manifest, sample=sample, workers=workers, on_progress=progress)
    emit(report.as_dict())
    if not report.ok:
        for problem in report.mismatches:
            typer.echo(f"mismatch: {problem}", err=True)
        raise typer.Exit(1)


@app.command("restore")
def restore_(
    from_: FromOpt,
    data: Annotated[Path, typer.Option("--data", help="The new data folder (must not hold a site).")],
    generation: GenerationOpt = "latest",
    database_url: Annotated[str | None, typer.Option("--database-url", help="A new, empty database "
                                                     "(PostgreSQL generations); default: SQLite in DATA.")] = None,
    master_key: MasterKeyOpt = None,
    workers: Annotated[int, typer.Option(help="Blobs restored at once.")] = 4,
) -> None:
    """Restore a whole site from a generation into a new data folder (run it again to resume)."""
    settings = restore_settings(data, database_url, master_key)
    with _target(from_, settings) as target:
        manifest = _resolve(target, generation)
        sealer = _reading_sealer(manifest, settings, target)
        try:
            with _progress() as progress:
                report = restore(target, sealer, manifest, settings, workers=workers, on_progress=progress)
        except (RestoreError, TargetError, MasterKeyError) as exc:
            fail(str(exc))
    emit(report.as_dict())


@app.command("drill")
def drill(
    from_: FromOpt,
    data: Annotated[Path | None, typer.Option("--data", help="The primary's data folder (where a failed drill's "
                                              "notice is recorded).")] = None,
    scratch: Annotated[Path | None, typer.Option(help="Scratch folder (default: a temporary one).")] = None,
    database_url: Annotated[str | None, typer.Option("--database-url", help="A scratch, empty PostgreSQL "
                                                     "database for a PostgreSQL generation.")] = None,
    sample: Annotated[float, typer.Option(help="Fraction of blobs verified and of media read through the API.")] = 0.1,
    master_key: MasterKeyOpt = None,
    keep: Annotated[bool, typer.Option(help="Keep the scratch site afterwards.")] = False,
) -> None:
    """Restore the latest generation into scratch, verify, start the app on it, read media through the API."""
    settings = _settings(data, None, master_key)
    scratch_dir = scratch or Path(tempfile.mkdtemp(prefix="chairside-drill-"))
    with _target(from_, settings) as target:
        manifest = _resolve(target, "latest")
        sealer = _reading_sealer(manifest, settings, target)
        with _progress() as progress:
            report = run_drill(target, sealer, manifest, scratch_dir, _serve, database_url=database_url,
                               master_key_file=settings.master_key_file, sample=sample, keep=keep,
                               on_progress=progress)
    result = report.as_dict()
    result["generation_age_h"] = round((datetime.now(UTC) - manifest.created_at).total_seconds() / 3600, 2)
    emit(result)
    if not report.ok:
        if data is not None:
            notices.raise_notice(settings, "drill", from_, report.error or json.dumps(report.media_failures[:5]))
        raise typer.Exit(1)


def _serve(ctx: Context) -> AbstractContextManager[str]:
    return _live(ctx)


@contextmanager
def _live(ctx: Context) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in a thread, for the drill's reads."""
    import socket

    import uvicorn

    from chairside.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the drill could not start the app")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@app.command("check")
def check(
    to: TargetOpt,
    data: DataDir = Path("./chairside-data"),
    max_age_h: Annotated[float | None, typer.Option(help="Default: the backup_max_age_h setting.")] = None,
) -> None:
    """Raise a notice (and exit 1) when the newest generation is older than allowed, or there is none."""
    settings = _settings(data, None)
    limit = settings.backup_max_age_h if max_age_h is None else max_age_h
    try:
        with _target(to, settings) as target:
            found = catalog.generations(target)
    except TargetError as exc:
        notices.raise_notice(settings, "missed", to, str(exc))
        fail(str(exc))
    newest = found[-1] if found else None
    age_h = None if newest is None else (datetime.now(UTC) - newest.created_at).total_seconds() / 3600
    emit({"target": to, "newest": newest.generation if newest else None,
          "age_h": None if age_h is None else round(age_h, 2), "max_age_h": limit})
    if age_h is None or age_h > limit:
        detail = ("no complete generation in the target" if newest is None else
                  f"the newest generation {newest.generation} is {age_h:.1f} h old (limit {limit} h)")
        notices.raise_notice(settings, "missed", to, detail)
        raise typer.Exit(1)
