"""The relay's paths that had no test (issue 15): the uploader's refusal lanes and its give-up after long 423s,
prefetch `all`, and the cache janitor while uploads are pending.

The refusal lanes drive the real Uploader and Sender over a real relay database and blob store; the cloud's
answers come from an emulated cloud behind `httpx.MockTransport` (the WAN boundary): the problem+json bodies
the real cloud sends for each case (the cloud's own tests prove it sends them). The clock of the 423 give-up is
emulated too (ten minutes are not waited). Prefetch `all` runs against a real cloud on loopback.
"""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.context import Context, build_context
from chairside.db.models import CachedBlob, Media, OutboxOp
from chairside.media.ingest import queue_upload
from chairside.relay import cache, outbox, queue
from chairside.relay import sender as sender_mod
from chairside.relay.prefetch import Prefetcher, Wanted
from chairside.relay.runtime import runtime_of
from chairside.relay.uploader import Uploader
from chairside.relay.upstream import Upstream
from chairside.settings import Settings
from tests.factories import make_patient, make_tenant, outbox_row, problem_response
from tests.relay.follow_fixtures import Cloud, catch_up, cloud, relay_context  # noqa: F401

CLOUD = "http://cloud.test"
DATA = b"a recording at the chair " * 4000  # ~100 kB: a few PATCHes of the smallest chunk
SHA = hashlib.sha256(DATA).hexdigest()
GIVE_UP_S = 600.0  # documented in relay/sender.py and docs/relay.md: 423 for 10 minutes, then a new upload
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def relay_ctx(tmp_path: Path) -> Iterator[Context]:
    settings = Settings.load(environ={}, data_dir=tmp_path / "relay", relay_upload_parallel=1,
                             relay_upload_chunk_bytes=64 * 1024)
    ctx = build_context(settings, role="relay")
    yield ctx
    ctx.db.dispose()


def _media_op(ctx: Context, *, url: str | None = None) -> int:
    """A recording held at the relay, and its media.upload op (body as media/ingest.py writes it)."""
    ctx.blobs.put_stream(SHA, [DATA])
    entity = uuid.uuid4()
    body = {"id": str(entity), "patient_id": str(uuid.uuid4()), "sha256": SHA, "size": len(DATA),
            "filename": "chair.mp4", "captured_at": datetime.now(UTC).isoformat(), "station_id": None,
            "kind": "video", "duration_ms": 1000}
    with ctx.db.session() as s:
        op = outbox.record(s, "media.upload", entity, body, size=len(DATA))
        s.flush()
        op.upstream_url = url
        return op.id


def _patient_op(ctx: Context) -> int:
    with ctx.db.session() as s:
        op = outbox.record(s, "patient.create", uuid.uuid4(), {"chart_no": "R-1"})
        s.flush()
        return op.id


def _uploader(ctx: Context, handler: Handler) -> Uploader:
    u = Uploader(ctx, Upstream(CLOUD, "cs_rl_test"))
    u._client = httpx.AsyncClient(base_url=CLOUD, transport=httpx.MockTransport(handler))
    return u


async def _run(u: Uploader, op_id: int, kind: str) -> None:
    """One try of an op, as the uploader's loop starts it."""
    await u._run_op(op_id, kind)


# --- refusals for good: never retried, failed with the cloud's reason --------------------------------------

REFUSALS = [
    # (where the cloud refuses, status, code, detail)
    ("create", 409, "media-id-conflict", "この ID のメディアは別の内容で登録済みです / another item holds this id"),
    ("create", 413, "too-large", "ファイルが大きすぎます / the file is larger than the limit"),
    ("patch", 415, None, "Content-Type が違います / wrong content type"),
    ("create", 422, "bad-metadata", "撮影日時が読めません / captured_at is not a date"),
]


@pytest.mark.parametrize(("where", "status", "code", "detail"), REFUSALS,
                         ids=[f"{w}-{s}" for w, s, _, _ in REFUSALS])
def test_a_refusal_for_good_is_never_retried_and_ends_failed_with_the_clouds_reason(
        relay_ctx: Context, where: str, status: int, code: str | None, detail: str) -> None:
    calls: list[str] = []

    def cloud_(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "GET" and request.url.path.startswith("/api/v1/media/"):
            return problem_response(404, "not found")
        if request.method == "POST" and request.url.path == "/api/v1/uploads/":
            if where == "create":
                return problem_response(status, detail, code)
            return httpx.Response(201, headers={"Location": "/api/v1/uploads/u1", "Tus-Resumable": "1.0.0"})
        if request.method == "PATCH":
            return problem_response(status, detail, code)
        raise AssertionError(f"unexpected {request.method} {request.url}")

    op_id = _media_op(relay_ctx)

    async def go() -> None:
        u = _uploader(relay_ctx, cloud_)
        try:
            await _run(u, op_id, "media.upload")
            first = list(calls)
            # the op is out of the queue: the uploader's plan never starts it again, and a second try is a no-op
            assert u._plan() == []
            await _run(u, op_id, "media.upload")
            assert calls == first
        finally:
            await u.client.aclose()

    asyncio.run(go())
    row = outbox_row(relay_ctx, op_id)
    assert row.failed_at is not None and row.done_at is None and row.next_try_at is None
    assert row.last_error is not None and str(status) in row.last_error and detail in row.last_error
    assert row.attempts == 1
    # one request for the refusal itself: nothing was tried twice
    refused = "POST /api/v1/uploads/" if where == "create" else "PATCH /api/v1/uploads/u1"
    assert calls.count(refused) == 1
    st = queue.status_figures(relay_ctx)
    assert st["failed_items"] == 1 and st["pending_items"] == 0
    assert st["failures"][0]["error"] == row.last_error


def test_a_write_refused_with_422_ends_failed_and_a_503_is_retried(relay_ctx: Context) -> None:
    """The other lane (relay/ops): 422 is for good, 503 is tried again later, with backoff."""
    answers = {"now": problem_response(422, "カルテ番号が空です / chart number is empty", "invalid")}
    calls: list[str] = []

    def cloud_(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/relay/ops"
        calls.append(request.method)
        return answers["now"]

    refused, retried = _patient_op(relay_ctx), _patient_op(relay_ctx)

    async def go() -> None:
        u = _uploader(relay_ctx, cloud_)
        try:
            await _run(u, refused, "patient.create")
            answers["now"] = problem_response(503, "メンテナンス中 / down for maintenance")
            await _run(u, retried, "patient.create")
        finally:
            await u.client.aclose()

    asyncio.run(go())
    a, b = outbox_row(relay_ctx, refused), outbox_row(relay_ctx, retried)
    assert a.failed_at is not None and a.last_error is not None and "422" in a.last_error
    assert "chart number is empty" in a.last_error
    assert b.failed_at is None and b.done_at is None and b.next_try_at is not None and b.attempts == 1
    assert b.last_error is not None and "503" in b.last_error
    assert len(calls) == 2


# --- 423 for ten minutes: a new upload from byte 0 ----------------------------------------------------------

def test_an_upload_busy_for_longer_than_the_give_up_time_starts_again_as_a_new_upload(
        relay_ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]

    async def sleep(seconds: float) -> None:  # the sender's waits pass on the emulated clock
        clock[0] += seconds
        await asyncio.sleep(0)

    monkeypatch.setattr(sender_mod, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(sender_mod, "asyncio", types.SimpleNamespace(sleep=sleep))

    calls: list[str] = []
    received: dict[str, int] = {"/api/v1/uploads/new": 0}

    def cloud_(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        calls.append(f"{request.method} {path}")
        if request.method == "HEAD":  # the stuck upload holds 40 kB, the new one what it received
            return httpx.Response(200, headers={"Upload-Offset": str(received.get(path, 40_000))})
        if request.method == "PATCH" and path == "/api/v1/uploads/stuck":
            return problem_response(423, "アップロード中です / the upload is busy", "upload-busy")
        if request.method == "POST" and path == "/api/v1/uploads/":
            return httpx.Response(201, headers={"Location": "/api/v1/uploads/new"})
        if request.method == "PATCH" and path == "/api/v1/uploads/new":
            offset = int(request.headers["Upload-Offset"])
            assert offset == received[path], "the new upload must start at byte 0 and go on in order"
            received[path] += len(request.read())
            return httpx.Response(204, headers={"Upload-Offset": str(received[path])})
        if request.method == "GET" and path.startswith("/api/v1/media/"):
            if received["/api/v1/uploads/new"] == len(DATA):
                return httpx.Response(200, json={"sha256": SHA})
            return problem_response(404, "not found")
        raise AssertionError(f"unexpected {request.method} {request.url}")

    op_id = _media_op(relay_ctx, url=CLOUD + "/api/v1/uploads/stuck")

    async def go() -> None:
        u = _uploader(relay_ctx, cloud_)
        try:
            # 423 after 423, each try retried later; within the give-up time no new upload is made
            while clock[0] - 1000.0 <= GIVE_UP_S - 60:
                await _run(u, op_id, "media.upload")
                row = outbox_row(relay_ctx, op_id)
                assert row.failed_at is None and row.done_at is None, row.last_error
                assert row.upstream_url == CLOUD + "/api/v1/uploads/stuck"
                assert row.last_error is not None and "423" in row.last_error
                clock[0] += 55.0  # the backoff, capped at 60 s
            assert "POST /api/v1/uploads/" not in calls
            clock[0] += 120.0  # past the give-up time
            await _run(u, op_id, "media.upload")
        finally:
            await u.client.aclose()

    asyncio.run(go())
    row = outbox_row(relay_ctx, op_id)
    assert row.done_at is not None and row.failed_at is None, row.last_error
    assert row.upstream_url == CLOUD + "/api/v1/uploads/new"
    assert calls.count("POST /api/v1/uploads/") == 1
    assert received["/api/v1/uploads/new"] == len(DATA)


# --- prefetch all -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["all", "thumbnails"])
def test_prefetch_all_brings_the_recording_itself_ahead_of_use_and_thumbnails_only_the_preview(
        cloud: Cloud, tmp_path: Path, media_dir: Path, mode: str) -> None:
    station = cloud.station(1)
    p = station.create_patient(cloud.clinic_ids[1], "P-1", "山本 陽子", "ヤマモト ヨウコ")
    item = station.upload(media_dir / "clip.mp4", p["id"])
    rctx = relay_context(tmp_path / "relay", cloud.url, cloud.relay_token, relay_prefetch=mode)
    try:
        catch_up(rctx)
        with rctx.db.read() as s:
            media = s.get(Media, uuid.UUID(item["id"]))
            assert media is not None and media.thumb_sha256 is not None
            wanted = Wanted(media.id, media.sha256, media.size, media.thumb_sha256)
        assert rctx.blobs.stat(wanted.sha256) is None and rctx.blobs.stat(wanted.thumb_sha256 or "") is None

        async def go() -> None:
            pre = Prefetcher(rctx)
            try:
                pre.offer([wanted])
                await pre.idle()
                downloads = list(runtime_of(rctx).cache_downloads.values())
                assert all(await asyncio.gather(*downloads))
            finally:
                await pre.close()
                await cache.close_clients(rctx)

        asyncio.run(go())
        thumb = rctx.blobs.local_path(wanted.thumb_sha256 or "")
        assert thumb is not None and hashlib.sha256(thumb.read_bytes()).hexdigest() == wanted.thumb_sha256
        whole = rctx.blobs.local_path(wanted.sha256)
        if mode == "thumbnails":
            assert whole is None
            return
        assert whole is not None and hashlib.sha256(whole.read_bytes()).hexdigest() == item["sha256"]
        with rctx.db.read() as s:
            row = s.get(CachedBlob, wanted.sha256)
            assert row is not None and row.size == item["size"] and not row.pinned  # the cloud holds it: evictable
    finally:
        rctx.db.dispose()


# --- the cache janitor while uploads are pending ------------------------------------------------------------

def test_the_janitor_never_evicts_a_blob_an_unconfirmed_upload_still_needs(relay_ctx: Context) -> None:
    """Two recordings of the same bytes wait for the cloud (the same file sent twice, or to two patients). The
    cloud confirms the first: its blobs stay pinned while the second is pending, whatever the janitor does."""
    tenant = make_tenant(relay_ctx, "医療法人 リレー歯科", clinics=1)
    patient = make_patient(relay_ctx, tenant.contract_id, tenant.clinic_ids[0])
    thumb = b"thumbnail " * 300
    thumb_sha = hashlib.sha256(thumb).hexdigest()
    relay_ctx.blobs.put_stream(SHA, [DATA])
    relay_ctx.blobs.put_stream(thumb_sha, [thumb])
    other = b"an old cached video " * 500  # confirmed long ago: the janitor may take it
    other_sha = hashlib.sha256(other).hexdigest()
    relay_ctx.blobs.put_stream(other_sha, [other])
    cache.record(relay_ctx, other_sha, len(other))
    ids = [uuid.uuid4(), uuid.uuid4()]
    with relay_ctx.db.session() as s:
        for media_id in ids:
            item = Media(id=media_id, contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0],
                         patient_id=patient.id, kind="video", mime="video/mp4", sha256=SHA, size=len(DATA),
                         filename="chair.mp4", captured_at=datetime.now(UTC), thumb_sha256=thumb_sha,
                         source="station")
            s.add(item)
            queue_upload(s, item, thumb_size=len(thumb))
    relay_ctx.settings = dataclasses.replace(relay_ctx.settings, relay_cache_bytes=0)

    def held() -> list[bool]:
        return [relay_ctx.blobs.stat(sha) is not None for sha in (SHA, thumb_sha, other_sha)]

    with relay_ctx.db.read() as s:
        first, second = (s.scalar(outbox_id_for(media_id)) for media_id in ids)
    assert cache.ensure_free(relay_ctx) == len(other)  # over the limit: only the confirmed blob goes
    assert held() == [True, True, False]
    queue.mark_done(relay_ctx, _load(relay_ctx, first))  # the cloud confirmed the first recording
    assert cache.ensure_free(relay_ctx) == 0
    assert held() == [True, True, False], "a blob the second, unconfirmed upload needs was evicted"
    queue.mark_done(relay_ctx, _load(relay_ctx, second))  # and the second: nothing holds them now
    assert cache.ensure_free(relay_ctx) == len(DATA) + len(thumb)
    assert held() == [False, False, False]


def outbox_id_for(media_id: uuid.UUID) -> Any:
    return select(OutboxOp.id).where(OutboxOp.entity_id == media_id, OutboxOp.kind == "media.upload")


def _load(ctx: Context, op_id: int | None) -> queue.Op:
    assert op_id is not None
    op = queue.load(ctx, op_id)
    assert op is not None
    return op
