"""A signed-in device's reads take no write transaction: the session is read, not locked, on each request (a
page's thumbnails asked for at once must not queue on SQLite's write lock for it); last_seen_at is still
written when it is due, and a lapsed session still ends. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import event, select, update

from chairside.context import Context
from chairside.db.models import DeviceSession, utcnow
from tests.conftest import LiveServer, sign_in
from tests.factories import Viewer


@contextmanager
def _write_transactions(ctx: Context) -> Iterator[list[int]]:
    """Counts the transactions begun on the engine that are not read-only (on SQLite: BEGIN IMMEDIATE)."""
    seen: list[int] = []

    def begin(conn: Any) -> None:
        if not conn.get_execution_options().get("read_only"):
            seen.append(1)

    event.listen(ctx.db.engine, "begin", begin)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "begin", begin)


def _last_seen(ctx: Context, token_owner: str) -> Any:
    with ctx.db.read() as s:
        return s.scalar(select(DeviceSession.last_seen_at).where(DeviceSession.device_name == token_owner))


def test_reads_of_a_fresh_session_take_no_write_lock_and_a_due_one_is_touched(
    ctx: Context, server: LiveServer, viewer: Viewer
) -> None:
    token = sign_in(server, viewer, "Reception iPad")
    headers = {"Authorization": f"Bearer {token}"}
    with _write_transactions(ctx) as writes:
        for _ in range(3):
            assert httpx.get(f"{server.url}/api/v1/me", headers=headers).status_code == 200
    assert writes == []

    # Seen a minute ago: the next request writes last_seen_at (once), as before.
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).where(DeviceSession.device_name == "Reception iPad")
                  .values(last_seen_at=utcnow() - timedelta(seconds=60)))
    before = _last_seen(ctx, "Reception iPad")
    with _write_transactions(ctx) as writes:
        assert httpx.get(f"{server.url}/api/v1/me", headers=headers).status_code == 200
        assert httpx.get(f"{server.url}/api/v1/me", headers=headers).status_code == 200
    assert len(writes) == 1
    assert _last_seen(ctx, "Reception iPad") > before

    # Idle past the limit: the read ends the session, and says why.
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).where(DeviceSession.device_name == "Reception iPad")
                  .values(last_seen_at=utcnow() - timedelta(seconds=ctx.settings.session_idle_s + 5)))
    r = httpx.get(f"{server.url}/api/v1/me", headers=headers)
    assert r.status_code == 401 and r.json()["type"].endswith("session-idle")
    with ctx.db.read() as s:
        assert s.scalar(select(DeviceSession.end_reason).where(DeviceSession.device_name == "Reception iPad")) == "idle"
