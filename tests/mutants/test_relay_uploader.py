"""The relay's uploader (relay/uploader.py) as a scheduler, decision by decision: what it takes from its
settings, when an op is due (its backoff over, or the cloud back after a cut of the line), which ops may start
together, how each way a try ends is written to the op (done, retried later with backoff and jitter, failed for
good), what a non-media op sends and what the cloud's result changes at the relay, and the loop itself.

Written for a mutmut run over relay/uploader.py (docs/testing.md, "Mutation testing"): the relay tests drive the
uploader through a real relay and cloud and look at the outcome (drained, failed, in order), rarely at the
attempts, the next try or the reason written.

Over a real relay database (SQLite); the cloud's `POST /api/v1/relay/ops` is an `httpx.MockTransport` with the
cloud's answers (problem+json). The media lane's transfer is relay/sender.py's (tests/mutants/test_relay_sender.py):
where only the uploader's handling of a transfer's outcome is at stake, `Sender.send` is replaced by one that
ends so. The jitter of the backoff is fixed (its bounds are recorded), so the next try is known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from chairside.context import Context, build_context
from chairside.db.models import OutboxOp, utcnow
from chairside.relay import outbox, queue, viewer
from chairside.relay import uploader as uploader_module
from chairside.relay.queue import Op
from chairside.relay.retry import Refused, Retry
from chairside.relay.sender import PIECE, Cut
from chairside.relay.uploader import Uploader
from chairside.relay.upstream import Upstream
from chairside.settings import Settings
from tests.factories import outbox_row, problem_response

CLOUD = "http://cloud.test"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def empty_relay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A relay's migrated database, made once for the module and copied for each test."""
    data_dir = tmp_path_factory.mktemp("relay") / "relay"
    build_context(Settings.load(environ={}, data_dir=data_dir), role="relay").db.dispose()
    return data_dir


@pytest.fixture
def make_ctx(empty_relay: Path, tmp_path: Path) -> Iterator[Callable[..., Context]]:
    made: list[Context] = []

    def make(**settings: Any) -> Context:
        data_dir = tmp_path / f"relay{len(made)}"
        shutil.copytree(empty_relay, data_dir)
        ctx = build_context(Settings.load(environ={}, data_dir=data_dir, **settings), role="relay", upgrade=False)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.db.dispose()


@pytest.fixture
def ctx(make_ctx: Callable[..., Context]) -> Context:
    return make_ctx(relay_upload_parallel=2)


@pytest.fixture
def jitter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """The backoff's jitter fixed at its top (×1.2); the bounds asked for are recorded."""
    asked: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        asked.append((a, b))
        return b

    monkeypatch.setattr(uploader_module, "random", types.SimpleNamespace(uniform=uniform))
    return asked


class Seen(Upstream):
    """The relay's link to the cloud, counting the answers it is told of."""

    contacts = 0

    def contact(self) -> None:
        self.contacts += 1
        super().contact()


def _uploader(ctx: Context, handler: Handler | None = None) -> Uploader:
    u = Uploader(ctx, Seen(CLOUD, "cs_rl_test"))
    u._client = httpx.AsyncClient(base_url=CLOUD, transport=httpx.MockTransport(handler or _never))
    return u


def _never(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request was expected: {request.method} {request.url}")


def _op(ctx: Context, kind: str, entity: uuid.UUID | None = None, body: dict[str, Any] | None = None) -> int:
    entity = entity or uuid.uuid4()
    with ctx.db.session() as s:
        if body is None:
            body = {"id": str(entity), "sha256": "ab" * 32} if kind == "media.upload" else {"id": str(entity)}
        op = outbox.record(s, kind, entity, body, size=100 if kind == "media.upload" else 0)
        s.flush()
        return op.id


def _later(ctx: Context, op_id: int, seconds: float = 60.0) -> None:
    """The op failed once and waits `seconds` for its next try."""
    op = queue.load(ctx, op_id)
    assert op is not None
    queue.mark_retry(ctx, op, "the cloud answered 503: later", 1, seconds)


def _try(u: Uploader, op_id: int, kind: str) -> None:
    """One try of an op, as the uploader's loop starts it."""
    async def go() -> None:
        try:
            await u._run_op(op_id, kind)
        finally:
            await u.client.aclose()

    asyncio.run(go())


def _sending(u: Uploader, outcome: BaseException | None) -> list[Op]:
    """The media lane's transfer replaced by one that ends with `outcome` (or marks the op done)."""
    sent: list[Op] = []

    async def send(client: httpx.AsyncClient, op: Op) -> None:
        assert client is u.client  # the uploader's one client to the cloud
        sent.append(op)
        if outcome is not None:
            raise outcome
        await asyncio.to_thread(queue.mark_done, u.ctx, op)

    u.sender.send = send  # type: ignore[method-assign]
    return sent


# --- settings -------------------------------------------------------------------------------------------------

def test_the_uploader_meters_what_its_sender_sends(ctx: Context) -> None:
    u = _uploader(ctx)
    assert u.sender.meter is u.meter and u.meter is not None and u.sent_bytes == 0
    asyncio.run(u.client.aclose())


def test_the_uploader_takes_its_settings(make_ctx: Callable[..., Context]) -> None:
    ctx = make_ctx(relay_upload_parallel=0, relay_offline_after_s=50.0, relay_upload_chunk_bytes=1000,
                   relay_bandwidth="10M")
    up = Upstream(CLOUD, "cs_rl_test")
    u = Uploader(ctx, up, chunk_checksums=True)
    assert u.parallel == 1  # never less than one transfer
    assert u.timeout == 25.0  # half the offline time (relay/retry.py io_timeout)
    assert u.throttle.rate_bps == 10e6
    assert (u.sender.ctx, u.sender.up, u.sender.throttle, u.sender.meter) == (ctx, up, u.throttle, u.meter)
    assert u.sender.chunk == PIECE and u.sender.chunk_checksums is True
    assert u.running == {} and u._transport_failed == {} and not u.wake.is_set()
    u.sender.sent_bytes = 12345
    assert u.sent_bytes == 12345
    with pytest.raises(AssertionError, match=r"Uploader\.run"):
        _ = u.client

    u = Uploader(make_ctx(relay_upload_parallel=3, relay_upload_chunk_bytes=PIECE * 3), up)
    assert u.parallel == 3 and u.sender.chunk == PIECE * 3 and u.sender.chunk_checksums is False
    assert u.throttle.rate_bps is None


# --- due, and the plan --------------------------------------------------------------------------------------------

def test_an_op_is_due_when_its_wait_is_over_or_the_cloud_answered_since_its_cut(ctx: Context) -> None:
    u = _uploader(ctx)
    now = utcnow()
    assert u._due(1, None, now) is True
    assert u._due(1, now, now) is True
    assert u._due(1, now - timedelta(seconds=1), now) is True
    assert u._due(1, now + timedelta(seconds=1), now) is False
    u._transport_failed[1] = 1000.0
    u.up.last_contact = 1000.0
    assert u._due(1, now + timedelta(seconds=30), now) is False  # no answer since the cut
    u.up.last_contact = 1000.5
    assert u._due(1, now + timedelta(seconds=30), now) is True  # the cloud answered since: at once
    assert u._due(2, now + timedelta(seconds=30), now) is False  # an op the cloud refused: its backoff holds


def test_an_op_not_yet_due_waits_and_a_waiting_non_media_op_holds_back_what_follows(
        make_ctx: Callable[..., Context]) -> None:
    ctx = make_ctx(relay_upload_parallel=1)
    u = _uploader(ctx)
    m1, m2 = uuid.uuid4(), uuid.uuid4()
    a = _op(ctx, "media.upload", m1)
    b = _op(ctx, "media.upload", m2)
    _op(ctx, "media.trash", m1)
    _op(ctx, "media.upload")
    _later(ctx, a)
    # a waits (and takes no transfer slot); b goes; the trash of m1 waits for m1's upload and holds the rest
    assert u._plan() == [(b, "media.upload")]
    ctx2 = make_ctx(relay_upload_parallel=1)
    u = _uploader(ctx2)
    p = _op(ctx2, "patient.update")
    _op(ctx2, "media.upload")
    _later(ctx2, p)
    assert u._plan() == []  # a patient op waiting for its next try holds back everything after it
    assert u._plan(queue.pending(ctx2)) == []


@pytest.mark.parametrize("kind", ["media.upload", "patient.update"])
def test_an_op_cut_off_starts_at_once_when_the_cloud_answers_again(ctx: Context, kind: str) -> None:
    """Planned, not only `_due`: its wait is not over, but the cloud answered since its cut."""
    u = _uploader(ctx)
    op_id = _op(ctx, kind)
    _later(ctx, op_id)
    assert u._plan() == []
    u._transport_failed[op_id] = time.time() - 5
    u.up.last_contact = time.time()
    assert u._plan() == [(op_id, kind)]
    asyncio.run(u.client.aclose())


def test_only_media_transfers_count_against_the_parallel_limit(ctx: Context) -> None:
    async def go() -> None:
        u = _uploader(ctx)
        a = _op(ctx, "media.upload")
        b = _op(ctx, "media.upload")
        c = _op(ctx, "media.upload")
        loop = asyncio.get_running_loop()
        u.running = {a: loop.create_future(), 999: loop.create_future()}  # type: ignore[dict-item]
        u._kinds = {a: "media.upload", 999: "session.signin"}  # a finished non-media op's task, say
        assert u._plan() == [(b, "media.upload")]
        u._finished(a)
        assert a not in u.running and a not in u._kinds and 999 in u.running and u.wake.is_set()
        assert u._plan() == [(a, "media.upload"), (b, "media.upload")]
        assert c not in [i for i, _ in u._plan()]
        # The media lane full: a later non-media op still starts (the full lane skips, it does not stop the plan).
        u.running[b] = loop.create_future()  # type: ignore[assignment]
        u._kinds[b] = "media.upload"
        u.parallel = 1
        p = _op(ctx, "patient.create")
        assert u._plan() == [(p, "patient.create")]
        await u.client.aclose()

    asyncio.run(go())


# --- how a try ends -----------------------------------------------------------------------------------------------

def test_a_non_media_op_is_posted_and_done(ctx: Context) -> None:
    seen: list[dict[str, Any]] = []

    def cloud(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/api/v1/relay/ops")
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"result": {}})

    entity = uuid.uuid4()
    op_id = _op(ctx, "patient.update", entity, {"id": str(entity), "fields": {"name": "山田 花子"}})
    _later(ctx, op_id, 0.0)
    u = _uploader(ctx, cloud)
    u._transport_failed[op_id] = 1.0
    _try(u, op_id, "patient.update")
    row = outbox_row(ctx, op_id)
    assert seen == [{"op_id": str(row.op_id), "kind": "patient.update",
                     "body": {"id": str(entity), "fields": {"name": "山田 花子"}}}]
    assert row.done_at is not None and row.last_error is None and row.next_try_at is None
    assert op_id not in u._transport_failed  # done: no longer waiting for the line
    assert isinstance(u.up, Seen) and u.up.contacts == 1


def test_a_finished_op_is_not_tried_again(ctx: Context) -> None:
    op_id = _op(ctx, "patient.update")
    op = queue.load(ctx, op_id)
    assert op is not None
    queue.mark_done(ctx, op)
    _try(_uploader(ctx), op_id, "patient.update")  # no request (the cloud here fails the test on any)
    assert outbox_row(ctx, op_id).attempts == 0


def test_a_404_is_retried_with_the_reason_it_may_be_early(ctx: Context, jitter: list[tuple[float, float]],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chairside.relay.uploader")
    op_id = _op(ctx, "patient.update")
    u = _uploader(ctx, lambda request: problem_response(404, "No such patient.", "not-found"))
    before = utcnow()
    _try(u, op_id, "patient.update")
    after = utcnow()
    row = outbox_row(ctx, op_id)
    assert row.last_error == ("the cloud answered 404: No such patient. (not-found) "
                              "(an earlier change may not have reached the cloud yet)")
    assert row.attempts == 1 and row.failed_at is None and row.done_at is None
    assert jitter == [(0.8, 1.2)]
    assert row.next_try_at is not None
    assert before + timedelta(seconds=0.25 * 1.2) <= row.next_try_at <= after + timedelta(seconds=0.25 * 1.2)
    assert op_id not in u._transport_failed  # the cloud answered: not a cut of the line
    # What the relay's log says (its operator reads it): the op, its kind, why, and when it is tried again.
    assert [r.getMessage() for r in caplog.records if r.name == "chairside.relay.uploader"] == [
        f"outbox op {op_id} (patient.update): the cloud answered 404: No such patient. (not-found) (an earlier "
        "change may not have reached the cloud yet); next try in 0.3 s"]


def test_each_retry_doubles_the_wait(ctx: Context, jitter: list[tuple[float, float]]) -> None:
    op_id = _op(ctx, "patient.update")
    with ctx.db.session() as s:
        row = s.get(OutboxOp, op_id)
        assert row is not None
        row.attempts = 3
    u = _uploader(ctx, lambda request: problem_response(503, "メンテナンス中", "maintenance"))
    u._transport_failed[op_id] = 1.0  # cut before; now the cloud answers
    before = utcnow()
    _try(u, op_id, "patient.update")
    row = outbox_row(ctx, op_id)
    assert row.attempts == 4 and row.last_error == "the cloud answered 503: メンテナンス中 (maintenance)"
    assert row.next_try_at is not None and row.next_try_at >= before + timedelta(seconds=2.0 * 1.2)
    assert op_id not in u._transport_failed


def test_a_refusal_ends_the_op_failed_with_the_clouds_message(ctx: Context) -> None:
    op_id = _op(ctx, "patient.update")
    _try(_uploader(ctx, lambda request: problem_response(422, "名前が空です", "invalid")), op_id, "patient.update")
    row = outbox_row(ctx, op_id)
    assert row.failed_at is not None and row.done_at is None and row.attempts == 1
    assert row.last_error == "the cloud answered 422: 名前が空です (invalid)"


def test_an_unreachable_cloud_is_retried_and_remembered_as_a_cut(ctx: Context,
                                                                 jitter: list[tuple[float, float]]) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    op_id = _op(ctx, "patient.update")
    u = _uploader(ctx, down)
    before = time.time()
    _try(u, op_id, "patient.update")
    row = outbox_row(ctx, op_id)
    assert row.last_error == "cannot reach the cloud (ConnectError: connection refused)"
    assert u.up.last_error == row.last_error
    assert row.attempts == 1 and row.failed_at is None
    assert before <= u._transport_failed[op_id] <= time.time()


@pytest.mark.parametrize("progressed", [False, True])
def test_a_cut_transfer_is_retried_and_its_backoff_starts_over_if_bytes_went_through(
        ctx: Context, jitter: list[tuple[float, float]], progressed: bool) -> None:
    op_id = _op(ctx, "media.upload")
    with ctx.db.session() as s:
        row = s.get(OutboxOp, op_id)
        assert row is not None
        row.attempts = 5
    u = _uploader(ctx)
    _sending(u, Cut(httpx.WriteError("the line broke"), progressed=progressed))
    before = time.time()
    _try(u, op_id, "media.upload")
    row = outbox_row(ctx, op_id)
    assert row.attempts == (1 if progressed else 6)
    assert row.last_error == "cannot reach the cloud (WriteError: the line broke)"
    assert before <= u._transport_failed[op_id]


def test_a_transfers_outcomes(ctx: Context, jitter: list[tuple[float, float]],
                              caplog: pytest.LogCaptureFixture) -> None:
    u = _uploader(ctx)
    refused, retried, odd, down, done = (_op(ctx, "media.upload") for _ in range(5))
    _sending(u, Refused("the cloud holds other bytes"))
    _try(u, refused, "media.upload")
    assert outbox_row(ctx, refused).failed_at is not None
    assert outbox_row(ctx, refused).last_error == "the cloud holds other bytes"
    entity = outbox_row(ctx, refused).entity_id
    assert f"outbox op {refused} (media.upload {entity}) refused by the cloud: the cloud holds other bytes" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    u = _uploader(ctx)
    cut = _op(ctx, "media.upload")
    _sending(u, Retry("the cloud's line broke mid-answer", transport=True))
    _try(u, cut, "media.upload")
    assert cut in u._transport_failed  # a Retry for the line is remembered as a cut

    u = _uploader(ctx)
    u._transport_failed[retried] = 1.0
    _sending(u, Retry("stored at the cloud; waiting until its mirror site has verified it too"))
    _try(u, retried, "media.upload")
    assert (outbox_row(ctx, retried).attempts, outbox_row(ctx, retried).last_error) == (
        1, "stored at the cloud; waiting until its mirror site has verified it too")
    assert retried not in u._transport_failed

    u = _uploader(ctx)
    u._transport_failed[odd] = 1.0
    _sending(u, ValueError("boom"))
    _try(u, odd, "media.upload")
    assert (outbox_row(ctx, odd).attempts, outbox_row(ctx, odd).last_error) == (
        1, "unexpected error at the relay: ValueError: boom")
    assert odd not in u._transport_failed and outbox_row(ctx, odd).failed_at is None
    assert f"outbox op {odd} failed unexpectedly" in [r.getMessage() for r in caplog.records if r.exc_info]
    _try(u, odd, "media.upload")  # again: its attempts count on (an unexpected error moved no bytes)
    assert outbox_row(ctx, odd).attempts == 2

    u = _uploader(ctx)
    _sending(u, httpx.ReadTimeout("slow"))
    _try(u, down, "media.upload")
    assert outbox_row(ctx, down).last_error == "cannot reach the cloud (ReadTimeout: slow)"
    assert down in u._transport_failed
    _try(u, down, "media.upload")  # again: a timeout moved no bytes, so the backoff goes on
    assert outbox_row(ctx, down).attempts == 2

    u = _uploader(ctx)
    u._transport_failed[done] = 1.0
    sent = _sending(u, None)
    _try(u, done, "media.upload")
    assert [op.id for op in sent] == [done] and outbox_row(ctx, done).done_at is not None
    assert done not in u._transport_failed


def test_a_cancelled_try_writes_nothing(ctx: Context) -> None:
    op_id = _op(ctx, "media.upload")
    u = _uploader(ctx)
    _sending(u, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        _try(u, op_id, "media.upload")
    row = outbox_row(ctx, op_id)
    assert (row.attempts, row.last_error, row.next_try_at, row.failed_at, row.done_at) == (0, None, None, None, None)


# --- what the cloud's result changes at the relay ---------------------------------------------------------------

def test_the_clouds_result_goes_to_the_viewer_for_sign_ins_and_moves(ctx: Context,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def record(what: str) -> Callable[[Session, dict[str, Any], dict[str, Any]], None]:
        def call(s: Session, body: dict[str, Any], result: dict[str, Any]) -> None:
            assert isinstance(s, Session)  # written in the relay's own transaction
            calls.append((what, body, result))
        return call

    monkeypatch.setattr(viewer, "superseded", record("superseded"))
    monkeypatch.setattr(viewer, "moved", record("moved"))
    results = {"session.signin": {"result": {"superseded_by": {"device_name": "受付 PC"}}},
               "media.move": {"result": {"patient_id": "p2"}}, "media.tags": {"result": {"x": 1}}}

    def cloud(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=results[json.loads(request.content)["kind"]])

    signin = _op(ctx, "session.signin", body={"session_id": "s1"})
    move = _op(ctx, "media.move", body={"id": "m1", "patient_id": "p1"})
    tags = _op(ctx, "media.tags", body={"id": "m1", "tags": []})
    for op_id, kind in ((signin, "session.signin"), (move, "media.move"), (tags, "media.tags")):
        _try(_uploader(ctx, cloud), op_id, kind)
    assert calls == [("superseded", {"session_id": "s1"}, {"superseded_by": {"device_name": "受付 PC"}}),
                     ("moved", {"id": "m1", "patient_id": "p1"}, {"patient_id": "p2"})]
    assert all(outbox_row(ctx, i).done_at is not None for i in (signin, move, tags))

    calls.clear()
    results["session.signin"] = {}
    results["media.move"] = {"result": None}
    again = _op(ctx, "session.signin", body={"session_id": "s2"})
    moved = _op(ctx, "media.move", body={"id": "m2"})
    _try(_uploader(ctx, cloud), again, "session.signin")
    _try(_uploader(ctx, cloud), moved, "media.move")
    assert calls == [("superseded", {"session_id": "s2"}, {}), ("moved", {"id": "m2"}, {})]


# --- the loop -----------------------------------------------------------------------------------------------------

def test_the_loop_carries_the_outbox_in_order_and_cancels_its_transfers_when_stopped(
        ctx: Context, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    order: list[str] = []

    def cloud(request: httpx.Request) -> httpx.Response:
        order.append(json.loads(request.content)["kind"])
        return httpx.Response(200, json={"result": {}})

    p = _op(ctx, "patient.create")
    m = _op(ctx, "media.upload")
    hold = _op(ctx, "media.upload")
    u = Uploader(ctx, Upstream(CLOUD, "cs_rl_test"))
    clients: list[httpx.AsyncClient] = []

    def client(*, timeout: float) -> httpx.AsyncClient:
        assert timeout == u.timeout
        clients.append(httpx.AsyncClient(base_url=CLOUD, transport=httpx.MockTransport(cloud)))
        return clients[-1]

    monkeypatch.setattr(u.up, "async_client", client)
    held, m_done = asyncio.Event(), asyncio.Event()
    cancelled: list[int] = []

    async def send(client: httpx.AsyncClient, op: Op) -> None:
        order.append(f"media {op.id}")
        if op.id == hold:
            held.set()
            try:
                await asyncio.Event().wait()  # a transfer still running when the uploader stops
            except asyncio.CancelledError:
                cancelled.append(op.id)
                # A clean-up that fails as the relay stops: the stop still ends as a cancel, not a crash.
                raise RuntimeError("the transfer's clean-up failed") from None
        await asyncio.to_thread(queue.mark_done, ctx, op)
        m_done.set()

    u.sender.send = send  # type: ignore[method-assign]
    reads = {"n": 0}
    pending = u._pending

    def flaky() -> list[Any]:
        reads["n"] += 1
        if reads["n"] == 1:
            raise RuntimeError("database is locked")  # looked at again on the next round
        return pending()

    monkeypatch.setattr(u, "_pending", flaky)

    async def go() -> None:
        loop = asyncio.create_task(u.run())
        await asyncio.wait_for(asyncio.gather(held.wait(), m_done.wait()), 30)
        running = dict(u.running)
        assert running[hold].get_name() == f"outbox-{hold}" and u._kinds[hold] == "media.upload"
        loop.cancel()  # as the wake is set (the transfer of m just ended): the cancel must not be lost
        done, _ = await asyncio.wait({loop}, timeout=10)
        if not done:
            loop.cancel()
        assert done, "the uploader's loop ran on after it was cancelled"
        assert loop.cancelled()
        assert all(task.done() for task in running.values())  # every transfer ended before the loop did
        assert m not in u.running and m not in u._kinds  # a finished transfer leaves the books at once
        await clients[0].aclose()

    asyncio.run(go())
    assert order[0] == "patient.create" and sorted(order[1:]) == sorted([f"media {m}", f"media {hold}"])
    assert outbox_row(ctx, p).done_at is not None and outbox_row(ctx, m).done_at is not None
    assert cancelled == [hold] and outbox_row(ctx, hold).done_at is None
    assert reads["n"] >= 2
    failed = [r for r in caplog.records if r.name == "chairside.relay.uploader" and r.exc_info
              and "database is locked" in str(r.exc_info[1])]
    assert [r.getMessage() for r in failed] == ["uploader: reading the outbox failed"]
