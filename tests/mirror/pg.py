"""Two PostgreSQL servers of our own for the mirror tests: a primary and its streaming hot standby.

Started with the installed server binaries (initdb, pg_ctl, pg_basebackup) on free loopback ports,
as the `postgres` user when run as root. Both clusters are made with data checksums (pg_rewind
needs them, or `wal_log_hints`), and the standby connects as `application_name=chairside_mirror`,
the name `chairside admin mirror sync --on` puts in the primary's `synchronous_standby_names`.
Shared by tests/mirror/test_pg_sync.py, tests/mirror/test_relay_kill.py and bench/mirror_kills.py.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from chairside.mirror.postgres import STANDBY_NAME, default_bin_dir
from tests.conftest import free_port


def available() -> bool:
    bins = Path("/usr/lib/postgresql")
    return any((p / "initdb").exists() for p in bins.glob("*/bin")) and (
        os.geteuid() != 0 or shutil.which("runuser") is not None)


def as_postgres(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [*args] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {result.stderr[-1500:]}")
    return result


@dataclass
class PgPair:
    root: Path
    a: Path  # the primary site's data directory
    b: Path  # the mirror site's (the hot standby)
    ports: tuple[int, int]

    @property
    def bin(self) -> Path:
        return default_bin_dir()

    @property
    def url_a(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.ports[0]}/chairside"

    @property
    def url_b(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.ports[1]}/chairside"

    def pg_ctl(self, folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        log = self.root / f"{folder.name}.log"
        return as_postgres(str(self.bin / "pg_ctl"), "-D", str(folder), "-l", str(log), *args, check=check)

    def lose_a(self) -> None:
        """The primary's database server is lost at once (no shutdown checkpoint, nothing more sent)."""
        self.pg_ctl(self.a, "-m", "immediate", "stop", check=False)

    def scalar(self, url: str, sql: str) -> object:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql)).scalar()
        finally:
            engine.dispose()

    def has_row(self, url: str, table: str, row_id: str) -> bool:
        with contextlib.suppress(Exception):  # a standby that has not replayed the schema yet
            return self.scalar(url, f"SELECT count(*) FROM {table} WHERE id = '{row_id}'") == 1
        return False


@contextlib.contextmanager
def pg_pair() -> Iterator[PgPair]:
    root = Path(tempfile.mkdtemp(prefix="chairside-pg-"))  # outside pytest's 0700 folders: postgres must reach it
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
    pair = PgPair(root, root / "a", root / "b", (free_port(), free_port()))
    initdb = pair.bin / "initdb"
    as_postgres(str(initdb), "-D", str(pair.a), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                "--data-checksums")
    with open(pair.a / "postgresql.conf", "a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1'\nport = {pair.ports[0]}\nunix_socket_directories = '{root}'\n"
                   "wal_level = replica\nmax_wal_senders = 6\nwal_keep_size = '256MB'\nfsync = on\n"
                   "wal_log_hints = on\n")
    with open(pair.a / "pg_hba.conf", "a") as hba:
        hba.write("host replication postgres 127.0.0.1/32 trust\n")
    started: list[Path] = []
    try:
        pair.pg_ctl(pair.a, "-w", "start")
        started.append(pair.a)
        as_postgres(str(pair.bin / "createdb"), "-h", "127.0.0.1", "-p", str(pair.ports[0]), "-U", "postgres",
                    "chairside")
        as_postgres(str(pair.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pair.ports[0]), "-U", "postgres",
                    "-D", str(pair.b), "-R", "-X", "stream", "--no-sync")
        conf_b = (pair.b / "postgresql.conf").read_text().replace(f"port = {pair.ports[0]}",
                                                                  f"port = {pair.ports[1]}")
        (pair.b / "postgresql.conf").write_text(conf_b)
        with open(pair.b / "postgresql.auto.conf", "a") as auto:  # the name synchronous_standby_names asks for
            auto.write(f"primary_conninfo = 'host=127.0.0.1 port={pair.ports[0]} user=postgres "
                       f"application_name={STANDBY_NAME}'\n")
        pair.pg_ctl(pair.b, "-w", "start")
        started.append(pair.b)
        yield pair
    finally:
        for folder in (pair.a, pair.b):
            if folder.exists():
                pair.pg_ctl(folder, "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)
