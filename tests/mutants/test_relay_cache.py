"""The relay's blob cache (relay/cache.py), pinned value by value over a real relay context (its own SQLite
file and blob folder in tmp_path): record and touch, eviction least recently used first down to the target and
never of a pinned blob, the janitor, the stats, the download into a temp file (a cut resumed with Range and
If-Range, a restart when the cloud sends it all again, a damaged one never adopted, no temp file left), the
thumbnail fetch, and what a station is answered (the proxied bytes and headers, the offline, refused, gone and
trouble problems with their exact text).

Written for a mutmut run over relay/cache.py (docs/testing.md, "Mutation testing"): the owning tests
(tests/relay/test_cache.py, the hostile relay tests) start real clouds and relays and check the happy paths
and a few statuses, never the exact figures, headers, messages or the resume. The cloud is the relay's WAN
boundary: here it is `FakeCloud` behind an `httpx.MockTransport`, answering as the cloud does (its media
routes' statuses, ETag, Range, If-Range, If-None-Match, 416) and cutting the line where a test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import threading
import time
import types
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from chairside.api.problems import install
from chairside.context import Context
from chairside.db.models import CachedBlob, Media
from chairside.keys import MasterKey
from chairside.relay import cache
from chairside.relay.runtime import runtime_of
from tests.relay.follow_fixtures import relay_context

T = TypeVar("T")
CLOUD = "http://cloud.test"
TOKEN = "cs_rl_test"
OFFLINE_VIDEO = ("This video is stored at another branch and the internet connection is down. It can be played "
                 "once the connection is back.")
OFFLINE_PHOTO = ("This photo is stored at another branch and the internet connection is down. It can be shown "
                 "once the connection is back.")
OFFLINE_PREVIEW = ("This preview is stored at another branch and the internet connection is down. It can be shown "
                   "once the connection is back.")
TROUBLE = ("The cloud could not send this item just now. Try again in a few minutes; if it keeps happening, "
           "contact Chairside support.")
REFUSED = ("The cloud no longer accepts this clinic's relay, so items from other branches cannot be fetched. "
           "Contact Chairside support to register the relay again.")
GONE = "This photo or video is no longer stored in the cloud. It may have been deleted at another branch."


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _etag(data: bytes) -> str:
    return f'"{_sha(data)}"'


class _Body(httpx.AsyncByteStream):
    """A body sent 64 KiB at a time; `cut_at`: the line drops after that many bytes."""

    def __init__(self, data: bytes, cut_at: int | None) -> None:
        self.data, self.cut_at = data, cut_at
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        end = len(self.data) if self.cut_at is None else self.cut_at
        for i in range(0, end, 65536):
            yield self.data[i:min(i + 65536, end)]
        if self.cut_at is not None:
            raise httpx.ReadError("connection reset by peer")


class FakeCloud:
    """The cloud's media routes as the relay meets them over the WAN (a true system boundary)."""

    def __init__(self) -> None:
        self.content: dict[str, bytes] = {}  # media id -> bytes
        self.thumbs: dict[str, bytes] = {}
        self.requests: list[httpx.Request] = []
        self.bodies: list[_Body] = []  # the content answers' bodies, in order
        self.cuts: list[int] = []  # the next content answers drop the line after this many bytes each
        self.status: int | None = None  # every answer is this status (the cloud refusing, or in trouble)
        self.down: type[httpx.TransportError] | None = None  # the line is down: every request fails so
        self.ignore_range = False  # a cloud (or a proxy on the way) that always sends the whole file

    def add(self, data: bytes, thumb: bytes | None = None) -> uuid.UUID:
        media_id = uuid.uuid4()
        self.content[str(media_id)] = data
        if thumb is not None:
            self.thumbs[str(media_id)] = thumb
        return media_id

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down is not None:
            raise self.down("cannot reach the cloud", request=request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _answer(401, b'{"status": 401}')
        if self.status is not None:
            return _answer(self.status, b'{"detail": "refused"}')
        _, _, _, _, media_id, what = request.url.path.split("/")
        if what == "thumbnail":
            thumb = self.thumbs.get(media_id)
            if thumb is None:
                return _answer(404, b'{"status": 404, "code": "no-thumbnail"}')
            return _answer(200, thumb, {"content-type": "image/jpeg"})
        data = self.content.get(media_id)
        if data is None:
            return _answer(404, b'{"status": 404, "code": "media-not-found"}')
        size, etag = len(data), _etag(data)
        headers = {"content-type": "video/mp4", "etag": etag, "accept-ranges": "bytes",
                   "cache-control": "private, max-age=3600", "content-disposition": "inline; filename*=UTF-8''x.mp4",
                   "last-modified": "Mon, 07 Dec 2026 09:00:00 GMT", "x-cloud-only": "not for stations"}
        if request.headers.get("if-none-match") == etag:
            return _answer(304, b"", {"etag": etag}, length=False)
        start, end, status = 0, size, 200
        wanted = request.headers.get("range", "")
        if wanted.startswith("bytes=") and not self.ignore_range and request.headers.get("if-range", etag) == etag:
            first, _, last = wanted[6:].partition("-")
            start, end = (size - int(last), size) if not first else (int(first), min(size, int(last or size - 1) + 1))
            if start >= size:
                return _answer(416, b'{"status": 416}', {"content-range": f"bytes */{size}", "etag": etag})
            status = 206
            headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        if request.method == "HEAD":
            return _answer(status, b"", {**headers, "content-length": str(end - start)}, length=False)
        answer = _answer(status, data[start:end], headers, cut=self.cuts.pop(0) if self.cuts else None)
        assert isinstance(answer.stream, _Body)
        self.bodies.append(answer.stream)
        return answer


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None, *, length: bool = True,
            cut: int | None = None) -> httpx.Response:
    """An answer as it comes off the network: its body streamed (and cut, where asked)."""
    headers = {**({"content-type": "application/problem+json"} if status >= 400 else {}), **(headers or {})}
    if length:
        headers["content-length"] = str(len(body))
    return httpx.Response(status, headers=headers, stream=_Body(body, cut))


def _failures(rctx: Context) -> list[str]:
    """What the relay records of each failure to reach the cloud (its status page shows the last)."""
    up = runtime_of(rctx).upstream
    seen: list[str] = []
    real = up.failed

    def failed(why: str) -> None:
        seen.append(why)
        real(why)

    up.failed = failed  # type: ignore[method-assign]
    return seen


@pytest.fixture(scope="module")
def empty_relay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new relay's data folder (database migrated, no blobs), copied for each test: a tenth of the time."""
    data_dir = tmp_path_factory.mktemp("relay-template") / "relay"
    relay_context(data_dir, CLOUD, TOKEN).db.dispose()
    return data_dir


def _relay(empty_relay: Path, data_dir: Path, **overrides: Any) -> Context:
    shutil.copytree(empty_relay, data_dir)
    return relay_context(data_dir, CLOUD, TOKEN, **overrides)


@pytest.fixture
def rctx(empty_relay: Path, tmp_path: Path) -> Iterator[Context]:
    ctx = _relay(empty_relay, tmp_path / "relay")
    yield ctx
    ctx.db.dispose()


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


def _run(rctx: Context, cloud: FakeCloud | None, work: Callable[[], Awaitable[T]]) -> T:
    """`work()` in an event loop whose cache client talks to `cloud` (None: whatever the relay would make)."""
    async def go() -> T:
        if cloud is not None:
            up = runtime_of(rctx).upstream
            runtime_of(rctx).cache_clients[id(asyncio.get_running_loop())] = httpx.AsyncClient(
                base_url=up.base_url, headers=up.headers, transport=httpx.MockTransport(cloud.handle))
        try:
            return await work()
        finally:
            for task in list(runtime_of(rctx).cache_downloads.values()):
                await asyncio.wait([task])
            await cache.close_clients(rctx)

    return asyncio.run(go())


class _NoWait(types.ModuleType):
    """`asyncio` as cache.py sees it, with `sleep` recorded and not waited for."""

    def __init__(self) -> None:
        super().__init__("asyncio")
        self.slept: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch) -> _NoWait:
    fake = _NoWait()
    monkeypatch.setattr(cache, "asyncio", fake)
    return fake


def _put(rctx: Context, data: bytes, *, pinned: bool = False, used: datetime | None = None) -> str:
    sha = _sha(data)
    rctx.blobs.put_stream(sha, [data])
    with rctx.db.session() as s:
        s.add(CachedBlob(sha256=sha, size=len(data), pinned=pinned, last_used_at=used or datetime.now(UTC)))
    return sha


def _row(rctx: Context, sha: str) -> CachedBlob | None:
    with rctx.db.read() as s:
        return s.get(CachedBlob, sha)


def _used(rctx: Context, sha: str) -> datetime:
    row = _row(rctx, sha)
    assert row is not None
    return row.last_used_at.replace(tzinfo=UTC) if row.last_used_at.tzinfo is None else row.last_used_at


def _limits(rctx: Context, **values: Any) -> None:
    rctx.settings = dataclasses.replace(rctx.settings, **values)


def _free(monkeypatch: pytest.MonkeyPatch, free: int) -> list[str]:
    """The disk, seen by the cache, has `free` bytes free; answers the paths asked about."""
    asked: list[str] = []

    def usage(path: str | os.PathLike[str]) -> Any:
        asked.append(str(path))
        return types.SimpleNamespace(total=10 << 40, used=(10 << 40) - free, free=free)

    monkeypatch.setattr(cache, "shutil", types.SimpleNamespace(disk_usage=usage))
    return asked


def _temp_files(rctx: Context) -> list[str]:
    return sorted(p.name for p in rctx.settings.data_dir.rglob("*.cache.tmp"))


# --- the problems a station is answered ---------------------------------------------------------------------

def test_the_offline_problem_says_what_cannot_be_played_or_shown_and_when_to_retry() -> None:
    for what, text in (("video", OFFLINE_VIDEO), ("photo", OFFLINE_PHOTO), ("preview", OFFLINE_PREVIEW)):
        p = cache.offline_problem(what)
        assert (p.status, p.title, p.code, p.headers, p.detail) == \
            (503, "Service unavailable", "upstream-offline", {"Retry-After": "30"}, text)
    assert cache.offline_problem().detail == OFFLINE_VIDEO


def test_the_clouds_trouble_refusal_and_loss_are_told_apart() -> None:
    trouble, refused, gone = cache._cloud_trouble(), cache._relay_refused(), cache._gone_at_cloud()
    assert (trouble.status, trouble.title, trouble.code, trouble.headers, trouble.detail) == \
        (503, "Service unavailable", "upstream-error", {"Retry-After": "30"}, TROUBLE)
    assert (refused.status, refused.title, refused.code, refused.headers, refused.detail) == \
        (503, "Service unavailable", "relay-not-accepted", {}, REFUSED)
    assert (gone.status, gone.title, gone.code, gone.headers, gone.detail) == \
        (404, "Not found", "media-not-found", {}, GONE)


# --- bookkeeping: record, touch, stats, disk ----------------------------------------------------------------

def test_record_adds_a_row_and_keeps_an_existing_pin(rctx: Context) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    cache.record(rctx, "a" * 64, 1234)
    cache.record(rctx, "b" * 64, 99, pinned=True)
    a, b = _row(rctx, "a" * 64), _row(rctx, "b" * 64)
    assert a is not None and b is not None
    assert (a.size, a.pinned, b.size, b.pinned) == (1234, False, 99, True)
    assert _used(rctx, "a" * 64) >= before
    with rctx.db.session() as s:
        s.get(CachedBlob, "b" * 64).last_used_at = before - timedelta(days=3)  # type: ignore[union-attr]
    cache.record(rctx, "b" * 64, 99)  # held again, now as a cached copy: still not confirmed by the cloud
    assert _row(rctx, "b" * 64).pinned is True  # type: ignore[union-attr]
    assert _used(rctx, "b" * 64) >= before
    cache.record(rctx, "a" * 64, 1234, pinned=True)  # recorded here after all
    assert _row(rctx, "a" * 64).pinned is True  # type: ignore[union-attr]


def test_touch_marks_only_that_blob_used_and_at_most_once_a_minute(rctx: Context,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    old = datetime.now(UTC) - timedelta(days=2)
    one, two = _put(rctx, b"one" * 10, used=old), _put(rctx, b"two" * 10, used=old)
    clock = [1000.0]
    monkeypatch.setattr(cache, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    cache.touch(rctx, one)
    assert _used(rctx, one) > old + timedelta(days=1) and _used(rctx, two) == old
    assert runtime_of(rctx).cache_touched == {one: 1000.0}

    def reset() -> None:
        with rctx.db.session() as s:
            s.get(CachedBlob, one).last_used_at = old  # type: ignore[union-attr]

    reset()
    clock[0] = 1059.9
    cache.touch(rctx, one)  # within the minute: no write
    assert _used(rctx, one) == old and runtime_of(rctx).cache_touched == {one: 1000.0}
    clock[0] = 1060.0
    cache.touch(rctx, one)  # a minute on: written again
    assert _used(rctx, one) > old + timedelta(days=1) and runtime_of(rctx).cache_touched == {one: 1060.0}


def test_the_touch_memory_is_forgotten_past_ten_thousand_blobs(rctx: Context) -> None:
    touched = runtime_of(rctx).cache_touched
    now = time.monotonic()
    touched.update({f"{i:064x}": now for i in range(10_000)})
    cache.touch(rctx, "a" * 64)
    assert len(touched) == 10_001
    cache.touch(rctx, "b" * 64)
    assert touched == {"b" * 64: pytest.approx(time.monotonic(), abs=30)}


def test_touch_without_a_serving_relay_always_writes(empty_relay: Path, tmp_path: Path) -> None:
    rctx = _relay(empty_relay, tmp_path / "relay")
    try:
        rctx.relay = None
        old = datetime.now(UTC) - timedelta(days=2)
        sha = _put(rctx, b"x" * 10, used=old)
        cache.touch(rctx, sha)
        with rctx.db.session() as s:
            s.get(CachedBlob, sha).last_used_at = old  # type: ignore[union-attr]
        cache.touch(rctx, sha)
        assert _used(rctx, sha) > old + timedelta(days=1)
    finally:
        rctx.db.dispose()


def test_stats_count_bytes_pinned_bytes_items_and_the_limits(rctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _free(monkeypatch, 7 << 30)
    _limits(rctx, relay_cache_bytes=123_456, relay_min_free_bytes=4321)
    assert cache.stats(rctx) == {"bytes": 0, "limit": 123_456, "pinned_bytes": 0, "items": 0,
                                 "disk_free": 7 << 30, "min_free": 4321}
    _put(rctx, b"a" * 100)
    _put(rctx, b"b" * 30, pinned=True)
    _put(rctx, b"c" * 7, pinned=True)
    assert cache.stats(rctx) == {"bytes": 137, "limit": 123_456, "pinned_bytes": 37, "items": 3,
                                 "disk_free": 7 << 30, "min_free": 4321}
    assert asked == [str(rctx.blobs.root)] * 2  # type: ignore[attr-defined]


def test_disk_free_is_that_of_the_blob_folder_or_of_the_data_folder(rctx: Context, tmp_path: Path) -> None:
    root = rctx.blobs.root  # type: ignore[attr-defined]
    assert cache._store_root(rctx) == root and cache._temp_dir(rctx) == rctx.blobs.temp_dir  # type: ignore[attr-defined]
    assert abs(cache.disk_free(rctx) - shutil.disk_usage(root).free) < 1 << 30
    (tmp_path / "keys").mkdir(mode=0o700)
    key = MasterKey.create(tmp_path / "keys" / "master.key")
    sealed = relay_context(tmp_path / "sealed", CLOUD, TOKEN, master_key_file=key.path)
    try:
        assert not isinstance(sealed.blobs, type(rctx.blobs))  # encrypted at rest: not a plain folder of blobs
        assert cache._store_root(sealed) == sealed.settings.data_dir
        assert cache._temp_dir(sealed) == sealed.settings.data_dir / "cache-tmp"
        assert (sealed.settings.data_dir / "cache-tmp").is_dir()
    finally:
        sealed.db.dispose()


# --- eviction -------------------------------------------------------------------------------------------------

def _blobs(rctx: Context, n: int, *, pinned: frozenset[int] = frozenset(), size: int = 100) -> list[str]:
    """n blobs of `size` bytes, blob 0 the least recently used."""
    start = datetime.now(UTC) - timedelta(days=1)
    return [_put(rctx, bytes([i]) * size, pinned=i in pinned, used=start + timedelta(minutes=i)) for i in range(n)]


def _held(rctx: Context, hashes: list[str]) -> list[int]:
    held = [i for i, sha in enumerate(hashes) if rctx.blobs.stat(sha) is not None]
    assert held == [i for i, sha in enumerate(hashes) if _row(rctx, sha) is not None]  # rows and files agree
    return held


def test_eviction_takes_the_least_recently_used_first_and_stops_at_the_limit(
        rctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 1 << 40)
    hashes = _blobs(rctx, 6)
    _limits(rctx, relay_cache_bytes=600, relay_min_free_bytes=0)
    assert cache.ensure_free(rctx) == 0 and _held(rctx, hashes) == [0, 1, 2, 3, 4, 5]  # exactly at the limit
    _limits(rctx, relay_cache_bytes=599)
    assert cache.ensure_free(rctx) == 100 and _held(rctx, hashes) == [1, 2, 3, 4, 5]  # a byte over
    _limits(rctx, relay_cache_bytes=400)
    assert cache.ensure_free(rctx) == 100 and _held(rctx, hashes) == [2, 3, 4, 5]
    _limits(rctx, relay_cache_bytes=301)
    assert cache.ensure_free(rctx) == 100 and _held(rctx, hashes) == [3, 4, 5]
    _limits(rctx, relay_cache_bytes=0)
    assert cache.ensure_free(rctx) == 300 and _held(rctx, hashes) == []


def test_an_empty_cache_is_within_any_limit_and_says_nothing(rctx: Context, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    _free(monkeypatch, 1 << 40)
    _limits(rctx, relay_cache_bytes=0, relay_min_free_bytes=0)
    with caplog.at_level(logging.INFO, logger="chairside.relay.cache"):
        assert cache.ensure_free(rctx) == 0
    assert caplog.messages == []


def test_a_blob_pinned_while_eviction_runs_is_left_and_the_next_one_goes(rctx: Context,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The victims are read first, then deleted one by one: a recording of the same bytes acknowledged at this
    relay in between (its row pinned by another writer) must not be evicted."""
    _free(monkeypatch, 1 << 40)
    hashes = _blobs(rctx, 3)
    _limits(rctx, relay_cache_bytes=200, relay_min_free_bytes=0)
    real_session = rctx.db.session
    raced: list[str] = []

    @contextlib.contextmanager
    def session() -> Iterator[Any]:
        if not raced:  # the first delete: another writer pins the oldest blob just before it
            raced.append(hashes[0])
            cache.record(rctx, hashes[0], 100, pinned=True)
        with real_session() as s:
            yield s

    monkeypatch.setattr(rctx.db, "session", session)
    assert cache.ensure_free(rctx) == 100 and _held(rctx, hashes) == [0, 2]
    assert _row(rctx, hashes[0]).pinned is True  # type: ignore[union-attr]


def test_eviction_orders_by_last_use_then_by_hash(rctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 1 << 40)
    same = datetime.now(UTC) - timedelta(hours=1)
    hashes = sorted(_put(rctx, bytes([i]) * 100, used=same) for i in range(3))
    newer = _put(rctx, b"newer" * 20, used=same - timedelta(minutes=30) + timedelta(hours=1))
    older = _put(rctx, b"older" * 20, used=same - timedelta(minutes=30))
    _limits(rctx, relay_cache_bytes=300, relay_min_free_bytes=0)
    assert cache.ensure_free(rctx) == 200
    assert [rctx.blobs.stat(s) is not None for s in (older, *hashes, newer)] == [False, False, True, True, True]


def test_pinned_blobs_are_never_evicted_even_over_the_limit(rctx: Context, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    _free(monkeypatch, 1 << 40)
    hashes = _blobs(rctx, 5, pinned=frozenset({0, 2}))
    _limits(rctx, relay_cache_bytes=250, relay_min_free_bytes=0)
    assert cache.ensure_free(rctx) == 300 and _held(rctx, hashes) == [0, 2]
    _limits(rctx, relay_cache_bytes=150)
    with caplog.at_level(logging.WARNING, logger="chairside.relay.cache"):
        assert cache.ensure_free(rctx) == 0
    assert _held(rctx, hashes) == [0, 2]
    assert caplog.messages == ["blob cache: 50 bytes over its limit or short of free disk, but everything left is "
                               "pinned (not yet confirmed by the cloud)"]


def test_low_disk_evicts_what_frees_enough_even_under_the_cache_limit(rctx: Context,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    free = [1000]
    monkeypatch.setattr(cache, "disk_free", lambda ctx: free[0])
    hashes = _blobs(rctx, 5, pinned=frozenset({1}))
    real_delete = rctx.blobs.delete

    def delete(sha: str) -> None:  # a freed blob frees its bytes on the disk
        real_delete(sha)
        free[0] += 100

    monkeypatch.setattr(rctx.blobs, "delete", delete)
    _limits(rctx, relay_cache_bytes=1 << 40, relay_min_free_bytes=1000)
    assert cache.ensure_free(rctx) == 0 and _held(rctx, hashes) == [0, 1, 2, 3, 4]  # exactly the minimum free
    _limits(rctx, relay_min_free_bytes=1150)
    assert cache.ensure_free(rctx) == 200 and _held(rctx, hashes) == [1, 3, 4]  # 150 short: two go, pinned 1 stays
    _limits(rctx, relay_min_free_bytes=1 << 40)
    assert cache.ensure_free(rctx) == 200 and _held(rctx, hashes) == [1]


def test_eviction_goes_on_past_a_batch(rctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 1 << 40)
    monkeypatch.setattr(cache, "EVICT_BATCH", 2)
    hashes = _blobs(rctx, 5, size=10)
    _limits(rctx, relay_cache_bytes=15, relay_min_free_bytes=0)
    assert cache.ensure_free(rctx) == 40 and _held(rctx, hashes) == [4]


def test_the_janitor_keeps_trimming_and_outlives_a_failure(rctx: Context, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    _free(monkeypatch, 1 << 40)
    hashes = _blobs(rctx, 3)
    _limits(rctx, relay_cache_bytes=100, relay_min_free_bytes=0)
    calls: list[int] = []
    real = cache.ensure_free
    third = threading.Event()

    def flaky(ctx: Context) -> int:  # in the janitor's worker thread
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk gone for a moment")
        if len(calls) == 3:
            third.set()
        return real(ctx)

    monkeypatch.setattr(cache, "ensure_free", flaky)

    async def go() -> None:
        task = asyncio.create_task(cache.janitor(rctx, interval_s=0.001))
        assert await asyncio.to_thread(third.wait, 10)
        assert not task.done()
        task.cancel()

    with caplog.at_level(logging.INFO, logger="chairside.relay.cache"):
        asyncio.run(go())
    assert len(calls) >= 3 and _held(rctx, hashes) == [2]
    assert caplog.messages[:2] == ["blob cache janitor failed; trying again later", "blob cache: evicted 200 bytes"]
    assert caplog.records[0].exc_info is not None
    assert caplog.messages[2:] == []  # nothing evicted afterwards: nothing said


# --- the client to the cloud --------------------------------------------------------------------------------

def test_one_client_per_event_loop_made_again_once_closed(rctx: Context) -> None:
    up = runtime_of(rctx).upstream

    async def go() -> None:
        client = cache._client(rctx, up)
        assert cache._client(rctx, up) is client
        assert runtime_of(rctx).cache_clients == {id(asyncio.get_running_loop()): client}
        assert client.timeout == httpx.Timeout(30.0, connect=10.0) and str(client.base_url) == CLOUD
        assert client.headers["authorization"] == f"Bearer {TOKEN}"
        await client.aclose()
        again = cache._client(rctx, up)
        assert again is not client and not again.is_closed
        await cache.close_clients(rctx)
        assert again.is_closed and runtime_of(rctx).cache_clients == {}
        await cache.close_clients(rctx)  # nothing left to close

    asyncio.run(go())
    relay, rctx.relay = rctx.relay, None
    try:
        asyncio.run(cache.close_clients(rctx))  # not a serving relay: nothing to do
    finally:
        rctx.relay = relay


# --- the temp file of a download ----------------------------------------------------------------------------

def test_the_sink_hashes_what_it_writes_restarts_empty_and_leaves_nothing(tmp_path: Path) -> None:
    sha = _sha(b"hello world")
    sink = cache._Sink(tmp_path, sha)
    assert sink.path.parent == tmp_path and sink.path.name.startswith(sha[:16] + ".")
    assert sink.path.name.endswith(".cache.tmp") and len(sink.path.name) > len(sha[:16]) + len(".cache.tmp") + 1
    sink.write(b"garbage that was cut")
    sink.restart()
    assert (sink.size, sink.path.stat().st_size, sink.hasher.hexdigest()) == (0, 0, _sha(b""))
    sink.write(b"hello ")
    sink.write(b"world")
    sink.finish()
    assert sink.file.closed and sink.path.read_bytes() == b"hello world"
    assert (sink.size, sink.hasher.hexdigest()) == (11, sha)
    sink.discard()
    assert list(tmp_path.iterdir()) == []
    sink.discard()  # already gone (adopted): no error
    open_one = cache._Sink(tmp_path, sha)
    open_one.write(b"half")
    open_one.discard()  # not finished: closed and removed
    assert open_one.file.closed and list(tmp_path.iterdir()) == []


def test_a_temp_file_that_cannot_be_closed_on_a_full_disk_is_removed_all_the_same(tmp_path: Path) -> None:
    sink = cache._Sink(tmp_path, _sha(b"x"))
    sink.file.close()
    sink.file = open("/dev/full", "wb")  # noqa: SIM115  # what is still buffered cannot be written: ENOSPC
    sink.file.write(b"the last bytes")
    sink.discard()
    assert list(tmp_path.iterdir()) == []


# --- downloads ------------------------------------------------------------------------------------------------

DATA = bytes(range(256)) * 10240  # 2.5 MiB: the cache writes what arrives a MiB at a time
MiB = 1 << 20


def _download(rctx: Context, cloud: FakeCloud, data: bytes = DATA, *, size: int | None = None,
              sha: str | None = None) -> tuple[bool, uuid.UUID]:
    media_id = cloud.add(data)

    async def go() -> bool:
        return await cache._download(rctx, media_id, sha or _sha(data), len(data) if size is None else size)

    return _run(rctx, cloud, go), media_id


def _stored(rctx: Context, data: bytes) -> bytes | None:
    path = rctx.blobs.local_path(_sha(data))
    return None if path is None or not path.exists() else path.read_bytes()


def test_a_download_is_stored_recorded_unpinned_and_leaves_no_temp_file(rctx: Context, cloud: FakeCloud,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def copied(*args: object) -> None:
        raise AssertionError("a verified download is renamed into place, not hashed and copied again")

    monkeypatch.setattr(rctx.blobs, "put_stream", copied)
    ok, media_id = _download(rctx, cloud)
    assert ok is True and _stored(rctx, DATA) == DATA
    row = _row(rctx, _sha(DATA))
    assert row is not None and (row.size, row.pinned) == (len(DATA), False)
    [request] = cloud.requests
    assert (request.method, request.url.path) == ("GET", f"/api/v1/media/{media_id}/content")
    assert "range" not in request.headers and "if-range" not in request.headers
    assert _temp_files(rctx) == []
    up = runtime_of(rctx).upstream
    assert up.last_contact > time.time() - 60 and up.last_error is None


def test_a_cut_download_resumes_where_it_stopped_if_the_blob_is_the_same(
        rctx: Context, cloud: FakeCloud, no_wait: _NoWait) -> None:
    cloud.cuts = [1_500_000, 1_100_000]  # what arrived of the last MiB before a cut is fetched again
    failures = _failures(rctx)
    ok, _ = _download(rctx, cloud)
    assert ok is True and _stored(rctx, DATA) == DATA
    assert [(r.headers.get("range"), r.headers.get("if-range")) for r in cloud.requests] == \
        [(None, None), (f"bytes={MiB}-", _etag(DATA)), (f"bytes={2 * MiB}-", _etag(DATA))]
    assert no_wait.slept == [2, 4]
    assert failures == ["blob download: ReadError('connection reset by peer')"] * 2
    assert _temp_files(rctx) == []


def test_a_cut_download_starts_again_when_the_cloud_sends_the_whole_file(
        rctx: Context, cloud: FakeCloud, no_wait: _NoWait) -> None:
    cloud.cuts = [1_500_000]
    cloud.ignore_range = True
    ok, _ = _download(rctx, cloud)
    assert ok is True and _stored(rctx, DATA) == DATA
    assert [r.headers.get("range") for r in cloud.requests] == [None, f"bytes={MiB}-"]


def test_a_download_cut_four_times_gives_up_with_nothing_kept(rctx: Context, cloud: FakeCloud, no_wait: _NoWait,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    cloud.cuts = [1_200_000] * 5
    with caplog.at_level(logging.WARNING, logger="chairside.relay.cache"):
        ok, _ = _download(rctx, cloud)
    assert ok is False and len(cloud.requests) == 4 and no_wait.slept == [2, 4, 8]
    assert _stored(rctx, DATA) is None and _row(rctx, _sha(DATA)) is None and _temp_files(rctx) == []
    assert caplog.messages == [f"caching {_sha(DATA)}: gave up after 4 cuts at byte {2 * MiB}"]
    assert runtime_of(rctx).upstream.last_error == "blob download: ReadError('connection reset by peer')"


def test_the_pause_between_attempts_is_capped_at_thirty_seconds(rctx: Context, cloud: FakeCloud,
                                                                  no_wait: _NoWait,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "DOWNLOAD_ATTEMPTS", 7)
    cloud.cuts = [10] * 6
    ok, _ = _download(rctx, cloud)
    assert ok is True and no_wait.slept == [2, 4, 8, 16, 30, 30]


def test_an_unreachable_cloud_ends_the_download_at_once(rctx: Context, cloud: FakeCloud, no_wait: _NoWait) -> None:
    cloud.down = httpx.ConnectError
    ok, _ = _download(rctx, cloud)
    assert ok is False and len(cloud.requests) == 1 and no_wait.slept == []
    assert runtime_of(rctx).upstream.last_error == "blob download: ConnectError('cannot reach the cloud')"
    assert runtime_of(rctx).upstream.last_contact == 0.0 and _temp_files(rctx) == []


@pytest.mark.parametrize("status", [404, 401, 500, 304])
def test_a_refused_download_is_not_cached(rctx: Context, cloud: FakeCloud, status: int,
                                          caplog: pytest.LogCaptureFixture) -> None:
    cloud.status = status
    with caplog.at_level(logging.WARNING, logger="chairside.relay.cache"):
        ok, _ = _download(rctx, cloud)
    assert ok is False and len(cloud.requests) == 1 and _stored(rctx, DATA) is None and _temp_files(rctx) == []
    assert runtime_of(rctx).upstream.last_contact > 0  # the cloud answered
    assert caplog.messages == [f"caching {_sha(DATA)}: the cloud answered {status}"]


def test_a_damaged_or_short_download_is_never_adopted(rctx: Context, cloud: FakeCloud,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    rotten = bytearray(DATA)
    rotten[1000] ^= 0xFF
    with caplog.at_level(logging.WARNING, logger="chairside.relay.cache"):
        ok, _ = _download(rctx, cloud, bytes(rotten), sha=_sha(DATA))  # same size, one byte rotted
    assert ok is False and rctx.blobs.stat(_sha(DATA)) is None and _row(rctx, _sha(DATA)) is None
    assert caplog.messages == [f"caching {_sha(DATA)}: the download was damaged ({len(DATA)} bytes, sha256 "
                               f"{_sha(bytes(rotten))}); not cached"]
    ok, _ = _download(rctx, cloud, DATA, size=len(DATA) + 1)  # the right bytes, but not the size the item says
    assert ok is False and rctx.blobs.stat(_sha(DATA)) is None and _row(rctx, _sha(DATA)) is None
    assert _temp_files(rctx) == []


def test_a_download_failing_for_another_reason_answers_false(rctx: Context, cloud: FakeCloud,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    shutil.rmtree(rctx.blobs.temp_dir)  # type: ignore[attr-defined]  # the blob folder's disk went away
    with caplog.at_level(logging.ERROR, logger="chairside.relay.cache"):
        ok, _ = _download(rctx, cloud)
    assert ok is False and caplog.messages == [f"caching {_sha(DATA)} failed"]
    assert caplog.records[0].exc_info is not None


def test_a_download_without_a_link_to_the_cloud_answers_false(empty_relay: Path, tmp_path: Path) -> None:
    rctx = _relay(empty_relay, tmp_path / "relay")
    try:
        rctx.relay = None
        assert asyncio.run(cache._download_once(rctx, uuid.uuid4(), _sha(DATA), len(DATA))) is False
        assert _temp_files(rctx) == []
    finally:
        rctx.db.dispose()


def test_a_download_makes_its_loops_client_to_the_cloud(rctx: Context) -> None:
    up = runtime_of(rctx).upstream
    up.base_url = "http://127.0.0.1:9"  # nothing listens: refused at once
    failures = _failures(rctx)

    async def go() -> bool:
        try:
            return await cache._download_once(rctx, uuid.uuid4(), _sha(DATA), len(DATA))
        finally:
            assert list(runtime_of(rctx).cache_clients) == [id(asyncio.get_running_loop())]
            await cache.close_clients(rctx)

    assert asyncio.run(go()) is False
    assert len(failures) == 1 and failures[0].startswith("blob download: ConnectError(")


def test_an_adopted_download_trims_the_cache(rctx: Context, cloud: FakeCloud,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 1 << 40)
    old = _put(rctx, b"old" * 100, used=datetime.now(UTC) - timedelta(days=1))
    _limits(rctx, relay_cache_bytes=len(DATA) + 100, relay_min_free_bytes=0)
    ok, _ = _download(rctx, cloud)
    assert ok is True and rctx.blobs.stat(old) is None and _row(rctx, old) is None
    assert _stored(rctx, DATA) == DATA


def test_an_encrypted_relay_downloads_through_its_own_temp_folder(tmp_path: Path, cloud: FakeCloud) -> None:
    (tmp_path / "keys").mkdir(mode=0o700)
    key = MasterKey.create(tmp_path / "keys" / "master.key")
    rctx = relay_context(tmp_path / "relay", CLOUD, TOKEN, master_key_file=key.path)
    try:
        for data in (DATA, DATA[::-1]):
            ok, _ = _download(rctx, cloud, data)
            assert ok is True and rctx.blobs.stat(_sha(data)) is not None
            with rctx.blobs.open_range(_sha(data)) as reader:
                assert b"".join(reader) == data
        assert list((rctx.settings.data_dir / "cache-tmp").iterdir()) == []
    finally:
        rctx.db.dispose()


def test_one_download_per_blob_and_loop_forgotten_when_done(rctx: Context, cloud: FakeCloud) -> None:
    media_id = cloud.add(DATA)
    sha = _sha(DATA)

    async def go() -> None:
        first = cache.start_download(rctx, media_id, sha, len(DATA))
        assert cache.start_download(rctx, media_id, sha, len(DATA)) is first
        assert first.get_name() == f"cache {sha[:12]}"
        assert runtime_of(rctx).cache_downloads == {(id(asyncio.get_running_loop()), sha): first}
        assert await first is True
        await asyncio.sleep(0)  # the done callback
        assert runtime_of(rctx).cache_downloads == {}
        again = cache.start_download(rctx, media_id, sha, len(DATA))
        assert again is not first and await again is True
        await asyncio.sleep(0)
        assert runtime_of(rctx).cache_downloads == {}
        stale = cache.start_download(rctx, media_id, sha, len(DATA))
        newer = asyncio.get_running_loop().create_future()
        runtime_of(rctx).cache_downloads[(id(asyncio.get_running_loop()), sha)] = newer  # type: ignore[assignment]
        await stale
        await asyncio.sleep(0)  # the old task's end leaves the newer one in place
        assert runtime_of(rctx).cache_downloads == {(id(asyncio.get_running_loop()), sha): newer}
        newer.set_result(True)
        done = cache.start_download(rctx, media_id, sha, len(DATA))  # the one there is done: a new one starts
        assert done is not newer and await done is True

    _run(rctx, cloud, go)
    assert len(cloud.requests) == 4


# --- thumbnails -----------------------------------------------------------------------------------------------

THUMB = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


def _thumbnail(rctx: Context, cloud: FakeCloud, media_id: uuid.UUID, sha: str) -> str:
    async def go() -> str:
        return await cache.fetch_thumbnail(rctx, media_id, sha)

    return _run(rctx, cloud, go)


def test_a_thumbnail_is_fetched_verified_stored_and_recorded(rctx: Context, cloud: FakeCloud) -> None:
    media_id = cloud.add(DATA, THUMB)
    assert _thumbnail(rctx, cloud, media_id, _sha(THUMB)) == "ok"
    assert _stored(rctx, THUMB) == THUMB
    row = _row(rctx, _sha(THUMB))
    assert row is not None and (row.size, row.pinned) == (len(THUMB), False)
    assert [(r.method, r.url.path) for r in cloud.requests] == [("GET", f"/api/v1/media/{media_id}/thumbnail")]
    assert runtime_of(rctx).upstream.last_contact > 0


def test_what_a_thumbnail_fetch_answers_when_it_fails(rctx: Context, cloud: FakeCloud,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    media_id = cloud.add(DATA, THUMB)
    with caplog.at_level(logging.WARNING, logger="chairside.relay.cache"):
        assert _thumbnail(rctx, cloud, media_id, _sha(THUMB[::-1])) == "damaged"
    assert caplog.messages == [f"thumbnail of {media_id} arrived damaged; not stored"]
    assert _thumbnail(rctx, cloud, cloud.add(DATA), _sha(THUMB)) == "missing"
    for status, outcome in ((401, "refused"), (403, "refused"), (404, "missing"), (410, "missing"),
                            (500, "missing"), (206, "missing")):
        cloud.status = status
        assert _thumbnail(rctx, cloud, media_id, _sha(THUMB)) == outcome, status
    cloud.status = None
    cloud.down = httpx.ReadTimeout
    assert _thumbnail(rctx, cloud, media_id, _sha(THUMB)) == "offline"
    assert runtime_of(rctx).upstream.last_error == "thumbnail: ReadTimeout('cannot reach the cloud')"
    assert rctx.blobs.stat(_sha(THUMB)) is None and _row(rctx, _sha(THUMB)) is None
    relay, rctx.relay = rctx.relay, None
    try:
        assert asyncio.run(cache.fetch_thumbnail(rctx, media_id, _sha(THUMB))) == "offline"
    finally:
        rctx.relay = relay


def test_a_thumbnail_of_more_than_sixteen_mebibytes_is_refused(rctx: Context, cloud: FakeCloud) -> None:
    biggest = b"\xff" * (16 << 20)
    big = cloud.add(b"", biggest)
    assert _thumbnail(rctx, cloud, big, _sha(biggest)) == "ok"
    too_big = biggest + b"\xff"
    assert _thumbnail(rctx, cloud, cloud.add(b"", too_big), _sha(too_big)) == "damaged"
    assert rctx.blobs.stat(_sha(too_big)) is None


# --- serving a station ------------------------------------------------------------------------------------------

def _item(media_id: uuid.UUID, data: bytes, *, kind: str = "video", thumb: bytes | None = None) -> Media:
    return Media(id=media_id, kind=kind, mime="video/mp4" if kind == "video" else "image/jpeg", sha256=_sha(data),
                 size=len(data), filename="山田 rec.mp4", thumb_sha256=_sha(thumb) if thumb else None)


def _app(rctx: Context, item: Media) -> FastAPI:
    app = FastAPI()
    install(app)

    @app.api_route("/content", methods=["GET", "HEAD"])
    async def content(request: Request) -> Response:
        h = request.headers
        return await cache.serve(rctx, item, request, h.get("range"), h.get("if-range"), h.get("if-none-match"),
                                 request.method == "HEAD")

    @app.get("/thumbnail")
    async def thumbnail(request: Request) -> Response:
        return await cache.serve_thumbnail(rctx, item, request.headers.get("if-none-match"))

    return app


def _station(rctx: Context, cloud: FakeCloud | None, item: Media,
             *requests: tuple[str, str, dict[str, str]]) -> list[httpx.Response]:
    """A station's requests (method, path, headers) to the relay, one after the other."""
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(rctx, item)),
                                     base_url="http://relay.test") as station:
            answers = []
            for method, path, headers in requests:
                answers.append(await station.request(method, path, headers=headers))
            return answers

    return _run(rctx, cloud, go)


def _problem(r: httpx.Response) -> tuple[int, str, str, str | None]:
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    return r.status_code, body["type"].rpartition("/")[2], body["detail"], r.headers.get("retry-after")


def test_an_uncached_item_is_proxied_with_the_stations_conditions_and_cached(rctx: Context, cloud: FakeCloud) -> None:
    media_id = cloud.add(DATA)
    item = _item(media_id, DATA)
    size, etag = len(DATA), _etag(DATA)
    [part] = _station(rctx, cloud, item, ("GET", "/content", {"range": "bytes=100-1099", "if-range": etag}))
    assert part.status_code == 206 and part.content == DATA[100:1100]
    assert dict(part.headers) == {"content-type": "video/mp4", "content-length": "1000",
                                  "content-range": f"bytes 100-1099/{size}", "etag": etag, "accept-ranges": "bytes",
                                  "cache-control": "private, max-age=3600",
                                  "content-disposition": "inline; filename*=UTF-8''x.mp4",
                                  "last-modified": "Mon, 07 Dec 2026 09:00:00 GMT"}
    proxied, download = cloud.requests[0], cloud.requests[1]
    assert (proxied.method, proxied.url.path) == ("GET", f"/api/v1/media/{media_id}/content")
    assert (proxied.headers["range"], proxied.headers["if-range"]) == ("bytes=100-1099", etag)
    assert "if-none-match" not in proxied.headers
    assert "range" not in download.headers  # the whole blob, in the background
    assert _stored(rctx, DATA) == DATA and len(cloud.requests) == 2
    assert runtime_of(rctx).upstream.last_contact > 0


def test_an_uncached_item_head_304_and_416_are_proxied_without_a_body(rctx: Context, cloud: FakeCloud) -> None:
    media_id = cloud.add(DATA)
    item = _item(media_id, DATA)
    size, etag = len(DATA), _etag(DATA)
    head, not_modified = _station(rctx, cloud, item, ("HEAD", "/content", {}),
                                  ("GET", "/content", {"if-none-match": etag}))
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(size)
    assert head.headers["etag"] == etag and "x-cloud-only" not in head.headers
    assert not_modified.status_code == 304 and not_modified.content == b"" and not_modified.headers["etag"] == etag
    assert [(r.method, r.headers.get("if-none-match")) for r in cloud.requests] == [("HEAD", None), ("GET", etag)]
    assert _row(rctx, _sha(DATA)) is None  # neither a HEAD nor a 304 starts the download
    [whole] = _station(rctx, cloud, item, ("GET", "/content", {"range": "bytes=0-9", "if-range": '"0000"'}))
    assert whole.status_code == 200 and whole.content == DATA and "content-range" not in whole.headers
    assert _stored(rctx, DATA) == DATA  # the cloud has it: it is cached
    other = DATA[::-1]
    [beyond] = _station(rctx, cloud, _item(cloud.add(other), other), ("GET", "/content", {"range": f"bytes={size}-"}))
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert _stored(rctx, other) == other  # a range beyond the end: the cloud has it all the same


def test_a_cut_in_the_proxied_stream_is_reported(rctx: Context, cloud: FakeCloud) -> None:
    media_id = cloud.add(DATA)
    cloud.cuts = [70_000]
    failures = _failures(rctx)
    with pytest.raises(httpx.ReadError):
        _station(rctx, cloud, _item(media_id, DATA), ("GET", "/content", {}))
    assert failures == ["media proxy: ReadError('connection reset by peer')"]


def test_a_cached_item_is_served_from_here_with_range_and_conditions(rctx: Context,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    old = datetime.now(UTC) - timedelta(days=2)
    _put(rctx, DATA, used=old)
    _limits(rctx, serve_chunk_bytes=4096)
    item = _item(uuid.uuid4(), DATA)
    etag, size = _etag(DATA), len(DATA)
    whole, part, stale, head, same = _station(
        rctx, None, item, ("GET", "/content", {}), ("GET", "/content", {"range": "bytes=10-19"}),
        ("GET", "/content", {"range": "bytes=10-19", "if-range": '"0000"'}), ("HEAD", "/content", {}),
        ("GET", "/content", {"if-none-match": etag}))
    assert whole.status_code == 200 and whole.content == DATA and whole.headers["etag"] == etag
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["content-disposition"] == "inline; filename*=UTF-8''%E5%B1%B1%E7%94%B0%20rec.mp4"
    assert part.status_code == 206 and part.content == DATA[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{size}"
    assert stale.status_code == 200 and stale.content == DATA
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(size)
    assert same.status_code == 304 and same.content == b""
    assert _used(rctx, _sha(DATA)) > old + timedelta(days=1)  # served: used now


def _scope(method: str, path: str) -> dict[str, Any]:
    """An HTTP request's ASGI scope as uvicorn (ASGI spec 2.3) gives it to the relay's app."""
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"relay.test")], "client": ("127.0.0.1", 1),
            "server": ("relay.test", 80)}


def _sent(rctx: Context, method: str) -> list[dict[str, Any]]:
    """The ASGI messages the relay's app sends for `method /content` of a cached item."""
    app = _app(rctx, _item(uuid.uuid4(), DATA))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(_scope(method, "/content"), receive, send))  # type: ignore[arg-type]
    return sent


def test_a_head_of_a_cached_item_reads_nothing_from_the_disk(rctx: Context) -> None:
    """The server drops a HEAD's body anyway; what matters is that none is read (a HEAD of a 2 GB video)."""
    _put(rctx, DATA)
    start, *bodies = _sent(rctx, "HEAD")
    assert start["status"] == 200 and (b"content-length", str(len(DATA)).encode()) in start["headers"]
    assert [m["body"] for m in bodies] == [b""]


def test_a_cached_item_is_sent_in_reads_of_the_configured_size(rctx: Context) -> None:
    _put(rctx, DATA)
    _limits(rctx, serve_chunk_bytes=64 << 10)
    start, *bodies = _sent(rctx, "GET")
    assert start["status"] == 200 and b"".join(m["body"] for m in bodies) == DATA
    assert [len(m["body"]) for m in bodies] == [64 << 10] * 40


def test_a_station_that_goes_away_mid_stream_frees_the_line_to_the_cloud(rctx: Context, cloud: FakeCloud) -> None:
    """uvicorn tells the app of the disconnect; the proxied answer from the cloud is closed then, not whenever
    the garbage collector gets to it (each one holds a connection of the relay's pool to the cloud)."""
    app = _app(rctx, _item(cloud.add(DATA), DATA))

    async def go() -> bool:
        sending = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await sending.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sending.set()
                await asyncio.Event().wait()  # the station's socket is full: it went away

        await app(_scope("GET", "/content"), receive, send)  # type: ignore[arg-type]
        return cloud.bodies[0].closed

    assert _run(rctx, cloud, go) is True


@pytest.mark.parametrize(("kind", "text"), [("video", OFFLINE_VIDEO), ("image", OFFLINE_PHOTO)])
def test_an_uncached_item_while_the_cloud_is_unreachable_is_the_offline_problem(
        rctx: Context, cloud: FakeCloud, kind: str, text: str) -> None:
    item = _item(cloud.add(DATA), DATA, kind=kind)
    cloud.down = httpx.ConnectError
    [r] = _station(rctx, cloud, item, ("GET", "/content", {}))
    assert _problem(r) == (503, "upstream-offline", text, "30")
    assert runtime_of(rctx).upstream.last_error == "media proxy: ConnectError('cannot reach the cloud')"
    relay, rctx.relay = rctx.relay, None  # a relay not linked to the cloud
    try:
        [r] = _station_unlinked(rctx, item, "/content")
        assert _problem(r) == (503, "upstream-offline", text, "30")
    finally:
        rctx.relay = relay


def _station_unlinked(rctx: Context, item: Media, path: str) -> list[httpx.Response]:
    """A station's GET of `path` at a relay that has no link to the cloud."""
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(rctx, item)),
                                     base_url="http://relay.test") as station:
            return [await station.get(path)]

    return asyncio.run(go())


@pytest.mark.parametrize(("status", "answer"), [
    (401, (503, "relay-not-accepted", REFUSED, None)), (403, (503, "relay-not-accepted", REFUSED, None)),
    (404, (404, "media-not-found", GONE, None)), (410, (404, "media-not-found", GONE, None)),
    (500, (503, "upstream-error", TROUBLE, "30")), (502, (503, "upstream-error", TROUBLE, "30")),
    (400, (503, "upstream-error", TROUBLE, "30")), (409, (503, "upstream-error", TROUBLE, "30"))])
def test_what_the_cloud_answered_is_told_to_the_station(rctx: Context, cloud: FakeCloud, status: int,
                                                         answer: tuple[int, str, str, str | None]) -> None:
    item = _item(cloud.add(DATA), DATA)
    cloud.status = status
    [r] = _station(rctx, cloud, item, ("GET", "/content", {}))
    assert _problem(r) == answer
    assert len(cloud.requests) == 1 and runtime_of(rctx).cache_downloads == {}  # nothing to cache


def test_a_thumbnail_is_served_from_here_or_fetched_first(rctx: Context, cloud: FakeCloud) -> None:
    media_id = cloud.add(DATA, THUMB)
    item = _item(media_id, DATA, thumb=THUMB)
    first, again, same = _station(rctx, cloud, item, ("GET", "/thumbnail", {}), ("GET", "/thumbnail", {}),
                                  ("GET", "/thumbnail", {"if-none-match": _etag(THUMB)}))
    for r in (first, again):
        assert r.status_code == 200 and r.content == THUMB and r.headers["content-type"] == "image/jpeg"
        assert r.headers["etag"] == _etag(THUMB)
    assert same.status_code == 304
    assert len(cloud.requests) == 1  # fetched once, then served from here
    with rctx.db.session() as s:
        s.get(CachedBlob, _sha(THUMB)).last_used_at = datetime.now(UTC) - timedelta(days=2)  # type: ignore[union-attr]
    runtime_of(rctx).cache_touched.clear()
    _station(rctx, None, item, ("GET", "/thumbnail", {}))
    assert _used(rctx, _sha(THUMB)) > datetime.now(UTC) - timedelta(days=1)


def test_a_thumbnail_that_cannot_be_fetched_is_a_problem(rctx: Context, cloud: FakeCloud) -> None:
    media_id = cloud.add(DATA, THUMB)
    wrong = _item(media_id, DATA, thumb=THUMB[::-1])
    [damaged] = _station(rctx, cloud, wrong, ("GET", "/thumbnail", {}))
    assert _problem(damaged) == (503, "upstream-error", TROUBLE, "30")
    [missing] = _station(rctx, cloud, _item(cloud.add(DATA), DATA, thumb=THUMB), ("GET", "/thumbnail", {}))
    assert _problem(missing) == (404, "no-thumbnail", "This item has no preview yet.", None)
    item = _item(media_id, DATA, thumb=THUMB)
    cloud.status = 403
    [refused] = _station(rctx, cloud, item, ("GET", "/thumbnail", {}))
    assert _problem(refused) == (503, "relay-not-accepted", REFUSED, None)
    cloud.status, cloud.down = None, httpx.ConnectError
    [offline] = _station(rctx, cloud, item, ("GET", "/thumbnail", {}))
    assert _problem(offline) == (503, "upstream-offline", OFFLINE_PREVIEW, "30")
    relay, rctx.relay = rctx.relay, None
    try:
        [unlinked] = _station_unlinked(rctx, item, "/thumbnail")
        assert _problem(unlinked) == (503, "upstream-offline", OFFLINE_PREVIEW, "30")
    finally:
        rctx.relay = relay


def test_a_thumbnail_gone_between_its_fetch_and_its_answer_is_the_trouble_problem(
        rctx: Context, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    item = _item(cloud.add(DATA, THUMB), DATA, thumb=THUMB)
    real = cache.fetch_thumbnail

    async def fetched_then_evicted(ctx: Context, media_id: uuid.UUID, sha256: str) -> str:
        outcome = await real(ctx, media_id, sha256)
        ctx.blobs.delete(sha256)  # the janitor took it meanwhile
        return outcome

    monkeypatch.setattr(cache, "fetch_thumbnail", fetched_then_evicted)
    [r] = _station(rctx, cloud, item, ("GET", "/thumbnail", {}))
    assert _problem(r) == (503, "upstream-error", TROUBLE, "30")

