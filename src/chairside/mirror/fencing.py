"""Fencing by epoch: a cloud that knows of a newer epoch than its own refuses every write.

A cloud learns of a newer epoch from the mirror that took it, over the mirror's authenticated
channel (`POST /api/v1/mirror/fence`): at promotion with `--force` while the old primary is up, and
then from the new primary every few seconds until the old one has answered (so an old primary
that comes back after a fire is fenced within seconds of its restart). A client's word is not
enough: anyone could send a large epoch. Clients protect themselves instead: every answer of a
cloud carries its epoch in `Chairside-Epoch`, and relays and the SDK never write to a site whose
epoch is lower than the highest they have seen. The refusal is 503 problem+json naming the
current primary, Japanese first.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
import weakref
from typing import Any

from chairside.context import Context
from chairside.errors import Problem
from chairside.mirror import service

EPOCH_HEADER = "Chairside-Epoch"
CACHE_S = 1.0  # the epoch row is read at most once a second per process


class EpochCache:
    """This process's view of the site's epoch, re-read from the database at most once a second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._value: service.Epoch | None = None

    def peek(self) -> service.Epoch | None:
        """The cached value while it is fresh, without I/O; None when it must be read."""
        with self._lock:
            if self._value is not None and time.monotonic() - self._at < CACHE_S:
                return self._value
        return None

    def get(self, ctx: Context) -> service.Epoch:
        now = time.monotonic()
        with self._lock:
            if self._value is not None and now - self._at < CACHE_S:
                return self._value
        value = service.read_epoch(ctx)
        with self._lock:
            self._value, self._at = value, now
        return value

    def forget(self) -> None:
        with self._lock:
            self._value = None


_CACHES: weakref.WeakKeyDictionary[Context, EpochCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_for(ctx: Context) -> EpochCache:
    """The process's epoch cache of a context (the fence endpoint empties it, so the refusal starts at once)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(ctx)
        if cache is None:
            cache = _CACHES[ctx] = EpochCache()
        return cache


def fenced_problem(epoch: int, primary: str | None) -> Problem:
    where = primary or "切り替え先のサイト / the site that took over"
    return Problem(
        503, f"このサイトは本サイトではなくなりました（新しい本サイト: {where}）。"
        "保存や変更は新しい本サイトで行ってください。"
        f" / This site is no longer the primary (the primary is now {where}, epoch {epoch}): save and change there.",
        title="Service unavailable", code="fenced", headers={"Retry-After": "60"}, epoch=epoch, primary=primary)


def refusal(ctx: Context, cache: EpochCache) -> Problem | None:
    """The 503 a write gets at this cloud, or None when it is the primary of the newest epoch known."""
    epoch = cache.get(ctx)
    if epoch.fenced:
        assert epoch.fenced_epoch is not None
        return fenced_problem(epoch.fenced_epoch, epoch.fenced_primary)
    return None



_MEDIA_READ = re.compile(r"/api/v1/media/([0-9a-fA-F-]{36})")


def media_read(scope: Any) -> uuid.UUID | None:
    """The media id of a `GET /api/v1/media/{id}` (the relay's check that the cloud holds a recording)."""
    if scope.get("method") != "GET":
        return None
    match = _MEDIA_READ.fullmatch(scope.get("path", ""))
    if match is None:
        return None
    try:
        return uuid.UUID(match.group(1))
    except ValueError:
        return None


def media_mirrored(ctx: Context, media_id: uuid.UUID) -> bool | None:
    """`Chairside-Mirrored`: the item's blobs are verified at every mirror (None: no mirror is registered)."""
    return service.media_mirrored(ctx, media_id)
