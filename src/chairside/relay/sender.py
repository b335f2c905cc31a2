"""The relay's tus sender: carries one media.upload op's file to the cloud, resumably.

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

Failures (which answers are retried, which refused for good: relay/retry.py). A cut after which
the cloud's offset moved is resumed at once; one after which it did not raises `Cut`, which says
whether bytes went through earlier in the transfer (the backoff then starts over). A stalled
request may hold the cloud's upload (423 to the retry) until the cloud's `upload_idle_timeout_s`
(60 s) ends it; only if 423 lasts 10 minutes (a cloud without that timeout) does the uploader
start a new upload from byte 0.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, cast

import anyio
import httpx

from chairside.blobs import BlobNotFound
from chairside.context import Context
from chairside.relay import queue
from chairside.relay.bandwidth import Throttle
from chairside.relay.meter import RateMeter
from chairside.relay.queue import Op
from chairside.relay.retry import Refused, Retry, judge, problem_code, problem_text
from chairside.relay.upstream import Upstream

log = logging.getLogger("chairside.relay.uploader")

TUS = {"Tus-Resumable": "1.0.0"}
PIECE = 64 * 1024  # bytes handed to the socket at a time (and taken from the bucket)
READ = 1 << 20  # bytes read from the file at a time, into one reused buffer per transfer
BUSY_GIVE_UP_S = 600.0  # 423 for this long (a cloud without an idle timeout): start a new upload


class Cut(Exception):
    """The connection to the cloud broke in a transfer, and the cloud's offset did not move (or could not be
    asked): the op is tried again later. `error` is the transport's exception; `progressed` says whether bytes
    went through earlier in this transfer (the backoff then starts over)."""

    def __init__(self, error: httpx.TransportError, *, progressed: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.progressed = progressed


class Sender:
    """Sends media.upload ops with tus, one file per `send`, through the shared bucket and meter."""

    def __init__(self, ctx: Context, upstream: Upstream, throttle: Throttle, meter: RateMeter, *, chunk: int,
                 chunk_checksums: bool = False) -> None:
        self.ctx = ctx
        self.up = upstream
        self.throttle = throttle
        self.meter = meter
        self.chunk = max(PIECE, chunk)
        # Upload-Checksum on each request: the cloud then keeps a request's bytes only whole, so a cut resends
        # the whole request in flight (keep relay_upload_chunk_bytes small with it). Off by default.
        self.chunk_checksums = chunk_checksums
        self._busy_since: dict[int, float] = {}  # op id → when the cloud first answered 423 in a row
        self._buffers: list[bytearray] = []
        self.sent_bytes = 0  # bytes handed to the cloud since start (resends included)

    async def send(self, client: httpx.AsyncClient, op: Op) -> None:
        """Carry one media.upload until the cloud shows it, and mark it done. Raises Retry or Refused (see
        relay/retry.py), Cut, or the transport's exception when the cloud cannot be reached."""
        sha, size = op.body["sha256"], int(op.size or op.body["size"])
        buf = self._buffers.pop() if self._buffers else bytearray(READ)
        fd: int | None = None
        progressed = False  # bytes went through in this transfer
        try:
            if op.upstream_url is None:
                found = await self._cloud_item(client, op)
                if found is not None:
                    await self._finish(op, found)
                    return
                await self._create(client, op, size)
                offset = 0
            else:
                known = await self._head(client, op)
                if known is None:  # the cloud dropped it: start again
                    await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, None)
                    await self._create(client, op, size)
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
                    response = await client.patch(self._path(op), content=body, headers=headers)
                except (httpx.TransportError, httpx.TimeoutException) as e:
                    # The cloud keeps the bytes that arrived before a cut (without a per-request checksum):
                    # ask where it stands; if bytes got through, resume at once, else back off.
                    self.up.failed(f"the connection to the cloud broke ({type(e).__name__}); resuming")
                    try:
                        again = await self._head(client, op)
                    except (httpx.TransportError, httpx.TimeoutException) as e2:
                        raise Cut(e2, progressed=progressed) from None
                    if again is None:
                        await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, None)
                        raise Retry("the cloud dropped the unfinished upload; it starts again") from None
                    if again <= offset:  # nothing got through: the line is down, not cut
                        raise Cut(e, progressed=progressed) from e
                    progressed = True
                    offset = again
                    await anyio.to_thread.run_sync(queue.save_offset, self.ctx, op, offset)
                    continue
                self.up.contact()
                if response.status_code == 204:
                    new = int(response.headers["Upload-Offset"])
                    progressed = progressed or new > offset
                    offset = new
                    await anyio.to_thread.run_sync(queue.save_offset, self.ctx, op, offset)
                    mismatches = 0
                    self._busy_since.pop(op.id, None)
                    continue
                code = problem_code(response)
                if response.status_code in (404, 410):
                    await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, None)
                    raise Retry(problem_text(response) + "; the upload starts again")
                if response.status_code == 460 and not self.chunk_checksums:
                    # Only the whole-file check at the last byte answers 460 here: the cloud dropped the
                    # upload (its bytes differ from the relay's); start the file over, and say so.
                    log.warning("outbox op %s: the file that reached the cloud differs from the relay's (SHA-256); "
                                "sending it again from the start", op.id)
                    await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, None)
                    raise Retry(problem_text(response) + "; the file is sent again from the start")
                if response.status_code == 423:
                    busy = self._busy_since.setdefault(op.id, time.monotonic())
                    if time.monotonic() - busy > BUSY_GIVE_UP_S:
                        # Fallback for a cloud without upload_idle_timeout_s: a stalled request there holds
                        # the upload until TCP gives up. Start a new upload rather than wait for ever.
                        log.warning("outbox op %s: the cloud's upload stays busy; starting a new one", op.id)
                        self._busy_since.pop(op.id, None)
                        await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, None)
                        await self._create(client, op, size)
                        offset, mismatches = 0, 0
                        continue
                if (response.status_code == 409 and code == "offset-mismatch") or response.status_code in (
                        408, 423, 460):
                    mismatches += 1
                    if mismatches > 4:
                        raise Retry(problem_text(response))
                    await asyncio.sleep(0.2 * mismatches)
                    again = await self._head(client, op)
                    if again is None:
                        await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, None)
                        raise Retry("the cloud dropped the unfinished upload; it starts again")
                    progressed = progressed or again > offset
                    offset = again
                    continue
                judge(response)
            self._busy_since.pop(op.id, None)
            item = await self._cloud_item(client, op)
            if item is None:
                raise Retry("the cloud has every byte but does not show the item yet")
            await self._finish(op, item)
        except BlobNotFound:
            raise Refused("the file is missing from the relay's storage, so it cannot be sent; it is still on "
                          "the station if it was not deleted there — upload it again") from None
        except Retry:
            if progressed:  # bytes went through: the next try's backoff starts over
                op.attempts = 0
            raise
        finally:
            if fd is not None:
                os.close(fd)
            self._buffers.append(buf)

    @staticmethod
    def _path(op: Op) -> str:
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

    async def _cloud_item(self, client: httpx.AsyncClient, op: Op) -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/media/{op.entity_id}")
        self.up.contact()
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            judge(response)
        item: dict[str, Any] = response.json()
        # With a mirror site, the cloud says whether the item is verified there too (docs/disaster-recovery.md).
        item["_mirrored"] = response.headers.get("chairside-mirrored")
        return item

    async def _finish(self, op: Op, item: dict[str, Any]) -> None:
        if item.get("sha256") != op.body["sha256"]:
            raise Refused(f"the cloud holds other bytes under the media id {op.entity_id} (SHA-256 "
                          f"{str(item.get('sha256'))[:12]}…, the relay's {op.body['sha256'][:12]}…)")
        if item.get("_mirrored") == "no":  # stored at the primary only: kept pinned and pending until both sites
            await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, None)  # next try: only this check again
            raise Retry("stored at the cloud; waiting until its mirror site has verified it too")
        await anyio.to_thread.run_sync(queue.mark_done, self.ctx, op)

    async def _create(self, client: httpx.AsyncClient, op: Op, size: int) -> None:
        b = op.body
        meta = {"patient_id": b["patient_id"], "media_id": str(op.entity_id), "filename": b.get("filename") or "",
                "captured_at": b.get("captured_at") or "", "sha256": b["sha256"],
                "station_id": b.get("station_id") or ""}
        encoded = ",".join(f"{k} {base64.b64encode(str(v).encode()).decode()}" for k, v in meta.items() if v)
        response = await client.post("/api/v1/uploads/", headers={
            **TUS, "Upload-Length": str(size), "Upload-Metadata": encoded})
        self.up.contact()
        if response.status_code != 201:
            judge(response)
        url = str(client.base_url.join(response.headers["Location"]))
        await anyio.to_thread.run_sync(queue.save_url, self.ctx, op, url)  # committed before any byte goes

    async def _head(self, client: httpx.AsyncClient, op: Op) -> int | None:
        """The cloud's offset for the op's upload; None when the cloud no longer has it."""
        response = await client.head(self._path(op), headers=TUS)
        self.up.contact()
        if response.status_code in (404, 410):
            return None
        if response.status_code != 200:
            judge(response)
        return int(response.headers["Upload-Offset"])
