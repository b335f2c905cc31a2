"""Fetch ahead of use what the feed announces (setting relay_prefetch: none, thumbnails or all).

The follower hands each page's new media items to `Prefetcher.offer`, which never blocks: a
small pool of workers fetches thumbnails (and, with "all", the media themselves) in the
background. When the queue is full, or the cloud is unreachable, an item is simply left for
the first use to fetch (sync.cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

import anyio

from chairside.context import Context
from chairside.relay import cache

log = logging.getLogger(__name__)

MODES = ("none", "thumbnails", "all")
QUEUE_MAX = 10_000


@dataclass(frozen=True)
class Wanted:
    media_id: uuid.UUID
    sha256: str
    size: int
    thumb_sha256: str | None


class Prefetcher:
    def __init__(self, ctx: Context, mode: str | None = None, workers: int = 2) -> None:
        self.ctx = ctx
        self.mode = mode or ctx.settings.relay_prefetch
        if self.mode not in MODES:
            log.warning("relay_prefetch %r is not one of %s; fetching thumbnails only", self.mode, MODES)
            self.mode = "thumbnails"
        self.queue: asyncio.Queue[Wanted] = asyncio.Queue(QUEUE_MAX)
        self.queued: set[uuid.UUID] = set()
        self.done = 0
        self.dropped = 0
        self.tasks = [asyncio.create_task(self._work()) for _ in range(workers if self.mode != "none" else 0)]

    def offer(self, items: list[Wanted]) -> None:
        if self.mode == "none":
            return
        for item in items:
            if item.media_id in self.queued:
                continue
            try:
                self.queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped += 1  # it will be fetched on first use
                continue
            self.queued.add(item.media_id)

    async def _work(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await self._fetch(item)
                self.done += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("prefetching media %s failed; it will be fetched on first use", item.media_id)
            finally:
                self.queued.discard(item.media_id)
                self.queue.task_done()

    async def _fetch(self, item: Wanted) -> None:
        ctx = self.ctx
        if item.thumb_sha256 and await anyio.to_thread.run_sync(ctx.blobs.stat, item.thumb_sha256) is None:
            await cache.fetch_thumbnail(ctx, item.media_id, item.thumb_sha256)
        if self.mode == "all" and await anyio.to_thread.run_sync(ctx.blobs.stat, item.sha256) is None:
            await cache.start_download(ctx, item.media_id, item.sha256, item.size)

    async def idle(self) -> None:
        """Wait until everything offered so far was tried (for tests and benchmarks)."""
        await self.queue.join()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
