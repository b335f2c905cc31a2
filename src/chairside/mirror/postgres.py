"""PostgreSQL at the two sites: synchronous replication on demand, and an old primary made a standby again.

Synchronous replication (`chairside admin mirror sync --on`): the primary's
`synchronous_standby_names` names the mirror's standby (`FIRST 1 ("chairside_mirror")`; the standby
connects with `application_name=chairside_mirror`), set with `ALTER SYSTEM` and a reload, so it
survives restarts. A commit is then acknowledged to a client only once the standby has flushed it
(`synchronous_commit = on`): a primary lost right after an acknowledged write loses nothing. The
trade: while the standby is gone, every write at the primary waits; `--off` (or a standby back)
releases the waiting writes at once (docs/disaster-recovery.md, "Synchronous replication").

Rejoin (`chairside mirror rejoin --pgdata …`): the old primary's server is stopped, rewound to the
new primary's timeline with `pg_rewind` (the clusters need data checksums or `wal_log_hints = on`,
set at initdb), and started as its standby. When rewinding is impossible (no checksums/hints, WAL
gone at the new primary), the old data directory is moved aside (kept for forensics) and a fresh
`pg_basebackup` is taken instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

STANDBY_NAME = "chairside_mirror"  # the standby's application_name, which synchronous_standby_names names
TOOL_TIMEOUT_S = 600
OWN_FILES = ("postgresql.conf", "pg_hba.conf", "pg_ident.conf")  # this server's own settings, kept through a rejoin


class PostgresStepFailed(Exception):
    """A PostgreSQL tool failed; the message names the tool and its last words."""


def synchronous_names(standby: str = STANDBY_NAME) -> str:
    return f'FIRST 1 ("{standby}")'


def set_synchronous(database_url: str, on: bool, standby: str = STANDBY_NAME) -> dict[str, str]:
    """Turn synchronous replication to the mirror's standby on or off at the primary (a superuser's URL)."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if on:
                conn.execute(text(f"ALTER SYSTEM SET synchronous_standby_names = '{synchronous_names(standby)}'"))
                conn.execute(text("ALTER SYSTEM SET synchronous_commit = 'on'"))
            else:
                conn.execute(text("ALTER SYSTEM RESET synchronous_standby_names"))
            conn.execute(text("SELECT pg_reload_conf()"))
        return replication(database_url)
    finally:
        engine.dispose()


def replication(database_url: str) -> dict[str, str]:
    """`synchronous_standby_names` as the server now runs it (after the reload) and each standby's sync state."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            for _ in range(50):  # pg_reload_conf() signals the postmaster; the backends take it a moment later
                names = str(conn.execute(text("SELECT setting FROM pg_settings "
                                              "WHERE name = 'synchronous_standby_names'")).scalar_one())
                conn.rollback()
                stated = str(conn.execute(text("SHOW synchronous_standby_names")).scalar_one())
                if names == stated:
                    break
                time.sleep(0.1)
            standbys = {str(r[0]): str(r[1]) for r in conn.execute(text(
                "SELECT application_name, sync_state FROM pg_stat_replication"))}
        return {"synchronous_standby_names": names, **{f"standby:{k}": v for k, v in standbys.items()}}
    finally:
        engine.dispose()


# --- rejoin: the old primary's server becomes the new primary's standby --------------------------------------

@dataclass(frozen=True)
class Cluster:
    """A PostgreSQL data directory on this machine and the server binaries that run it."""

    pgdata: Path
    bin_dir: Path

    @property
    def owner(self) -> str:
        return pwd.getpwuid(self.pgdata.stat().st_uid).pw_name

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server tool as the data directory's owner (the tools refuse to run as root)."""
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0 and self.owner != "root":
            command = ["runuser", "-u", self.owner, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
        if check and result.returncode != 0:
            raise PostgresStepFailed(f"{tool}: {(result.stderr or result.stdout).strip()[-800:]}")
        return result

    def running(self) -> bool:
        return self.run("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0

    def stop(self) -> None:
        if self.running():
            self.run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.pgdata / "chairside-rejoin.log"), "-w", "start")


def default_bin_dir() -> Path:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin), else those on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    on_path = shutil.which("pg_rewind")
    if on_path is None:
        raise PostgresStepFailed("pg_rewind: the PostgreSQL server binaries are not installed (--pg-bin)")
    return Path(on_path).parent


def conninfo(database_url: str, extra: Sequence[tuple[str, str]] = (), dbname: bool = True) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL (pg_rewind, pg_basebackup, primary_conninfo)."""
    url = make_url(database_url)
    parts = [("host", url.host or "127.0.0.1"), ("port", str(url.port or 5432)), ("user", url.username or "postgres")]
    if dbname:
        parts.append(("dbname", url.database or "postgres"))
    if url.password:
        parts.append(("password", str(url.password)))
    parts += list(extra)
    return " ".join(f"{k}='{_quote(v)}'" for k, v in parts)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _follow(cluster: Cluster, source_url: str, standby: str) -> None:
    """Make the (stopped) cluster a standby of the source: standby.signal and primary_conninfo."""
    info = conninfo(source_url, [("application_name", standby)], dbname=False)
    auto = cluster.pgdata / "postgresql.auto.conf"
    with open(auto, "a") as f:
        f.write("# chairside mirror rejoin: follow the new primary\n"
                f"primary_conninfo = '{info.replace(chr(39), chr(39) * 2)}'\n")
    signal = cluster.pgdata / "standby.signal"
    signal.touch()
    owner = cluster.pgdata.stat()
    os.chown(signal, owner.st_uid, owner.st_gid)


def _checkpoint(source_url: str) -> None:
    """A CHECKPOINT at the new primary: pg_rewind reads its timeline from the last checkpoint, and a freshly
    promoted server's end-of-recovery checkpoint may still be spreading out (it then looks like the old timeline,
    and pg_rewind answers "no rewind required" while the old primary holds writes of its own)."""
    engine = create_engine(source_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()


def rejoin(cluster: Cluster, source_url: str, standby: str = STANDBY_NAME) -> dict[str, str]:
    """Stop the old primary's server, rewind it to the new primary (or take a fresh base copy), start it as standby."""
    cluster.stop()
    _checkpoint(source_url)
    own = {name: (cluster.pgdata / name).read_bytes() for name in OWN_FILES if (cluster.pgdata / name).exists()}
    rewound = cluster.run("pg_rewind", "-D", str(cluster.pgdata), f"--source-server={conninfo(source_url)}",
                          check=False)
    method, aside = "pg_rewind", ""
    if rewound.returncode != 0:
        method = "pg_basebackup"
        aside_path = cluster.pgdata.with_name(f"{cluster.pgdata.name}.before-rejoin-{time.strftime('%Y%m%dT%H%M%S')}")
        cluster.pgdata.rename(aside_path)
        aside = str(aside_path)
        cluster.pgdata.mkdir(mode=0o700)
        shutil.chown(cluster.pgdata, aside_path.stat().st_uid, aside_path.stat().st_gid)
        cluster.run("pg_basebackup", "-D", str(cluster.pgdata), "-d", conninfo(source_url), "-X", "stream")
    for name, body in own.items():  # both tools copy the source's files: keep this server's port and access rules
        (cluster.pgdata / name).write_bytes(body)
    _follow(cluster, source_url, standby)
    cluster.start()
    out = {"method": method, "pgdata": str(cluster.pgdata),
           "rewind_log": (rewound.stderr + rewound.stdout).strip()[-600:]}
    if aside:
        out["kept_aside"] = aside
    return out
