"""The relay's uploader: carries the outbox (relay/outbox.py) to the cloud, in order, forever.

Order. Ops are taken in `id` order with two lanes:
- other ops (patient.create, patient.update, media.trash, media.restore) go one at a time to
  `POST /api/v1/relay/ops`;
- media.upload ops go with tus to `/api/v1/uploads/`, up to `relay_upload_parallel` at once.
No op starts before every earlier non-media op is done (a patient exists in the cloud before
its media), and an op waits for every earlier op on the same entity (a trash after its upload).

Transfer. The tus upload is created and its URL committed to the op's row before any byte is
sent; after a cut, a timeout or a restart the uploader asks the cloud for its offset (HEAD)
and resumes there (404/410: the cloud dropped it, so it is created again). Each PATCH carries
up to `relay_upload_chunk_bytes` (64 MiB by default) and no per-request checksum: the cloud
keeps the bytes that arrived when a connection breaks, so a cut or a kill resends only the
bytes that were in flight, and one round trip (plus the cloud's fsync) is paid per 64 MiB, not
per 8 MiB. Integrity is end to end: the upload's `sha256` metadata makes the cloud check the
whole file when its last byte is in (a mismatch answers 460 and the cloud drops the upload:
the file is sent again from the start, and the op's last_error says so), and the op is done
only when the cloud's `GET /api/v1/media/{id}` shows the relay's SHA-256. Per-request
checksums remain available (`Uploader(chunk_checksums=True)`): the cloud then keeps a
request only whole, so a cut resends the whole request in flight.

The body is streamed from the local blob store: 1 MiB `preadv` reads into one reused buffer per
transfer, handed to httpx 64 KiB at a time (h11 copies each piece into the bytes it writes, so
neither httpx nor the socket keeps a reference to the buffer); memory does not grow with the
request or the file. Every byte passes one token bucket shared by the transfers
(relay/bandwidth.py). When the cloud shows the same SHA-256, the op is done and the blob is
unpinned (the cache may evict it from then on).

Failures. A refusal for good (409 media-id-conflict, 413, 415, 422, other 4xx) marks the op
failed, with the cloud's message, shown in the relay's status and never retried by itself.
Cuts, timeouts (read timeouts end a silent stall), 401, 404 of a not-yet-known patient, 408,
423, 429, 460 and 5xx are retried with exponential backoff capped at 60 s, for ever; a cut after
which the cloud's offset moved is resumed at once. A stalled request may hold the cloud's upload
(423 to the retry) until the cloud's `upload_idle_timeout_s` (60 s) ends it; only if 423 lasts
10 minutes (a cloud without that timeout) does the uploader start a new upload from byte 0.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import anyio
import httpx
from sqlalchemy import func, select, update

from chairside.blobs import BlobNotFound
from chairside.context import Context
from chairside.db.models import CachedBlob, Media, OutboxOp, utcnow
from chairside.relay.bandwidth import Throttle
from chairside.relay.upstream import Upstream

log = logging.getLogger("chairside.relay.uploader")

TUS = {"Tus-Resumable": "1.0.0"}
PIECE = 64 * 1024  # bytes handed to the socket at a time (and taken from the bucket)
READ = 1 << 20  # bytes read from the file at a time, into one reused buffer per transfer
BUSY_GIVE_UP_S = 600.0  # 423 for this long (a cloud without an idle timeout): start a new upload
POLL_S = 1.0  # how often the outbox is looked at when nothing wakes the uploader
SCAN = 1000  # pending ops looked at per pass
BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 60.0
RETRY_STATUS = frozenset({401, 404, 408, 423, 425, 429, 460})
MEDIA = "media.upload"


class Retry(Exception):
    """Try this op again later (with backoff)."""

    def __init__(self, why: str, *, transport: bool = False) -> None:
        super().__init__(why)
        self.transport = transport


class Refused(Exception):
    """The cloud refused this op for good: it is marked failed and kept for a person to look at."""


def backoff_s(attempts: int) -> float:
    """Wait before try number `attempts` + 1: 0.25 s, 0.5 s, 1 s … capped at 60 s."""
    if attempts <= 0:
        return 0.0
    return min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2.0 ** min(attempts - 1, 20))


def io_timeout(offline_after_s: float) -> float:
    """Seconds without progress on a request before it is abandoned (then resumed): half the time
    after which the relay shows as offline, within 10 to 60 s (longer than the cloud makes a PATCH
    wait for a busy upload before it answers 423)."""
    return max(10.0, min(60.0, offline_after_s / 2))


def problem_text(response: httpx.Response) -> str:
    """The cloud's message for a status: problem+json detail when there is one."""
    detail = ""
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or "")
            if body.get("code"):
                detail = f"{detail} ({body['code']})"
    return f"the cloud answered {response.status_code}: {detail or response.reason_phrase}"[:1000]


def _code(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("code") or "")
    return ""


class RateMeter:
    """Bytes per second over the last `window` seconds."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._sum = 0
        self._since: float | None = None

    def add(self, n: int) -> None:
        now = self._clock()
        if self._since is None:
            self._since = now
        self._events.append((now, n))
        self._sum += n
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window:
            self._sum -= self._events.popleft()[1]

    def rate(self) -> float:
        if self._since is None:
            return 0.0
        now = self._clock()
        self._trim(now)
        span = min(self.window, max(now - self._since, 0.5))
        return self._sum / span


@dataclass
class _Op:
    id: int
    op_id: uuid.UUID
    kind: str
    entity_id: uuid.UUID
    body: dict[str, Any]
    size: int
    sent_bytes: int
    upstream_url: str | None
    attempts: int


class Uploader:
    def __init__(self, ctx: Context, upstream: Upstream, *, chunk_checksums: bool = False) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.up = upstream
        self.parallel = max(1, s.relay_upload_parallel)
        self.chunk = max(PIECE, s.relay_upload_chunk_bytes)
        # Upload-Checksum on each request: the cloud then keeps a request's bytes only whole, so a cut resends
        # the whole request in flight (keep relay_upload_chunk_bytes small with it). Off by default.
        self.chunk_checksums = chunk_checksums
        self._busy_since: dict[int, float] = {}  # op id → when the cloud first answered 423 in a row
        self.throttle = Throttle(s.relay_bandwidth)
        self.timeout = io_timeout(s.relay_offline_after_s)
        self.meter = RateMeter()
        self.running: dict[int, asyncio.Task[None]] = {}
        self._kinds: dict[int, str] = {}
        self.wake = asyncio.Event()
        self._buffers: list[bytearray] = []
        # op id → wall time of its last transport failure: retried at once when the cloud answers again.
        self._transport_failed: dict[int, float] = {}
        self._client: httpx.AsyncClient | None = None
        self.sent_bytes = 0  # bytes handed to the cloud since start (resends included)

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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), POLL_S)
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
        with self.ctx.db.read() as s:
            return list(s.execute(
                select(OutboxOp.id, OutboxOp.kind, OutboxOp.entity_id, OutboxOp.next_try_at)
                .where(OutboxOp.done_at.is_(None), OutboxOp.failed_at.is_(None))
                .order_by(OutboxOp.id).limit(SCAN)
            ).all())

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
        op = await anyio.to_thread.run_sync(self._load, op_id)
        if op is None:
            return
        progressed = False
        try:
            if op.kind == MEDIA:
                progressed = await self._transfer(op)
            else:
                await self._send_op(op)
        except Refused as e:
            log.warning("outbox op %s (%s %s) refused by the cloud: %s", op.id, op.kind, op.entity_id, e)
            await anyio.to_thread.run_sync(self._mark_failed, op, str(e))
        except Retry as e:
            await self._retry_later(op, str(e), transport=e.transport, progressed=progressed)
        except (httpx.TransportError, httpx.TimeoutException) as e:
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self.up.failed(f"cannot reach the cloud ({why})")
            await self._retry_later(op, f"cannot reach the cloud ({why})", transport=True,
                                    progressed=getattr(e, "chairside_progressed", False))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or the disk: keep the op, try later, say why
            log.exception("outbox op %s failed unexpectedly", op.id)
            await self._retry_later(op, f"unexpected error at the relay: {type(e).__name__}: {e}", transport=False,
                                    progressed=False)
        else:
            self._transport_failed.pop(op.id, None)

    async def _retry_later(self, op: _Op, why: str, *, transport: bool, progressed: bool) -> None:
        attempts = 1 if progressed else op.attempts + 1
        # ±20 % jitter: ops that failed together (the line went down) do not come back in one burst.
        wait = backoff_s(attempts) * random.uniform(0.8, 1.2)
        if transport:
            self._transport_failed[op.id] = time.time()
        else:
            self._transport_failed.pop(op.id, None)
        log.info("outbox op %s (%s): %s; next try in %.1f s", op.id, op.kind, why, wait)
        await anyio.to_thread.run_sync(self._mark_retry, op, why, attempts, wait)

    # --- rows -----------------------------------------------------------------------------------------

    def _load(self, op_id: int) -> _Op | None:
        with self.ctx.db.read() as s:
            row = s.get(OutboxOp, op_id)
            if row is None or row.done_at is not None or row.failed_at is not None:
                return None
            return _Op(row.id, row.op_id, row.kind, row.entity_id, dict(row.body), row.size, row.sent_bytes,
                       row.upstream_url, row.attempts)

    def _mark_retry(self, op: _Op, why: str, attempts: int, wait: float) -> None:
        with self.ctx.db.session() as s:
            s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(
                attempts=attempts, last_error=why[:1000], next_try_at=utcnow() + timedelta(seconds=wait)))
        op.attempts = attempts

    def _mark_failed(self, op: _Op, why: str) -> None:
        with self.ctx.db.session() as s:
            s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(
                attempts=op.attempts + 1, last_error=why[:1000], failed_at=utcnow()))

    def _save_url(self, op: _Op, url: str | None) -> None:
        with self.ctx.db.session() as s:
            s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(upstream_url=url, sent_bytes=0))
        op.upstream_url = url

    def _save_offset(self, op: _Op, offset: int) -> None:
        with self.ctx.db.session() as s:
            s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(sent_bytes=offset))

    def _mark_done(self, op: _Op) -> None:
        with self.ctx.db.session() as s:
            s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(
                done_at=utcnow(), last_error=None, next_try_at=None,
                sent_bytes=op.size if op.kind == MEDIA else 0))
            if op.kind == MEDIA:
                self._unpin(s, op)

    def _unpin(self, s: Any, op: _Op) -> None:
        """The cloud holds the bytes: the cache may evict them, unless another pending op still needs them."""
        shas = [op.body["sha256"]]
        thumb = s.scalar(select(Media.thumb_sha256).where(Media.id == op.entity_id))
        if thumb:
            shas.append(thumb)
        for sha in shas:
            still_needed = s.scalar(
                select(func.count()).select_from(OutboxOp).join(Media, Media.id == OutboxOp.entity_id).where(
                    OutboxOp.kind == MEDIA, OutboxOp.done_at.is_(None), OutboxOp.failed_at.is_(None),
                    OutboxOp.id != op.id, (Media.sha256 == sha) | (Media.thumb_sha256 == sha))
            )
            if not still_needed:
                s.execute(update(CachedBlob).where(CachedBlob.sha256 == sha).values(pinned=False))

    # --- non-media ops ------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "Uploader.run() makes the client"
        return self._client

    async def _send_op(self, op: _Op) -> None:
        response = await self.client.post(
            "/api/v1/relay/ops", json={"op_id": str(op.op_id), "kind": op.kind, "body": op.body})
        self.up.contact()
        if response.status_code == 200:
            await anyio.to_thread.run_sync(self._mark_done, op)
            return
        why = problem_text(response)
        if response.status_code in RETRY_STATUS or response.status_code >= 500:
            if response.status_code == 404:
                why += " (an earlier change may not have reached the cloud yet)"
            raise Retry(why)
        raise Refused(why)

    # --- media transfers -------------------------------------------------------------------------------

    async def _transfer(self, op: _Op) -> bool:
        """Carry one media.upload; answers whether bytes went through (for the backoff)."""
        sha, size = op.body["sha256"], int(op.size or op.body["size"])
        buf = self._buffers.pop() if self._buffers else bytearray(READ)
        fd: int | None = None
        progressed = False
        try:
            if op.upstream_url is None:
                found = await self._cloud_item(op)
                if found is not None:
                    await self._finish(op, found)
                    return False
                await self._create(op, size)
                offset = 0
            else:
                known = await self._head(op)
                if known is None:  # the cloud dropped it: start again
                    await anyio.to_thread.run_sync(self._save_url, op, None)
                    await self._create(op, size)
                offset = known or 0
            path = self.ctx.blobs.local_path(sha)
            if path is not None:
                fd = os.open(path, os.O_RDONLY)
            elif self.ctx.blobs.stat(sha) is None:
                raise BlobNotFound(sha)
            mismatches = 0
            while offset < size:
                n = min(self.chunk, size - offset)
                headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                           "Content-Length": str(n)}
                if self.chunk_checksums:
                    digest = await anyio.to_thread.run_sync(self._digest, fd, sha, offset, n, buf)
                    headers["Upload-Checksum"] = "sha256 " + base64.b64encode(digest).decode()
                try:
                    body = cast(AsyncIterable[bytes], self._body(fd, sha, offset, n, buf))
                    response = await self.client.patch(self._path(op), content=body, headers=headers)
                except (httpx.TransportError, httpx.TimeoutException) as e:
                    # The cloud keeps the bytes that arrived before a cut (without a per-request checksum):
                    # ask where it stands; if bytes got through, resume at once, else back off.
                    self.up.failed(f"the connection to the cloud broke ({type(e).__name__}); resuming")
                    try:
                        again = await self._head(op)
                    except (httpx.TransportError, httpx.TimeoutException) as e2:
                        e2.chairside_progressed = progressed  # type: ignore[attr-defined]
                        raise e2 from None
                    if again is None:
                        await anyio.to_thread.run_sync(self._save_url, op, None)
                        raise Retry("the cloud dropped the unfinished upload; it starts again") from None
                    if again <= offset:  # nothing got through: the line is down, not cut
                        e.chairside_progressed = progressed  # type: ignore[attr-defined]
                        raise
                    progressed = True
                    offset = again
                    await anyio.to_thread.run_sync(self._save_offset, op, offset)
                    continue
                self.up.contact()
                if response.status_code == 204:
                    new = int(response.headers["Upload-Offset"])
                    progressed = progressed or new > offset
                    offset = new
                    await anyio.to_thread.run_sync(self._save_offset, op, offset)
                    mismatches = 0
                    self._busy_since.pop(op.id, None)
                    continue
                code = _code(response)
                if response.status_code in (404, 410):
                    await anyio.to_thread.run_sync(self._save_url, op, None)
                    raise Retry(problem_text(response) + "; the upload starts again")
                if response.status_code == 460 and not self.chunk_checksums:
                    # Only the whole-file check at the last byte answers 460 here: the cloud dropped the
                    # upload (its bytes differ from the relay's); start the file over, and say so.
                    log.warning("outbox op %s: the file that reached the cloud differs from the relay's (SHA-256); "
                                "sending it again from the start", op.id)
                    await anyio.to_thread.run_sync(self._save_url, op, None)
                    raise Retry(problem_text(response) + "; the file is sent again from the start")
                if response.status_code == 423:
                    busy = self._busy_since.setdefault(op.id, time.monotonic())
                    if time.monotonic() - busy > BUSY_GIVE_UP_S:
                        # Fallback for a cloud without upload_idle_timeout_s: a stalled request there holds
                        # the upload until TCP gives up. Start a new upload rather than wait for ever.
                        log.warning("outbox op %s: the cloud's upload stays busy; starting a new one", op.id)
                        self._busy_since.pop(op.id, None)
                        await anyio.to_thread.run_sync(self._save_url, op, None)
                        await self._create(op, size)
                        offset, mismatches = 0, 0
                        continue
                if (response.status_code == 409 and code == "offset-mismatch") or response.status_code in (
                        408, 423, 460):
                    mismatches += 1
                    if mismatches > 4:
                        raise Retry(problem_text(response))
                    await asyncio.sleep(0.2 * mismatches)
                    again = await self._head(op)
                    if again is None:
                        await anyio.to_thread.run_sync(self._save_url, op, None)
                        raise Retry("the cloud dropped the unfinished upload; it starts again")
                    progressed = progressed or again > offset
                    offset = again
                    continue
                self._judge(response)
            self._busy_since.pop(op.id, None)
            item = await self._cloud_item(op)
            if item is None:
                raise Retry("the cloud has every byte but does not show the item yet")
            await self._finish(op, item)
            return progressed
        except BlobNotFound:
            raise Refused("the file is missing from the relay's storage, so it cannot be sent; it is still on "
                          "the station if it was not deleted there — upload it again") from None
        except (Retry, Refused, httpx.TransportError, httpx.TimeoutException) as e:
            if progressed and isinstance(e, Retry):
                op.attempts = 0
            raise
        finally:
            if fd is not None:
                os.close(fd)
            self._buffers.append(buf)

    def _judge(self, response: httpx.Response) -> None:
        """Raise Retry or Refused for an answer that is not a success."""
        why = problem_text(response)
        if response.status_code in RETRY_STATUS or response.status_code >= 500:
            raise Retry(why)
        raise Refused(why)

    def _path(self, op: _Op) -> str:
        assert op.upstream_url is not None
        return httpx.URL(op.upstream_url).raw_path.decode()

    def _read(self, fd: int | None, sha: str, offset: int, view: memoryview) -> None:
        if fd is not None:
            got = 0
            while got < len(view):
                n = os.preadv(fd, [view[got:]], offset + got)
                if n == 0:
                    raise OSError(f"the stored file {sha[:12]}… ended at byte {offset + got}")
                got += n
            return
        pos = 0
        with self.ctx.blobs.open_range(sha, offset, len(view)) as chunks:
            for chunk in chunks:
                view[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
        if pos != len(view):
            raise OSError(f"the stored file {sha[:12]}… ended at byte {offset + pos}")

    def _digest(self, fd: int | None, sha: str, offset: int, n: int, buf: bytearray) -> bytes:
        """SHA-256 of bytes [offset, offset + n) of the file, read through `buf` (per-request checksums)."""
        h = hashlib.sha256()
        for start in range(offset, offset + n, len(buf)):
            view = memoryview(buf)[:min(len(buf), offset + n - start)]
            self._read(fd, sha, start, view)
            h.update(view)
        return h.digest()

    async def _body(self, fd: int | None, sha: str, offset: int, n: int, buf: bytearray) -> AsyncIterator[memoryview]:
        """A request body of bytes [offset, offset + n) of the file, streamed: READ bytes at a time into `buf`
        (one reused buffer per transfer), handed out PIECE at a time through the bandwidth bucket. h11 copies
        each piece into the bytes it writes before asking for the next, so reusing the buffer is safe, and
        httpx keeps no reference to it."""
        end = offset + n
        pos = offset
        while pos < end:
            view = memoryview(buf)[:min(len(buf), end - pos)]
            await anyio.to_thread.run_sync(self._read, fd, sha, pos, view)
            for start in range(0, len(view), PIECE):
                piece = view[start:start + PIECE]
                await self.throttle.take(len(piece))
                self.meter.add(len(piece))
                self.sent_bytes += len(piece)
                yield piece
            pos += len(view)

    async def _cloud_item(self, op: _Op) -> dict[str, Any] | None:
        response = await self.client.get(f"/api/v1/media/{op.entity_id}")
        self.up.contact()
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            self._judge(response)
        item: dict[str, Any] = response.json()
        return item

    async def _finish(self, op: _Op, item: dict[str, Any]) -> None:
        if item.get("sha256") != op.body["sha256"]:
            raise Refused(f"the cloud holds other bytes under the media id {op.entity_id} (SHA-256 "
                          f"{str(item.get('sha256'))[:12]}…, the relay's {op.body['sha256'][:12]}…)")
        await anyio.to_thread.run_sync(self._mark_done, op)

    async def _create(self, op: _Op, size: int) -> None:
        b = op.body
        meta = {"patient_id": b["patient_id"], "media_id": str(op.entity_id), "filename": b.get("filename") or "",
                "captured_at": b.get("captured_at") or "", "sha256": b["sha256"],
                "station_id": b.get("station_id") or ""}
        encoded = ",".join(f"{k} {base64.b64encode(str(v).encode()).decode()}" for k, v in meta.items() if v)
        response = await self.client.post("/api/v1/uploads/", headers={
            **TUS, "Upload-Length": str(size), "Upload-Metadata": encoded})
        self.up.contact()
        if response.status_code != 201:
            self._judge(response)
        url = str(self.client.base_url.join(response.headers["Location"]))
        await anyio.to_thread.run_sync(self._save_url, op, url)  # committed before any byte goes

    async def _head(self, op: _Op) -> int | None:
        """The cloud's offset for the op's upload; None when the cloud no longer has it."""
        response = await self.client.head(self._path(op), headers=TUS)
        self.up.contact()
        if response.status_code in (404, 410):
            return None
        if response.status_code != 200:
            self._judge(response)
        return int(response.headers["Upload-Offset"])


def status_figures(ctx: Context) -> dict[str, Any]:
    """The outbox's figures for the relay's status (a read; safe from any thread)."""
    now = utcnow()
    with ctx.db.read() as s:
        pending = (OutboxOp.done_at.is_(None)) & (OutboxOp.failed_at.is_(None))
        items, oldest = s.execute(select(func.count(), func.min(OutboxOp.created_at)).where(pending)).one()
        total, sent = s.execute(
            select(func.coalesce(func.sum(OutboxOp.size), 0), func.coalesce(func.sum(OutboxOp.sent_bytes), 0))
            .where(pending, OutboxOp.kind == MEDIA)
        ).one()
        failed = s.scalar(select(func.count()).select_from(OutboxOp).where(OutboxOp.failed_at.is_not(None)))
        failures = [
            {"id": str(r.entity_id), "kind": r.kind, "failed_at": r.failed_at.isoformat(), "error": r.last_error}
            for r in s.execute(
                select(OutboxOp.entity_id, OutboxOp.kind, OutboxOp.failed_at, OutboxOp.last_error)
                .where(OutboxOp.failed_at.is_not(None)).order_by(OutboxOp.id.desc()).limit(10)
            )
        ]
        retrying = s.scalar(select(OutboxOp.last_error).where(pending, OutboxOp.last_error.is_not(None))
                            .order_by(OutboxOp.id).limit(1))
    return {
        "pending_items": int(items or 0),
        "pending_bytes": max(0, int(total or 0) - int(sent or 0)),
        "oldest_pending_age_s": round((now - oldest).total_seconds(), 1) if oldest is not None else None,
        "failed_items": int(failed or 0),
        "failures": failures,
        "retrying_because": retrying,
    }
