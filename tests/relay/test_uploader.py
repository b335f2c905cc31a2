"""The uploader's order and lanes, and writes made at the relay arriving at the cloud in order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from chairside.context import Context, build_context
from chairside.db.models import AppliedOp, AuditEvent, Change, OutboxOp, Patient
from chairside.relay import outbox
from chairside.relay.meter import RateMeter
from chairside.relay.retry import backoff_s, io_timeout
from chairside.relay.uploader import Uploader
from chairside.relay.upstream import Upstream
from chairside.settings import Settings
from tests.netem import Faults
from tests.relay.conftest import RelaySetup, on_both_clouds, sha256_of, wait_for


@pytest.fixture
def relay_ctx(tmp_path: Path) -> Context:
    settings = Settings.load(environ={}, data_dir=tmp_path / "relay", relay_upload_parallel=2)
    ctx = build_context(settings, role="relay")
    yield ctx
    ctx.db.dispose()


def _ops(ctx: Context, *specs: tuple[str, uuid.UUID]) -> list[int]:
    ids = []
    with ctx.db.session() as s:
        for kind, entity in specs:
            op = outbox.record(s, kind, entity, {"id": str(entity)}, size=10 if kind == "media.upload" else 0)
            s.flush()
            ids.append(op.id)
    return ids


@contextlib.contextmanager
def _relay_db(setup: RelaySetup) -> Iterator[Context]:
    """The running relay's database, read beside it."""
    rctx = build_context(Settings.load(environ={}, data_dir=setup.relay.data_dir), role="relay", upgrade=False)
    try:
        yield rctx
    finally:
        rctx.db.dispose()


def _done(ctx: Context, op_id: int) -> None:
    from chairside.db.models import utcnow
    with ctx.db.session() as s:
        row = s.get(OutboxOp, op_id)
        assert row is not None
        row.done_at = utcnow()


def test_plan_keeps_the_order_rules(relay_ctx: Context) -> None:
    async def go() -> None:
        up = Upstream("http://127.0.0.1:9", "cs_rl_x")
        u = Uploader(relay_ctx, up)
        p, m1, m2, m3, m4 = (uuid.uuid4() for _ in range(5))
        a, b, c, d, e, f, g = _ops(relay_ctx, ("media.upload", m1), ("patient.create", p), ("media.upload", m2),
                                   ("media.upload", m3), ("media.trash", m2), ("media.upload", m4),
                                   ("media.upload", m1))
        # the first media op, and the patient op (not blocked by a media op of another entity); the
        # media after the patient op wait for it
        assert [i for i, _ in u._plan()] == [a, b]
        u.running = {a: asyncio.get_running_loop().create_future(), b: asyncio.get_running_loop().create_future()}
        u._kinds = {a: "media.upload", b: "patient.create"}
        assert u._plan() == []  # both lanes busy or blocked
        _done(relay_ctx, b)
        u.running.pop(b)
        # patient done: m2 and m3 may go, but only one more beside m1 (parallel 2); the trash of m2
        # waits for m2's upload and holds back everything after it
        assert [i for i, _ in u._plan()] == [c]
        u.running.pop(a)
        assert [i for i, _ in u._plan()] == [a, c]  # m1 again first, then m2 (m3 over the limit)
        _done(relay_ctx, a)
        _done(relay_ctx, c)
        u.running.clear()
        assert [i for i, _ in u._plan()] == [d, e]  # the trash of m2 may go now, beside m3
        _done(relay_ctx, d)
        _done(relay_ctx, e)
        assert [i for i, _ in u._plan()] == [f, g]  # m1's second op waited for its first

    asyncio.run(go())


def test_backoff_and_timeouts() -> None:
    assert [backoff_s(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert backoff_s(40) == 60.0
    assert io_timeout(60.0) == 30.0 and io_timeout(1.0) == 10.0 and io_timeout(1e6) == 60.0
    t = [0.0]
    meter = RateMeter(10.0, clock=lambda: t[0])
    for _ in range(20):
        t[0] += 1.0
        meter.add(1_000_000)
    assert meter.rate() == pytest.approx(1_000_000, rel=0.11)


@on_both_clouds
def test_writes_at_the_relay_reach_the_cloud_in_order(make_relay, big_clips: list[Path]) -> None:
    """A patient registered at the relay, a recording for them, then its trash: all while offline;
    when the line returns the cloud gets them in that order (the media needs the patient)."""
    setup: RelaySetup = make_relay(faults=Faults(rate_bps=40e6))
    cloud = setup.cloud
    setup.wan.outage(True)
    with setup.station() as station:
        patient = station.create_patient(cloud.clinic_id, "R-0001", "佐藤 花子", "サトウ ハナコ", sex="female")
        kept = station.upload(big_clips[4], patient["id"])
        trashed = station.upload(big_clips[5], patient["id"])
        station.trash(trashed["id"])
    assert setup.status()["pending_items"] == 4
    setup.wan.outage(False)
    st = setup.drained(timeout=180)
    assert st["failed_items"] == 0, st["failures"]
    with cloud.client() as c:
        assert c.get_patient(patient["id"])["chart_no"] == "R-0001"
        items = c.list_media(patient["id"])
    assert [m["id"] for m in items] == [kept["id"]]
    assert items[0]["sha256"] == sha256_of(big_clips[4])
    gone = cloud.media(trashed["id"])
    assert gone is not None and gone["deleted_at"] is not None and gone["sha256"] == sha256_of(big_clips[5])
    # each of the relay's writes (the uploads go by tus) applied once, under the op_id the relay made
    with _relay_db(setup) as rctx, rctx.db.read() as s:
        sent = set(s.scalars(select(OutboxOp.op_id).where(OutboxOp.kind != "media.upload")))
    with cloud.ctx.db.read() as s:
        applied = s.execute(select(AppliedOp.op_id, AppliedOp.kind)
                            .where(AppliedOp.contract_id == cloud.contract_id)).all()
    assert sorted(kind for _, kind in applied) == ["media.trash", "patient.create"]
    assert {op_id for op_id, _ in applied} == sent


@on_both_clouds
def test_a_write_whose_answer_is_lost_is_sent_again_and_applied_once(make_relay) -> None:
    """The cloud applies a write made at the relay, and its answer is lost on the line: the relay sends the op
    again, and the cloud answers it from its applied_ops row without applying it twice."""
    setup: RelaySetup = make_relay(faults=Faults(latency_s=1.0))  # an answer spends a second on the line
    cloud = setup.cloud
    with setup.station() as station:
        patient = station.create_patient(cloud.clinic_id, "R-0002", "鈴木 一郎", "スズキ イチロウ", sex="male")
    patient_id = uuid.UUID(patient["id"])

    def applied() -> uuid.UUID | None:
        with cloud.ctx.db.read() as s:
            return s.scalar(select(AppliedOp.op_id).where(AppliedOp.contract_id == cloud.contract_id))

    op_id = wait_for(applied, "the cloud to apply the relay's patient.create", timeout=60, every=0.01)
    setup.wan.reset_connections()  # the answer, still on the line, is lost
    st = setup.drained(timeout=60)
    assert st["failed_items"] == 0, st["failures"]
    with _relay_db(setup) as rctx, rctx.db.read() as s:
        op = s.scalar(select(OutboxOp).where(OutboxOp.entity_id == patient_id))
        assert op is not None and op.op_id == op_id and op.done_at is not None
        assert op.attempts >= 1, "the answer was not lost: the op was not sent again"
    with cloud.ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(AppliedOp).where(
            AppliedOp.contract_id == cloud.contract_id)) == 1
        assert s.scalar(select(func.count()).select_from(Patient).where(Patient.chart_no == "R-0002")) == 1
        assert s.scalar(select(func.count()).select_from(Change).where(Change.entity_id == patient_id)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.patient_id == patient_id, AuditEvent.actor_kind == "relay")) == 1


def test_parallel_transfers_and_the_bandwidth_cap(make_relay, big_clips: list[Path]) -> None:
    """Queued offline, three files drain with at most two at once, at no more than the cap."""
    from chairside.db.models import Upload
    cap_bps = 8e6
    setup: RelaySetup = make_relay(env={"CHAIRSIDE_RELAY_BANDWIDTH": "8M", "CHAIRSIDE_RELAY_UPLOAD_PARALLEL": "2"})
    cloud = setup.cloud
    setup.wan.outage(True)
    clips = big_clips[1:4]
    with setup.station() as station:
        for clip in clips:
            station.upload(clip, cloud.patient_id)
    import time

    setup.wan.outage(False)
    started = time.monotonic()
    most = 0
    rates = []
    while True:
        with cloud.ctx.db.read() as s:
            busy = s.scalar(select(func.count()).select_from(Upload).where(
                Upload.completed_at.is_(None), Upload.offset > 0))
        most = max(most, int(busy or 0))
        st = setup.status()
        rates.append(st["upload_rate_bps"])
        if st["pending_items"] == 0:
            break
        assert time.monotonic() - started < 180, "did not drain"
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    total = sum(p.stat().st_size for p in clips)
    assert most <= 2
    assert st["bandwidth_cap_bps"] == cap_bps
    # the computed average rate may not exceed the cap (generous: burst and rounding)
    assert total * 8 / elapsed <= cap_bps * 1.25, (total, elapsed)
    assert max(rates) <= cap_bps * 1.5
