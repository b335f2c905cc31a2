"""Engine and session factory: SQLite in WAL mode by default, PostgreSQL when the URL says so."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def private_sqlite_files(path: Path) -> None:
    """The database and its WAL files readable by this user only (0600). SQLite creates the -wal and -shm
    files with the database file's mode, so a database made here 0600 keeps them so; older ones are fixed."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # an empty file is an empty database
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_sqlite_files(Path(path))
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
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

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
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
