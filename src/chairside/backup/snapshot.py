"""The metadata as one consistent snapshot, and what the manifest says about it.

- **SQLite**: the online backup API (``sqlite3.Connection.backup``) copies the live database page by page
  into a scratch file while the server keeps writing; the copy is one consistent state. Row counts, the
  schema revision and the blobs the rows name are then read from the copy.
- **PostgreSQL**: ``pg_dump --format=custom`` (Debian's ``postgresql-client``), chosen over
  ``pg_basebackup``/pgBackRest because a generation is one site's logical data: it restores into any
  empty database of the same or a newer server version (pg_basebackup copies the whole cluster, every
  database, and restores only onto the same major version and architecture), and it needs no
  replication slot, WAL archive or superuser. The dump runs inside a REPEATABLE READ transaction whose
  snapshot is exported (``pg_export_snapshot()`` → ``pg_dump --snapshot``), and the row counts and blob
  references are read in that same transaction: the manifest describes exactly the dumped state.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chairside.db.models import Base
from chairside.keys import database

__all__ = [
    "BLOB_REFS_SQL",
    "SnapshotError",
    "SnapshotInfo",
    "libpq_url",
    "restore_postgres",
    "snapshot",
]

#: Every column that names a blob: the media, their thumbnails, their browser-ready copies.
BLOB_REFS_SQL = (
    "SELECT sha256 FROM media UNION SELECT thumb_sha256 FROM media WHERE thumb_sha256 IS NOT NULL "
    "UNION SELECT sha256 FROM media_derivatives ORDER BY 1"
)


class SnapshotError(Exception):
    """The metadata could not be snapshotted or restored (message for the operator, ja + en)."""


@dataclass
class SnapshotInfo:
    kind: str  # "sqlite" or "pg_dump"
    path: Path
    schema_revision: str | None
    tables: dict[str, int]
    blob_refs: list[str] = field(default_factory=list)


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql://…`` (what libpq tools and psycopg take)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgres") else url


def _sqlite_path(url: str) -> Path:
    path = url.split("///", 1)[-1]
    if not path or path == ":memory:":
        raise SnapshotError(f"not a SQLite file URL: {url}")
    return Path(path)


def _describe(cursor: Any, placeholder_tables: list[str]) -> tuple[str | None, dict[str, int], list[str]]:
    tables: dict[str, int] = {}
    for name in placeholder_tables:
        cursor.execute(f'SELECT count(*) FROM "{name}"')
        tables[name] = int(cursor.fetchone()[0])
    revision: str | None
    try:
        cursor.execute("SELECT version_num FROM alembic_version")
        row = cursor.fetchone()
        revision = None if row is None else str(row[0])
    except Exception:
        revision = None
    cursor.execute(BLOB_REFS_SQL)
    refs = [str(row[0]) for row in cursor.fetchall()]
    return revision, tables, refs


def _table_names() -> list[str]:
    return [t.name for t in Base.metadata.sorted_tables]


@contextmanager
def snapshot(database_url: str, scratch: Path, progress: Callable[[int, int], None] | None = None, *,
             key: bytes | None = None) -> Iterator[SnapshotInfo]:
    """Take the snapshot into ``scratch`` (a folder); the file is removed when the block ends.

    ``key``: the database is encrypted by SQLCipher with this raw key (keys/database.py). The copy is made by
    SQLCipher's backup API under the same key, so no page of it is ever on disk in the clear.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    if database_url.startswith("sqlite"):
        out = scratch / "metadata.sqlite"
        out.unlink(missing_ok=True)
        source_path = _sqlite_path(database_url)
        if not source_path.exists():
            raise SnapshotError(f"データベースがありません: {source_path} / the database does not exist: {source_path}")
        if key is None and database.file_state(source_path) == "encrypted":
            raise SnapshotError(
                f"データベース {source_path} は暗号化されています。マスターキーを設定して実行してください / "
                f"the database {source_path} is encrypted: run the backup with its master key configured"
            )
        source: Any = sqlite3.connect(source_path, timeout=30) if key is None else database.connect(source_path, key,
                                                                                                    timeout=30)
        target: Any = sqlite3.connect(out) if key is None else database.connect(out, key)
        try:

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            source.backup(target, pages=1024, progress=step)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            cursor = target.cursor()
            existing = {r[0] for r in cursor.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            revision, tables, refs = _describe(cursor, [t for t in _table_names() if t in existing])
            cursor.close()
        finally:
            target.close()
            source.close()
        try:
            yield SnapshotInfo("sqlite", out, revision, tables, refs)
        finally:
            out.unlink(missing_ok=True)
        return
    if database_url.startswith("postgres"):
        yield from _pg_snapshot(database_url, scratch)
        return
    raise SnapshotError(f"unsupported database URL for a backup: {database_url.split(':', 1)[0]}")


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SnapshotError(
            f"{name} が見つかりません（Debian: apt-get install postgresql-client） / {name} is not installed "
            "(Debian: apt-get install postgresql-client)"
        )
    return found


def _pg_snapshot(database_url: str, scratch: Path) -> Iterator[SnapshotInfo]:
    import psycopg

    out = scratch / "metadata.pgdump"
    out.unlink(missing_ok=True)
    url = libpq_url(database_url)
    with psycopg.connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot_id = str(row[0])
        dump = subprocess.run(
            [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot_id}",
             f"--file={out}", f"--dbname={url}"],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "30"},
        )
        if dump.returncode != 0:
            out.unlink(missing_ok=True)
            raise SnapshotError(
                f"pg_dump に失敗しました / pg_dump failed (exit {dump.returncode}): {dump.stderr.strip()[-800:]}"
            )
        cursor = conn.cursor()
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        existing = {str(r[0]) for r in cursor.fetchall()}
        revision, tables, refs = _describe(cursor, [t for t in _table_names() if t in existing])
        conn.execute("COMMIT")
    try:
        yield SnapshotInfo("pg_dump", out, revision, tables, refs)
    finally:
        out.unlink(missing_ok=True)


def restore_postgres(dump: Path, database_url: str) -> None:
    """Load a custom-format dump into the empty database ``database_url`` (refused when it has tables)."""
    import psycopg

    url = libpq_url(database_url)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()
    if row is not None and int(row[0]) > 0:
        raise SnapshotError(
            "復元先のデータベースが空ではありません。新しい空のデータベースを指定してください / "
            "the database to restore into is not empty: give a new, empty database (--database-url)"
        )
    result = subprocess.run(
        [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
         f"--dbname={url}", str(dump)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SnapshotError(
            f"pg_restore に失敗しました / pg_restore failed (exit {result.returncode}): {result.stderr.strip()[-800:]}"
        )
