"""The relay's uploader: carries the outbox (relay/outbox.py) to the cloud, in order, forever.

Order. Ops are taken in `id` order with two lanes:
- other ops (patient.create, patient.update, media.trash, media.restore) go one at a time to
  `POST /api/v1/relay/ops`;
- media.upload ops go with tus to `/api/v1/uploads/`, up to `relay_upload_parallel` at once.
No op starts before every earlier non-media op is done (a patient exists in the cloud before
its media), and an op waits for every earlier op on the same entity (a trash after its upload).

This module schedules the ops and sends the non-media ones; the rest is beside it:
- relay/queue.py: the outbox's rows as the uploader takes and marks them, and the status figures;
- relay/sender.py: the tus transfer of one file (create, resume at the cloud's offset, PATCH);
- relay/retry.py: which answers are retried (with backoff) and which are refused for good;
- relay/meter.py: the upload rate; relay/bandwidth.py: the token bucket shared by the transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from datetime import datetime
from typing import Any

import anyio
import httpx

from chairside.context import Context
from chairside.db.models import utcnow
from chairside.relay import queue, viewer
from chairside.relay.bandwidth import Throttle
from chairside.relay.meter import RateMeter
from chairside.relay.queue import MEDIA, Op
from chairside.relay.retry import Refused, Retry, backoff_s, io_timeout, judge, problem_text
from chairside.relay.sender import Cut, Sender
from chairside.relay.upstream import Upstream

log = logging.getLogger("chairside.relay.uploader")

POLL_S = 1.0  # how often the outbox is looked at when nothing wakes the uploader


class Uploader:
    def __init__(self, ctx: Context, upstream: Upstream, *, chunk_checksums: bool = False) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.up = upstream
        self.parallel = max(1, s.relay_upload_parallel)
        self.throttle = Throttle(s.relay_bandwidth)
        self.timeout = io_timeout(s.relay_offline_after_s)
        self.meter = RateMeter()
        # The media lane's transfers; chunk_checksums: Upload-Checksum on each request (off by default).
        self.sender = Sender(ctx, upstream, self.throttle, self.meter, chunk=s.relay_upload_chunk_bytes,
                             chunk_checksums=chunk_checksums)
        self.running: dict[int, asyncio.Task[None]] = {}
        self._kinds: dict[int, str] = {}
        self.wake = asyncio.Event()
        # op id → wall time of its last transport failure: retried at once when the cloud answers again.
        self._transport_failed: dict[int, float] = {}
        self._client: httpx.AsyncClient | None = None

    @property
    def sent_bytes(self) -> int:
        """Bytes handed to the cloud since start (resends included)."""
        return self.sender.sent_bytes

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        self._client = self.up.async_client(timeout=self.timeout)
        try:
            while True:
                try:
                    # The read in a worker thread; the planning here, on the loop that owns self.running.
                    starts = self._plan(await anyio.to_thread.run_sync(self._pending))
                except Exception:  # the database is busy or gone for a moment: look again soon
                    log.exception("uploader: reading the outbox failed")
                    starts = []
                for op_id, kind in starts:
                    task = asyncio.create_task(self._run_op(op_id, kind), name=f"outbox-{op_id}")
                    self.running[op_id] = task
                    self._kinds[op_id] = kind
                    task.add_done_callback(functools.partial(self._finished, op_id))
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that arrives as the
                # event is set (CPython gh-86296), and the relay's shutdown then waits for this loop for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await self.wake.wait()
                self.wake.clear()
        finally:
            tasks = list(self.running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, op_id: int, _task: object = None) -> None:
        self.running.pop(op_id, None)
        self._kinds.pop(op_id, None)
        self.wake.set()

    def _due(self, op_id: int, next_try_at: datetime | None, now: datetime) -> bool:
        if next_try_at is None or next_try_at <= now:
            return True
        failed = self._transport_failed.get(op_id)
        return failed is not None and self.up.last_contact > failed  # the cloud answered since: try now

    def _pending(self) -> list[Any]:
        """The first pending ops, in order (a database read: call it in a worker thread)."""
        return queue.pending(self.ctx)

    def _plan(self, rows: list[Any] | None = None) -> list[tuple[int, str]]:
        """Which pending ops may start now, by the ordering rules."""
        now = utcnow()
        if rows is None:
            rows = self._pending()
        seen: set[uuid.UUID] = set()
        media_running = sum(1 for i in self.running if self._kinds.get(i) == MEDIA)
        starts: list[tuple[int, str]] = []
        for row in rows:
            blocked = row.entity_id in seen
            seen.add(row.entity_id)
            if row.kind != MEDIA:
                if not blocked and row.id not in self.running and self._due(row.id, row.next_try_at, now):
                    starts.append((row.id, row.kind))
                break  # nothing after an unfinished non-media op may start
            if blocked or row.id in self.running or not self._due(row.id, row.next_try_at, now):
                continue
            if media_running >= self.parallel:
                continue
            media_running += 1
            starts.append((row.id, row.kind))
        return starts

    async def _run_op(self, op_id: int, kind: str) -> None:
        op = await anyio.to_thread.run_sync(queue.load, self.ctx, op_id)
        if op is None:
            return
        try:
            if op.kind == MEDIA:
                await self.sender.send(self.client, op)
            else:
                await self._send_op(op)
        except Refused as e:
            log.warning("outbox op %s (%s %s) refused by the cloud: %s", op.id, op.kind, op.entity_id, e)
            await anyio.to_thread.run_sync(queue.mark_failed, self.ctx, op, str(e))
        except Retry as e:  # (a transfer that moved bytes has reset op.attempts: relay/sender.py)
            await self._retry_later(op, str(e), transport=e.transport, progressed=False)
        except Cut as e:
            await self._unreachable(op, e.error, progressed=e.progressed)
        except (httpx.TransportError, httpx.TimeoutException) as e:
            await self._unreachable(op, e, progressed=False)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or the disk: keep the op, try later, say why
            log.exception("outbox op %s failed unexpectedly", op.id)
            await self._retry_later(op, f"unexpected error at the relay: {type(e).__name__}: {e}", transport=False,
                                    progressed=False)
        else:
            self._transport_failed.pop(op.id, None)

    async def _unreachable(self, op: Op, e: httpx.TransportError, *, progressed: bool) -> None:
        await self._retry_later(op, self.up.unreachable(e), transport=True, progressed=progressed)

    async def _retry_later(self, op: Op, why: str, *, transport: bool, progressed: bool) -> None:
        attempts = 1 if progressed else op.attempts + 1
        # ±20 % jitter: ops that failed together (the line went down) do not come back in one burst.
        wait = backoff_s(attempts) * random.uniform(0.8, 1.2)
        if transport:
            self._transport_failed[op.id] = time.time()
        else:
            self._transport_failed.pop(op.id, None)
        log.info("outbox op %s (%s): %s; next try in %.1f s", op.id, op.kind, why, wait)
        await anyio.to_thread.run_sync(queue.mark_retry, self.ctx, op, why, attempts, wait)

    # --- non-media ops ------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "Uploader.run() makes the client"
        return self._client

    def _superseded(self, op: Op, result: dict[str, Any]) -> None:
        with self.ctx.db.session() as s:
            viewer.superseded(s, op.body, result)

    def _moved(self, op: Op, result: dict[str, Any]) -> None:
        with self.ctx.db.session() as s:
            viewer.moved(s, op.body, result)

    async def _send_op(self, op: Op) -> None:
        response = await self.client.post(
            "/api/v1/relay/ops", json={"op_id": str(op.op_id), "kind": op.kind, "body": op.body})
        self.up.contact()
        if response.status_code == 200:
            await anyio.to_thread.run_sync(queue.mark_done, self.ctx, op)
            if op.kind == "session.signin":  # the cloud may hold a later sign-in: this one ends (relay/viewer.py)
                await anyio.to_thread.run_sync(self._superseded, op, response.json().get("result") or {})
            if op.kind == "media.move":  # the cloud's patient for the item wins (relay/viewer.py `moved`)
                await anyio.to_thread.run_sync(self._moved, op, response.json().get("result") or {})
            return
        why = problem_text(response)
        if response.status_code == 404:  # retried
            why += " (an earlier change may not have reached the cloud yet)"
        judge(response, why)
