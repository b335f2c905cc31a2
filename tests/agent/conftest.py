"""The agent's tests: a real server on loopback, real H.264 clips, the real watchdog observer, a real state file.

The agent is a client of the station API: which database the server runs on changes nothing it
does, so these tests run the server on SQLite only (the server's own tests cover PostgreSQL), which
keeps the agent's share of the suite's time small.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chairside.agent.runner import AgentConfig
from chairside.agent.state import FileRow, State, connect

T = TypeVar("T")


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chairside.db'}"


def config(watch: Path, server: str, token: str, **kw: Any) -> AgentConfig:
    """Quick timings for tests (production defaults are in AgentConfig)."""
    values: dict[str, Any] = {"settle_s": 0.6, "close_settle_s": 0.2, "rescan_s": 0.5, "tick_s": 0.05,
                              "retry_base_s": 0.2, "retry_max_s": 1.0, "sdk_retries": 2, "sdk_retry_delay": 0.05,
                              "chunk_size": 64 * 1024}
    values.update(kw)
    return AgentConfig(watch=watch, server=server, token=token, **values)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0, watch: Path | None = None) -> T:
    """Poll until `check` answers something truthy (not a timing assertion: a deadline against hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {rows(watch)}" if watch else ""))
        time.sleep(0.05)


def rows(watch: Path) -> list[FileRow]:
    try:
        conn = connect(watch, create=False)
    except FileNotFoundError:
        return []
    try:
        return State(conn).all()
    except sqlite3.OperationalError:  # the agent (another process) is creating the file's tables right now
        return []
    finally:
        conn.close()


def row_for(watch: Path, name: str) -> FileRow | None:
    for r in rows(watch):
        if r.path.endswith(name):
            return r
    return None


@pytest.fixture
def watch(tmp_path: Path) -> Path:
    """The watch folder: a path with spaces and Japanese characters, as on a clinic's PC."""
    d = tmp_path / "診療 キャプチャ" / "Capture Data 1"
    d.mkdir(parents=True)
    return d
