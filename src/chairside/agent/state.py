"""The agent's memory: one SQLite file in `DIR/.chairside/state.db`.

Every file the agent decided was complete has one row, keyed by an id of its own, holding its
identity (relative path, device and inode, size, modification time), the media id it will be stored
under (made once, so a restart or a retry never makes a second item), the tus upload's URL (to
resume after a restart), its SHA-256 once the server confirmed it, and its state:

- `waiting`: complete, to be sent (`next_try_at` says when; `reason` why it waits, when it does);
- `sending`: being sent (`sent_bytes` of `size`);
- `sent`: the server holds it with the same SHA-256 (`moved` once it is in `.sent/`);
- `failed`: someone must act (`reason`); tried again only when the file changes.

WAL and `synchronous=FULL`: a committed change survives a power cut. Each thread opens its own
connection; the status command reads the same file.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    media_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'sending', 'sent', 'failed')),
    reason_ja TEXT,
    reason_en TEXT,
    chart_no TEXT,
    patient_id TEXT,
    upload_url TEXT,
    sha256 TEXT,
    sent_bytes INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_at REAL NOT NULL DEFAULT 0,
    moved INTEGER NOT NULL DEFAULT 0,
    first_seen_at REAL NOT NULL,
    started_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_path ON files (path);
CREATE INDEX IF NOT EXISTS files_inode ON files (dev, ino);
CREATE INDEX IF NOT EXISTS files_due ON files (state, next_try_at);
CREATE TABLE IF NOT EXISTS agent (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    server TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    problem_ja TEXT,
    problem_en TEXT
);
"""
STATES = ("waiting", "sending", "sent", "failed")


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    media_id: str
    state: str
    reason_ja: str | None
    reason_en: str | None
    chart_no: str | None
    patient_id: str | None
    upload_url: str | None
    sha256: str | None
    sent_bytes: int
    attempts: int
    next_try_at: float
    moved: int
    first_seen_at: float
    started_at: float | None
    updated_at: float


def state_path(watch: Path) -> Path:
    return watch / ".chairside" / "state.db"


def connect(watch: Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection to the folder's state file (made, with its folder, when `create`)."""
    path = state_path(watch)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    if create:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class State:
    """The rows' transitions, each one committed on its own."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _one(self, sql: str, *args: Any) -> FileRow | None:
        row = self.conn.execute(sql, args).fetchone()
        return FileRow(**dict(row)) if row is not None else None

    def _all(self, sql: str, *args: Any) -> list[FileRow]:
        return [FileRow(**dict(r)) for r in self.conn.execute(sql, args).fetchall()]

    def get(self, file_id: int) -> FileRow | None:
        return self._one("SELECT * FROM files WHERE id = ?", file_id)

    def by_path(self, path: str) -> FileRow | None:
        """The newest row for `path`."""
        return self._one("SELECT * FROM files WHERE path = ? ORDER BY id DESC LIMIT 1", path)

    def by_inode(self, dev: int, ino: int) -> list[FileRow]:
        return self._all("SELECT * FROM files WHERE dev = ? AND ino = ? ORDER BY id DESC", dev, ino)

    def all(self) -> list[FileRow]:
        return self._all("SELECT * FROM files ORDER BY id")

    def unfinished(self) -> list[FileRow]:
        return self._all("SELECT * FROM files WHERE state IN ('waiting', 'sending') ORDER BY first_seen_at, id")

    def due(self, now: float) -> FileRow | None:
        """The oldest file to send now (a `sending` row is one a killed agent left: it resumes)."""
        return self._one("SELECT * FROM files WHERE state IN ('waiting', 'sending') AND next_try_at <= ? "
                         "ORDER BY first_seen_at, id LIMIT 1", now)

    def failed(self) -> list[FileRow]:
        return self._all("SELECT * FROM files WHERE state = 'failed' ORDER BY id")

    def unmoved(self) -> list[FileRow]:
        return self._all("SELECT * FROM files WHERE state = 'sent' AND moved = 0 ORDER BY id")

    def add(self, path: str, st_dev: int, st_ino: int, size: int, mtime_ns: int, media_id: str) -> FileRow:
        now = time.time()
        cur = self.conn.execute(
            "INSERT INTO files (path, dev, ino, size, mtime_ns, media_id, state, first_seen_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'waiting', ?, ?)", (path, st_dev, st_ino, size, mtime_ns, media_id, now, now))
        row = self.get(int(cur.lastrowid or 0))
        assert row is not None
        return row

    def update(self, file_id: int, **values: Any) -> None:
        values["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in values)
        self.conn.execute(f"UPDATE files SET {cols} WHERE id = ?", (*values.values(), file_id))

    def forget(self, file_id: int) -> None:
        self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def heartbeat(self, pid: int, server: str, started_at: float, problem: tuple[str, str] | None = None) -> None:
        ja, en = problem or (None, None)
        self.conn.execute(
            "INSERT INTO agent (id, pid, server, started_at, heartbeat_at, problem_ja, problem_en) "
            "VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, server = excluded.server, "
            "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
            "problem_ja = excluded.problem_ja, problem_en = excluded.problem_en",
            (pid, server, started_at, time.time(), ja, en))

    def agent(self) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM agent WHERE id = 1").fetchone()
        return dict(row) if row is not None else None
