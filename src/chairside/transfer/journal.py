"""The local journal of an import or an export: one SQLite file, one row per file, committed as each file is done.

A crash, a kill or a reboot loses at most the file in progress: the next run reads the journal
and goes on from there. The journal only saves work (re-reading what was done): correctness
does not depend on it, because imported media ids are derived from the file (names.import_media_id)
and exported files are compared with their SHA-256. WAL with `synchronous=FULL`: a row the
journal says is done is on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    relpath TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    media_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT '',
    duration_s REAL NOT NULL DEFAULT 0,
    info TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS files_media ON files (media_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SELECT = "SELECT relpath, size, mtime_ns, sha256, media_id, status, reason, kind, duration_s, info FROM files"


@dataclass(frozen=True)
class Entry:
    relpath: str
    size: int
    mtime_ns: int
    sha256: str
    media_id: str
    status: str  # done | skipped
    reason: str = ""
    kind: str = ""
    duration_s: float = 0.0
    info: str = ""  # the export's media.csv row, as JSON


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, relpath: str) -> Entry | None:
        row = self._db.execute(_SELECT + " WHERE relpath = ?", (relpath,)).fetchone()
        return Entry(*row) if row else None

    def put(self, e: Entry) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files (relpath, size, mtime_ns, sha256, media_id, status, reason, kind, duration_s,"
            " info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.relpath, e.size, e.mtime_ns, e.sha256, e.media_id, e.status, e.reason, e.kind, e.duration_s, e.info))

    def by_media(self, media_id: str) -> Entry | None:
        row = self._db.execute(_SELECT + " WHERE media_id = ? LIMIT 1", (media_id,)).fetchone()
        return Entry(*row) if row else None

    def entries(self, status: str | None = None) -> Iterator[Entry]:
        query = _SELECT
        args: tuple[str, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        for row in self._db.execute(query + " ORDER BY relpath", args):
            yield Entry(*row)

    def under(self, prefix: str) -> Iterator[str]:
        """The relative paths that start with `prefix` (an index range, not a scan)."""
        for (relpath,) in self._db.execute("SELECT relpath FROM files WHERE relpath >= ? AND relpath < ?",
                                           (prefix, prefix + "\U0010ffff")):
            yield str(relpath)

    def totals(self, status: str = "done") -> tuple[int, int, float]:
        """Files, bytes and video seconds of the entries with `status`."""
        files, size, seconds = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(duration_s), 0) FROM files WHERE status = ?",
            (status,)).fetchone()
        return int(files), int(size), float(seconds)

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def metas(self, prefix: str) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT key, value FROM meta WHERE key >= ? AND key < ?",
                                (prefix, prefix + "\U0010ffff")).fetchall()
        return [(str(k), str(v)) for k, v in rows]

    def del_meta(self, key: str) -> None:
        self._db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
