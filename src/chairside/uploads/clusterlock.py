"""The per-upload lock across servers: a PostgreSQL advisory lock, beside the partial file's flock.

`flock` (blobs/parts.py) serialises PATCHes of one upload between threads and processes of one host
(and between hosts on a shared filesystem that honours locks). Behind a load balancer, the two
PATCHes of a retrying client can reach two hosts at once: on PostgreSQL every server also takes a
session advisory lock keyed by the upload's id, on a connection of its own (not one of the pool:
a PATCH holds it for as long as its body takes). A server that dies mid-PATCH drops its connection
and PostgreSQL releases the lock at once. SQLite is one host's database: the flock is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator

import anyio
import psycopg
from sqlalchemy.engine import make_url

from chairside.context import Context
from chairside.errors import Problem

__all__ = ["held", "lock_key"]


def lock_key(upload_id: str) -> int:
    """The advisory lock's 64-bit key for an upload (signed, as PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.sha256(b"chairside.upload:" + upload_id.encode()).digest()[:8], "big", signed=True)


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


def _try(conn: psycopg.Connection[tuple[object, ...]], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


@contextlib.asynccontextmanager
async def held(ctx: Context, upload_id: str, wait_s: float) -> AsyncIterator[None]:
    """Hold the upload's lock on every server sharing this database; 423 after `wait_s` if another holds it."""
    if ctx.db.engine.dialect.name != "postgresql":
        yield
        return
    key = lock_key(upload_id)
    conn = await anyio.to_thread.run_sync(_connect, ctx.db.url)
    try:
        deadline = time.monotonic() + wait_s
        while not await anyio.to_thread.run_sync(_try, conn, key):
            if time.monotonic() >= deadline:
                raise Problem(
                    423, "This upload is busy with another request. Wait a moment and resume.", code="upload-locked",
                    headers={"Retry-After": "1", "Tus-Resumable": "1.0.0", "Connection": "close"},
                )
            await asyncio.sleep(0.05)
        yield
    finally:
        await anyio.to_thread.run_sync(conn.close)  # ends the session: the lock goes with it
