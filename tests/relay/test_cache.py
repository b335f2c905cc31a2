"""The relay's blob cache: fetch on first use while streaming, Range, LRU with pins, damaged downloads, offline."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.context import Context
from chairside.db.models import CachedBlob
from chairside.mediafile import generate
from chairside.relay import cache
from chairside.relay.runtime import runtime_of
from tests.conftest import LiveServer
from tests.netem import Faults, WanProxy
from tests.relay.follow_fixtures import Cloud, RelayApi, catch_up, cloud, relay_context, wait_for  # noqa: F401

OFFLINE = ("This video is stored at another branch and the internet connection is down. It can be played once "
           "the connection is back.")


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache-media") / "big.mp4"
    generate.make_video(path, seconds=4.0, width=1280, height=720, fps=30)
    return path


@dataclasses.dataclass
class Setup:
    cloud: Cloud
    wan: WanProxy
    rctx: Context
    relay: LiveServer
    item: dict[str, Any]
    data: bytes
    down: bool = False

    def wan_down(self) -> None:
        self.wan.__exit__()
        self.down = True

    def get(self, path: str = "content", **headers: str) -> httpx.Response:
        return httpx.get(f"{self.relay.url}/api/v1/media/{self.item['id']}/{path}", timeout=60,
                         headers={"Authorization": f"Bearer {self.cloud.station_tokens[0]}", **headers})

    def cached(self) -> CachedBlob | None:
        with self.rctx.db.read() as s:
            return s.get(CachedBlob, self.item["sha256"])

    def downloads_done(self) -> bool:
        return not runtime_of(self.rctx).cache_downloads


@pytest.fixture
def setup(cloud: Cloud, tmp_path: Path, big_clip: Path) -> Iterator[Setup]:
    """A video recorded at another branch; a relay that knows of it (through the WAN) but holds no bytes yet."""
    station = cloud.station(1)
    p = station.create_patient(cloud.clinic_ids[1], "X-1", "山本 陽子", "ヤマモト ヨウコ")
    item = station.upload(big_clip, p["id"])
    wan = WanProxy(cloud.server.port, Faults(rate_bps=40e6)).__enter__()
    rctx = relay_context(tmp_path / "relay", wan.url, cloud.relay_token, relay_prefetch="none")
    setup = None
    try:
        catch_up(rctx)
        with RelayApi(rctx) as relay:
            setup = Setup(cloud, wan, rctx, relay, item, big_clip.read_bytes())
            yield setup
            wait_for(lambda: not runtime_of(rctx).cache_downloads, "downloads to end")
    finally:
        if setup is None or not setup.down:
            wan.__exit__()
        rctx.db.dispose()


def test_first_use_streams_from_the_cloud_and_caches(setup: Setup) -> None:
    assert setup.rctx.blobs.stat(setup.item["sha256"]) is None
    r = setup.get()
    assert r.status_code == 200 and r.content == setup.data
    assert r.headers["etag"] == f'"{setup.item["sha256"]}"' and r.headers["accept-ranges"] == "bytes"
    row = wait_for(setup.cached, "the video to be cached")
    assert row.size == len(setup.data) and row.pinned is False
    path = setup.rctx.blobs.local_path(setup.item["sha256"])
    assert path is not None and hashlib.sha256(path.read_bytes()).hexdigest() == setup.item["sha256"]
    setup.wan_down()  # the WAN goes down
    again = setup.get(range="bytes=1000-1999")
    assert again.status_code == 206 and again.content == setup.data[1000:2000]
    assert setup.get().content == setup.data


def test_range_requests_on_an_uncached_item_are_proxied(setup: Setup) -> None:
    size = len(setup.data)
    r = setup.get(range="bytes=100-1099")
    assert r.status_code == 206 and r.content == setup.data[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{size}" and r.headers["content-length"] == "1000"
    assert r.headers["etag"] == f'"{setup.item["sha256"]}"'
    tail = setup.get(range="bytes=-500")
    assert tail.status_code == 206 and tail.content == setup.data[-500:]
    beyond = setup.get(range=f"bytes={size}-")
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    stale = setup.get(range="bytes=0-9", **{"if-range": '"0000"'})
    assert stale.status_code == 200 and stale.content == setup.data  # If-Range mismatch: the whole file
    head = httpx.head(f"{setup.relay.url}/api/v1/media/{setup.item['id']}/content",
                      headers={"Authorization": f"Bearer {setup.cloud.station_tokens[0]}"})
    assert head.status_code == 200 and head.headers["content-length"] == str(size) and head.content == b""


def test_concurrent_first_reads_share_one_download(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    setup.wan.faults.rate_bps = 8e6  # slow enough that the four readers overlap the download
    started: list[str] = []
    real = cache._download_once

    async def counting(ctx: Context, media_id: uuid.UUID, sha256: str, size: int) -> bool:
        started.append(sha256)
        return await real(ctx, media_id, sha256, size)

    monkeypatch.setattr(cache, "_download_once", counting)
    ranges = [(0, 99_999), (200_000, 299_999), (len(setup.data) - 1000, len(setup.data) - 1), (50, 50)]
    results: dict[int, bytes] = {}

    def read(i: int, lo: int, hi: int) -> None:
        r = setup.get(range=f"bytes={lo}-{hi}")
        assert r.status_code == 206
        results[i] = r.content

    threads = [threading.Thread(target=read, args=(i, lo, hi)) for i, (lo, hi) in enumerate(ranges)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {i: results[i] for i in range(4)} == {i: setup.data[lo:hi + 1] for i, (lo, hi) in enumerate(ranges)}
    wait_for(setup.cached, "the video to be cached")
    assert started == [setup.item["sha256"]]


def test_a_damaged_download_is_never_cached(setup: Setup) -> None:
    blob = setup.cloud.ctx.blobs.local_path(setup.item["sha256"])
    assert blob is not None
    os.chmod(blob, 0o640)
    with blob.open("r+b") as f:  # one byte rots in the cloud's copy
        f.seek(len(setup.data) // 2)
        byte = f.read(1)
        f.seek(len(setup.data) // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    r = setup.get()
    assert r.status_code == 200 and len(r.content) == len(setup.data)
    wait_for(setup.downloads_done, "the download to end")
    assert setup.cached() is None and setup.rctx.blobs.stat(setup.item["sha256"]) is None


def test_offline_and_uncached_is_a_503_problem(setup: Setup) -> None:
    setup.wan_down()
    r = setup.get()
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == OFFLINE
    thumb = setup.get("thumbnail")
    assert thumb.status_code == 503 and "internet connection is down" in thumb.json()["detail"]
    assert setup.cached() is None


def test_thumbnail_is_fetched_verified_and_kept(setup: Setup) -> None:
    r = setup.get("thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    sha = hashlib.sha256(r.content).hexdigest()
    assert setup.rctx.blobs.stat(sha) is not None
    setup.wan_down()
    assert setup.get("thumbnail").content == r.content


def _put(rctx: Context, n: int, *, pinned: set[int]) -> list[str]:
    hashes = []
    start = datetime.now(UTC) - timedelta(days=1)
    for i in range(n):
        data = f"blob {i} ".encode() * 100
        sha = hashlib.sha256(data).hexdigest()
        rctx.blobs.put_stream(sha, [data])
        with rctx.db.session() as s:
            s.add(CachedBlob(sha256=sha, size=len(data), pinned=i in pinned, last_used_at=start + timedelta(hours=i)))
        hashes.append(sha)
    return hashes


def _held(rctx: Context, hashes: list[str]) -> list[int]:
    return [i for i, sha in enumerate(hashes) if rctx.blobs.stat(sha) is not None]


def test_lru_eviction_never_evicts_pinned_blobs(tmp_path: Path) -> None:
    rctx = relay_context(tmp_path / "relay", "http://127.0.0.1:9", "cs_rl_unused")
    try:
        hashes = _put(rctx, 6, pinned={0, 1})  # 0 is the least recently used; 0 and 1 are not yet at the cloud
        size = len(b"blob 0 " * 100)
        rctx.settings = dataclasses.replace(rctx.settings, relay_cache_bytes=3 * size + 10)
        cache.touch(rctx, hashes[2])  # used just now: it goes last
        assert cache.ensure_free(rctx) == 3 * size
        assert _held(rctx, hashes) == [0, 1, 2]
        stats = cache.stats(rctx)
        assert (stats["bytes"], stats["pinned_bytes"], stats["items"]) == (3 * size, 2 * size, 3)
        rctx.settings = dataclasses.replace(rctx.settings, relay_cache_bytes=0)
        cache.ensure_free(rctx)
        assert _held(rctx, hashes) == [0, 1]  # over the limit still, but pinned blobs stay
        rctx.settings = dataclasses.replace(rctx.settings, relay_cache_bytes=1 << 40,
                                            relay_min_free_bytes=cache.disk_free(rctx) * 2)
        assert cache.ensure_free(rctx) == 0 and _held(rctx, hashes) == [0, 1]
    finally:
        rctx.db.dispose()


def test_low_disk_space_trims_the_cache(tmp_path: Path) -> None:
    rctx = relay_context(tmp_path / "relay", "http://127.0.0.1:9", "cs_rl_unused")
    try:
        hashes = _put(rctx, 4, pinned={3})
        rctx.settings = dataclasses.replace(rctx.settings, relay_min_free_bytes=cache.disk_free(rctx) + (1 << 40))
        cache.ensure_free(rctx)
        assert _held(rctx, hashes) == [3]
    finally:
        rctx.db.dispose()
