"""The relay's blob cache: media from other branches, fetched from the cloud on first use and kept (LRU).

Every blob the relay holds for the cloud's sake has a `CachedBlob` row (sha256, size, pinned,
last_used_at). A *pinned* blob was recorded at this relay and is not yet confirmed by the
cloud: it is never evicted. The rest go least recently used first whenever the cache holds
more than `relay_cache_bytes`, or the disk has less than `relay_min_free_bytes` free.

First use of an item that is not here (`serve`): one background download per blob of the
whole file from the cloud into a temp file, hashed as it arrives and stored only when the
hash matches (a damaged download is never cached); meanwhile the station's request itself,
Range and all, is proxied to the cloud and streamed back, so the video plays while it is
being cached. Thumbnails are small: they are fetched, verified and stored before answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from chairside.blobs import BlobHashMismatch, FilesystemBlobStore
from chairside.context import Context
from chairside.db.engine import rowcount
from chairside.db.models import CachedBlob, Media, utcnow
from chairside.errors import Problem
from chairside.media.ranges import BlobResponse
from chairside.relay.runtime import runtime_of
from chairside.relay.upstream import Upstream

log = logging.getLogger(__name__)

TOUCH_EVERY_S = 60.0  # last_used_at is written at most this often per blob
JANITOR_INTERVAL_S = 60.0
EVICT_BATCH = 100
THUMBNAIL_MAX_BYTES = 16 << 20
DOWNLOAD_ATTEMPTS = 4  # tries of a download, resuming at its offset after each cut; a refused connection ends it
_PROXY_HEADERS = ("content-type", "content-length", "content-range", "etag", "accept-ranges", "cache-control",
                  "content-disposition", "last-modified")
_evict_lock = threading.Lock()


# --- problems ----------------------------------------------------------------------------

def offline_problem(what: str = "video") -> Problem:
    """`what`: video, photo or preview."""
    verb = "played" if what == "video" else "shown"
    return Problem(503, f"This {what} is stored at another branch and the internet connection is down. "
                   f"It can be {verb} once the connection is back.",
                   title="Service unavailable", code="upstream-offline", headers={"Retry-After": "30"})


def _cloud_trouble() -> Problem:
    return Problem(503, "The cloud could not send this item just now. Try again in a few minutes; if it keeps "
                   "happening, contact Chairside support.", title="Service unavailable", code="upstream-error",
                   headers={"Retry-After": "30"})


def _relay_refused() -> Problem:
    return Problem(503, "The cloud no longer accepts this clinic's relay, so items from other branches cannot be "
                   "fetched. Contact Chairside support to register the relay again.", title="Service unavailable",
                   code="relay-not-accepted")


def _gone_at_cloud() -> Problem:
    return Problem(404, "This photo or video is no longer stored in the cloud. It may have been deleted at another "
                   "branch.", code="media-not-found")


# --- bookkeeping ----------------------------------------------------------------------------

def _upstream(ctx: Context) -> Upstream | None:
    return ctx.relay.upstream if ctx.relay is not None else None


def _client(ctx: Context, up: Upstream) -> httpx.AsyncClient:
    """One client per event loop (an httpx client's connections belong to the loop that made them)."""
    clients = runtime_of(ctx).cache_clients
    key = id(asyncio.get_running_loop())
    client = clients.get(key)
    if client is None or client.is_closed:
        client = clients[key] = up.async_client(timeout=30.0)
    return client


async def close_clients(ctx: Context) -> None:
    """Close this event loop's client to the cloud (at the end of a task runner's loop)."""
    if ctx.relay is None:
        return
    client = ctx.relay.cache_clients.pop(id(asyncio.get_running_loop()), None)
    if client is not None:
        await client.aclose()


def _store_root(ctx: Context) -> Path:
    if isinstance(ctx.blobs, FilesystemBlobStore):
        return ctx.blobs.root
    return ctx.settings.data_dir


def _temp_dir(ctx: Context) -> Path:
    if isinstance(ctx.blobs, FilesystemBlobStore):
        return ctx.blobs.temp_dir  # same filesystem: the verified file is renamed into place
    path = ctx.settings.data_dir / "cache-tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def disk_free(ctx: Context) -> int:
    return shutil.disk_usage(_store_root(ctx)).free


def stats(ctx: Context) -> dict[str, Any]:
    """For the relay's status: bytes cached, the limit, pinned bytes, blob count, free disk."""
    with ctx.db.read() as s:
        total, pinned, items = s.execute(select(
            func.coalesce(func.sum(CachedBlob.size), 0),
            func.coalesce(func.sum(CachedBlob.size).filter(CachedBlob.pinned.is_(True)), 0),
            func.count(),
        )).one()
    return {"bytes": int(total), "limit": ctx.settings.relay_cache_bytes, "pinned_bytes": int(pinned),
            "items": int(items), "disk_free": disk_free(ctx), "min_free": ctx.settings.relay_min_free_bytes}


def touch(ctx: Context, sha256: str) -> None:
    """Mark a blob as used now, at most once a minute per blob (a read must not cost a write each time)."""
    if ctx.relay is None:  # not serving: nothing to spare
        touched: dict[str, float] = {}
    else:
        touched = ctx.relay.cache_touched
    now = time.monotonic()
    last = touched.get(sha256)
    if last is not None and now - last < TOUCH_EVERY_S:
        return
    if len(touched) > 10_000:
        touched.clear()
    touched[sha256] = now
    with ctx.db.session() as s:
        s.execute(update(CachedBlob).where(CachedBlob.sha256 == sha256).values(last_used_at=utcnow()))


def record(ctx: Context, sha256: str, size: int, *, pinned: bool = False) -> None:
    """A blob is now held here: add its row (an existing row keeps its pin) and mark it used."""
    try:
        with ctx.db.session() as s:
            row = s.get(CachedBlob, sha256)
            if row is None:
                s.add(CachedBlob(sha256=sha256, size=size, pinned=pinned, last_used_at=utcnow()))
            else:
                row.last_used_at = utcnow()
                row.pinned = row.pinned or pinned
    except IntegrityError:  # added meanwhile by another writer: it is recorded either way
        pass


def ensure_free(ctx: Context) -> int:
    """Evict unpinned blobs, least recently used first, until the cache is within its limit and the
    disk has its minimum free space; answers the bytes evicted. Pinned blobs are never evicted."""
    limit, min_free = ctx.settings.relay_cache_bytes, ctx.settings.relay_min_free_bytes
    evicted = 0
    with _evict_lock:
        while True:
            with ctx.db.read() as s:
                total = int(s.scalar(select(func.coalesce(func.sum(CachedBlob.size), 0))) or 0)
                need = max(total - limit, min_free - disk_free(ctx))
                if need <= 0:
                    return evicted
                victims = s.execute(
                    select(CachedBlob.sha256, CachedBlob.size).where(CachedBlob.pinned.is_(False))
                    .order_by(CachedBlob.last_used_at, CachedBlob.sha256).limit(EVICT_BATCH)
                ).all()
            if not victims:
                log.warning("blob cache: %d bytes over its limit or short of free disk, but everything left is "
                            "pinned (not yet confirmed by the cloud)", need)
                return evicted
            for sha, size in victims:
                with ctx.db.session() as s:
                    gone = s.execute(delete(CachedBlob).where(CachedBlob.sha256 == sha, CachedBlob.pinned.is_(False))
                                     .execution_options(synchronize_session=False))
                if rowcount(gone) == 1:
                    ctx.blobs.delete(sha)
                    evicted += int(size)
                    need -= int(size)
                if need <= 0:
                    break


async def janitor(ctx: Context, interval_s: float = JANITOR_INTERVAL_S) -> None:
    """Keep the cache within its limits, forever; never crashes."""
    while True:
        try:
            freed = await anyio.to_thread.run_sync(ensure_free, ctx)
            if freed:
                log.info("blob cache: evicted %d bytes", freed)
        except Exception:
            log.exception("blob cache janitor failed; trying again later")
        await asyncio.sleep(interval_s)


# --- downloads ------------------------------------------------------------------------------

def _downloads(ctx: Context) -> dict[tuple[int, str], asyncio.Task[bool]]:
    return runtime_of(ctx).cache_downloads


def start_download(ctx: Context, media_id: uuid.UUID, sha256: str, size: int) -> asyncio.Task[bool]:
    """Start caching a blob from the cloud in the background, or join the download already running."""
    tasks = _downloads(ctx)
    key = (id(asyncio.get_running_loop()), sha256)
    task = tasks.get(key)
    if task is None or task.done():
        task = asyncio.create_task(_download(ctx, media_id, sha256, size), name=f"cache {sha256[:12]}")
        tasks[key] = task
        task.add_done_callback(lambda t: tasks.pop(key, None) if tasks.get(key) is t else None)
    return task


async def _download(ctx: Context, media_id: uuid.UUID, sha256: str, size: int) -> bool:
    """The whole blob from the cloud, hashed as it arrives; stored only when it is what it should be."""
    try:
        return await _download_once(ctx, media_id, sha256, size)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("caching %s failed", sha256)
        return False


class _Sink:
    """A temp file and a running SHA-256 over what was written to it (used from worker threads)."""

    def __init__(self, directory: Path, sha256: str) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=f"{sha256[:16]}.", suffix=".cache.tmp")
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.file.write(chunk)
        self.size += len(chunk)

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hasher = hashlib.sha256()
        self.size = 0

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def _download_once(ctx: Context, media_id: uuid.UUID, sha256: str, size: int) -> bool:
    up = _upstream(ctx)
    if up is None:
        return False
    client = _client(ctx, up)
    sink = await anyio.to_thread.run_sync(_Sink, _temp_dir(ctx), sha256)
    try:
        failures = 0
        while True:
            headers = {"Range": f"bytes={sink.size}-", "If-Range": f'"{sha256}"'} if sink.size else {}
            try:
                async with client.stream("GET", f"/api/v1/media/{media_id}/content", headers=headers) as r:
                    up.contact()
                    if r.status_code == 200 and sink.size:
                        await anyio.to_thread.run_sync(sink.restart)  # the cloud sent it all again
                    elif r.status_code not in (200, 206):
                        log.warning("caching %s: the cloud answered %d", sha256, r.status_code)
                        return False
                    async for chunk in r.aiter_raw(1 << 20):
                        await anyio.to_thread.run_sync(sink.write, chunk)
                break
            except httpx.TransportError as e:
                up.failed(f"blob download: {e!r}")
                failures += 1
                if isinstance(e, httpx.ConnectError) or failures >= DOWNLOAD_ATTEMPTS:
                    log.warning("caching %s: gave up after %d cuts at byte %d", sha256, failures, sink.size)
                    return False
                await asyncio.sleep(min(2 ** failures, 30))
        await anyio.to_thread.run_sync(sink.finish)
        actual = sink.hasher.hexdigest()
        if actual != sha256 or sink.size != size:
            log.warning("caching %s: the download was damaged (%d bytes, sha256 %s); not cached",
                        sha256, sink.size, actual)
            return False
        await anyio.to_thread.run_sync(_adopt, ctx, sha256, sink.path, size)
        return True
    finally:
        await anyio.to_thread.run_sync(sink.discard)


def _adopt(ctx: Context, sha256: str, path: Path, size: int) -> None:
    ctx.blobs.put_file(sha256, path, verified=True)
    record(ctx, sha256, size)
    ensure_free(ctx)


async def fetch_thumbnail(ctx: Context, media_id: uuid.UUID, sha256: str) -> str:
    """Fetch, verify and store a thumbnail; answers "ok", "offline", "missing", "refused" or "damaged"."""
    up = _upstream(ctx)
    if up is None:
        return "offline"
    client = _client(ctx, up)
    try:
        async with client.stream("GET", f"/api/v1/media/{media_id}/thumbnail") as r:
            up.contact()
            if r.status_code in (401, 403):
                return "refused"
            if r.status_code != 200:
                return "missing"
            data = bytearray()
            async for chunk in r.aiter_raw():
                data += chunk
                if len(data) > THUMBNAIL_MAX_BYTES:
                    return "damaged"
    except httpx.TransportError as e:
        up.failed(f"thumbnail: {e!r}")
        return "offline"
    try:
        info = await anyio.to_thread.run_sync(ctx.blobs.put_stream, sha256, [bytes(data)])
    except BlobHashMismatch:
        log.warning("thumbnail of %s arrived damaged; not stored", media_id)
        return "damaged"
    await anyio.to_thread.run_sync(record, ctx, sha256, info.size)
    return "ok"


# --- serving --------------------------------------------------------------------------------

async def serve(ctx: Context, item: Media, request: Request, range_header: str | None, if_range: str | None,
                if_none_match: str | None, head: bool) -> Response:
    """GET/HEAD of a media item's bytes at the relay: from the cache, or streamed from the cloud while it
    is being cached."""
    info = await anyio.to_thread.run_sync(ctx.blobs.stat, item.sha256)
    if info is not None:
        await anyio.to_thread.run_sync(touch, ctx, item.sha256)
        return BlobResponse(
            ctx.blobs, item.sha256, item.size, item.mime,
            range_header=range_header, if_range=if_range, if_none_match=if_none_match,
            filename=item.filename, head=head, chunk_size=ctx.settings.serve_chunk_bytes,
        )
    up = _upstream(ctx)
    what = "video" if item.kind == "video" else "photo"
    if up is None:
        raise offline_problem(what)
    headers = {name: value for name, value in (("range", range_header), ("if-range", if_range),
                                               ("if-none-match", if_none_match)) if value}
    client = _client(ctx, up)
    upstream_request = client.build_request("HEAD" if head else "GET", f"/api/v1/media/{item.id}/content",
                                            headers=headers)
    try:
        r = await client.send(upstream_request, stream=True)
    except httpx.TransportError as e:
        up.failed(f"media proxy: {e!r}")
        raise offline_problem(what) from None
    up.contact()
    if not head and r.status_code in (200, 206, 416):  # the cloud has it: cache it (one download per blob)
        start_download(ctx, item.id, item.sha256, item.size)
    if r.status_code not in (200, 206, 304, 416):
        await r.aclose()
        if r.status_code in (401, 403):
            raise _relay_refused()
        if r.status_code in (404, 410):
            raise _gone_at_cloud()
        raise _cloud_trouble()
    out_headers = {name: r.headers[name] for name in _PROXY_HEADERS if name in r.headers}
    if head or r.status_code == 304:
        await r.aclose()
        return Response(status_code=r.status_code, headers=out_headers)
    return StreamingResponse(_relay_body(r, up), status_code=r.status_code, headers=out_headers,
                             background=BackgroundTask(r.aclose))


async def _relay_body(r: httpx.Response, up: Upstream) -> AsyncIterator[bytes]:
    try:
        async for chunk in r.aiter_raw():
            yield chunk
    except httpx.TransportError as e:
        up.failed(f"media proxy: {e!r}")
        raise
    finally:
        await r.aclose()


async def serve_thumbnail(ctx: Context, item: Media, if_none_match: str | None) -> Response:
    """A thumbnail at the relay: from here, or fetched from the cloud now (it is small), stored and served."""
    sha = item.thumb_sha256
    assert sha is not None
    info = await anyio.to_thread.run_sync(ctx.blobs.stat, sha)
    if info is None:
        outcome = await fetch_thumbnail(ctx, item.id, sha)
        if outcome == "offline":
            raise offline_problem("preview")
        if outcome == "refused":
            raise _relay_refused()
        if outcome == "missing":
            raise Problem(404, "This item has no preview yet.", code="no-thumbnail")
        if outcome == "damaged":
            raise _cloud_trouble()
        info = await anyio.to_thread.run_sync(ctx.blobs.stat, sha)
        if info is None:
            raise _cloud_trouble()
    else:
        await anyio.to_thread.run_sync(touch, ctx, sha)
    return BlobResponse(ctx.blobs, sha, info.size, "image/jpeg", if_none_match=if_none_match)
