"""Engine and session factory: SQLite in WAL mode by default, PostgreSQL when the URL says so."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pydantic_core
from sqlalchemy import URL, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def private_sqlite_files(path: Path) -> None:
    """The database and its WAL files readable by this user only (0600). SQLite creates the -wal and -shm
    files with the database file's mode, so a database made here 0600 keeps them so; older ones are fixed."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # an empty file is an empty database
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def json_text(value: Any) -> str:
    """JSON columns written by pydantic-core's serializer, not `json.dumps`: the same JSON (NaN included) about
    ten times faster, and each `json.dumps` of a large value (a drawing of 20 000 points: ~40 ms) holds the GIL
    the whole time, so the event loop, waiting for it, stalled every other request (docs/benchmarks.md,
    "Hostile input")."""
    return pydantic_core.to_json(value).decode()


def make_engine(url: str, *, key: bytes | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url``. ``key``: a SQLite file encrypted by SQLCipher with this raw 256-bit key
    (keys/database.py decides when, and keeps the key wrapped by the master key)."""
    kwargs.setdefault("json_serializer", json_text)
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_sqlite_files(Path(path))
        target: str | URL = url
        if key is not None:
            # SQLAlchemy's documented SQLCipher dialect (driver: sqlcipher3). It sends `PRAGMA key="<password>"`
            # first on every new connection; "x'<64 hex>'" is SQLCipher's raw-key form, so no PBKDF2 runs per
            # connection. QueuePool like the plain SQLite file dialect (that dialect's default is one
            # connection per thread).
            target = URL.create("sqlite+pysqlcipher", password=f"x'{key.hex()}'", database=path)
            kwargs.setdefault("poolclass", QueuePool)
        engine = create_engine(
            target, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, open transactions (BEGIN IMMEDIATE below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # A read-only transaction takes no lock (WAL readers never block). Any other takes the
            # write lock up front: no deadlocks when two writers would upgrade at once.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, *, key: bytes | None = None) -> None:
        self.url = url
        # SQLCipher's raw key when the file is encrypted (keys/database.py); the online backup needs it.
        self.key = key
        self.engine = make_engine(url, key=key)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(read_only=True), expire_on_commit=False)
        # Write transactions committed through this object: in-process read caches compare it to
        # drop what any write here may have changed (readcache.py).
        self.writes = 0
        self._disposed = False

        @event.listens_for(self.engine, "checkin")
        def _close_if_disposed(_dbapi_conn: Any, record: Any) -> None:
            # `Engine.dispose()` closes only the idle connections: one still in use (a request finishing
            # during shutdown, a stream abandoned by its reader) would go back to the discarded pool and
            # stay open until the garbage collector finds it. Close it as it comes back instead.
            if self._disposed:
                record.invalidate()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        try:
            with self._sessions() as s, s.begin():
                yield s
        finally:
            self.writes += 1  # counted on rollback too: a failed commit may have changed nothing or all

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction: on SQLite it takes no write lock, so reads never queue behind writes."""
        with self._readers() as s, s.begin():
            yield s

    def dispose(self) -> None:
        """Close every connection: the idle ones now, the ones still in use as they are returned."""
        self._disposed = True
        self.engine.dispose()


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. `Session.execute` is typed as answering a Result; for a DML
    statement it is a CursorResult, which has the count (SQLAlchemy documents this cast)."""
    return cast("CursorResult[Any]", result).rowcount
