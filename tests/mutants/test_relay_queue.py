"""The relay's outbox as the uploader takes and marks it (relay/queue.py), pinned write by write over a real
relay database: which ops are pending and in what order, what `load` carries, what each `mark_*` and `save_*`
writes (and that it writes only its own row), the pin rule of `mark_done` (a recording's file and thumbnail
are released only when the cloud has confirmed it, and only when no other unfinished upload still needs the
same bytes), and the figures of the relay's status.

Written for a mutmut run over relay/queue.py (docs/testing.md, "Mutation testing"): the relay tests drive the
queue through a real relay and a real cloud, but look at few of these rows and figures directly.

The relay's database is SQLite (a relay is its own box; the relay fixtures of tests/relay do the same).
Media rows are built here (a real ingest needs a real file and thumbnail); the op and its pins are made by
the production path, `media.ingest.queue_upload`.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, select, update

from chairside.context import Context, build_context
from chairside.db.models import CachedBlob, Media, OutboxOp, utcnow
from chairside.media.ingest import queue_upload
from chairside.relay import outbox, queue
from chairside.settings import Settings
from tests.factories import make_patient, make_tenant, outbox_row


@dataclass
class Seed:
    data_dir: Path
    contract_id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    """A relay's database with a contract, a clinic and a patient, and no outbox op: made once, copied per test."""
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path_factory.mktemp("seeded") / "relay"), role="relay")
    try:
        tenant = make_tenant(ctx, clinics=1)
        patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
        with ctx.db.session() as s:  # the patient's own patient.create op: not what these tests look at
            s.execute(delete(OutboxOp))
    finally:
        ctx.db.dispose()
    return Seed(ctx.settings.data_dir, tenant.contract_id, tenant.clinic_ids[0], patient.id)


@pytest.fixture
def seed(seeded: Seed, tmp_path: Path) -> Seed:
    shutil.copytree(seeded.data_dir, tmp_path / "relay")
    return Seed(tmp_path / "relay", seeded.contract_id, seeded.clinic_id, seeded.patient_id)


@pytest.fixture
def rctx(seed: Seed) -> Iterator[Context]:
    context = build_context(Settings.load(environ={}, data_dir=seed.data_dir), role="relay", upgrade=False)
    yield context
    context.db.dispose()


def _sha(label: str) -> str:
    return label.encode().hex().ljust(64, "0")[:64]


def _media(ctx: Context, seed: Seed, sha: str, thumb: str | None, size: int = 1000) -> int:
    """A recording acknowledged at the relay: its media row, its media.upload op and its pins; answers the op's id."""
    with ctx.db.session() as s:
        item = Media(id=uuid.uuid4(), contract_id=seed.contract_id, clinic_id=seed.clinic_id,
                     patient_id=seed.patient_id, kind="video", mime="video/mp4", sha256=sha, size=size,
                     filename="rec.mp4", captured_at=utcnow(), duration_s=1.0, thumb_sha256=thumb, source="station")
        s.add(item)
        queue_upload(s, item, thumb_size=10)
        s.flush()
        op_id = s.scalar(select(OutboxOp.id).where(OutboxOp.entity_id == item.id))
    assert op_id is not None
    return op_id


def _op(ctx: Context, kind: str, entity: uuid.UUID | None = None) -> int:
    entity = entity or uuid.uuid4()
    with ctx.db.session() as s:
        op = outbox.record(s, kind, entity, {"id": str(entity), "at": "2026-12-07T09:00:00+00:00"})
        s.flush()
        return op.id


def _load(ctx: Context, op_id: int) -> queue.Op:
    op = queue.load(ctx, op_id)
    assert op is not None
    return op


def _pins(ctx: Context) -> dict[str, bool]:
    with ctx.db.read() as s:
        return {r.sha256: r.pinned for r in s.scalars(select(CachedBlob))}


def _reverse_unordered_selects(ctx: Context) -> None:
    """SQLite's `PRAGMA reverse_unordered_selects` on the context's connections from now on: a query without an
    ORDER BY then answers in the reverse of the order SQLite would happen to use (here: id order), so a query
    that relies on it shows."""
    @event.listens_for(ctx.db.engine, "connect")
    def _reverse(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA reverse_unordered_selects=ON")

    ctx.db.engine.dispose()  # the pooled connections go; new ones get the pragma


def _untouched(ctx: Context, op_id: int) -> None:
    """The bystander op of a test: nothing of it written."""
    row = outbox_row(ctx, op_id)
    assert (row.attempts, row.last_error, row.next_try_at, row.done_at, row.failed_at, row.upstream_url,
            row.sent_bytes) == (0, None, None, None, None, None, 0)


# --- pending and load -----------------------------------------------------------------------------------------

def test_pending_lists_the_unfinished_ops_in_id_order_with_their_next_try(rctx: Context, seed: Seed) -> None:
    a = _media(rctx, seed, _sha("a"), _sha("a-thumb"))
    b = _op(rctx, "patient.update", seed.patient_id)
    c = _media(rctx, seed, _sha("c"), None)
    d = _op(rctx, "media.trash")
    e = _op(rctx, "session.signin")
    queue.mark_done(rctx, _load(rctx, b))
    queue.mark_failed(rctx, _load(rctx, d), "refused")
    before = utcnow()
    queue.mark_retry(rctx, _load(rctx, e), "busy", 1, 30.0)
    rows = queue.pending(rctx)
    assert [(r.id, r.kind) for r in rows] == [(a, "media.upload"), (c, "media.upload"), (e, "session.signin")]
    assert rows[0].entity_id == outbox_row(rctx, a).entity_id
    assert rows[0].next_try_at is None and rows[1].next_try_at is None
    assert before + timedelta(seconds=30) <= rows[2].next_try_at <= utcnow() + timedelta(seconds=30)


def test_pending_looks_at_the_first_thousand_ops_by_id(rctx: Context, seed: Seed) -> None:
    with rctx.db.session() as s:
        # Rows made in bulk (no service writes a thousand ops at once), later ids stored first.
        for i in range(1001, 0, -1):
            s.add(OutboxOp(id=i, op_id=uuid.uuid4(), kind="media.tags", entity_id=uuid.uuid4(), body={}, size=0))
            if i % 250 == 0:
                s.flush()
    _reverse_unordered_selects(rctx)
    rows = queue.pending(rctx)
    assert queue.SCAN == 1000
    assert [r.id for r in rows] == list(range(1, 1001))


def test_load_carries_the_row_and_nothing_once_it_is_finished(rctx: Context, seed: Seed) -> None:
    a = _media(rctx, seed, _sha("a"), _sha("a-thumb"), size=4321)
    queue.save_url(rctx, _load(rctx, a), "http://cloud/api/v1/uploads/abc")
    queue.save_offset(rctx, _load(rctx, a), 1234)
    queue.mark_retry(rctx, _load(rctx, a), "cut", 3, 1.0)
    row = outbox_row(rctx, a)
    op = _load(rctx, a)
    assert op == queue.Op(a, row.op_id, "media.upload", row.entity_id, row.body, 4321, 1234,
                          "http://cloud/api/v1/uploads/abc", 3)
    assert op.body["sha256"] == _sha("a") and op.body["size"] == 4321
    op.body["sha256"] = "changed"  # the Op's body is a copy: the row is not written through it
    assert outbox_row(rctx, a).body["sha256"] == _sha("a")

    assert queue.load(rctx, a + 100) is None
    done, failed = _op(rctx, "media.trash"), _op(rctx, "media.restore")
    queue.mark_done(rctx, _load(rctx, done))
    queue.mark_failed(rctx, _load(rctx, failed), "no")
    assert queue.load(rctx, done) is None
    assert queue.load(rctx, failed) is None


# --- what each mark writes ------------------------------------------------------------------------------------

def test_mark_retry_counts_the_attempt_keeps_the_reason_and_sets_the_next_try(rctx: Context, seed: Seed) -> None:
    a, other = _op(rctx, "patient.update"), _op(rctx, "patient.update")
    op = _load(rctx, a)
    before = utcnow()
    queue.mark_retry(rctx, op, "歯" * 1500, 4, 12.5)
    after = utcnow()
    row = outbox_row(rctx, a)
    assert op.attempts == 4 and row.attempts == 4
    assert row.last_error == "歯" * 1000
    assert row.next_try_at is not None
    assert before + timedelta(seconds=12.5) <= row.next_try_at <= after + timedelta(seconds=12.5)
    assert (row.done_at, row.failed_at) == (None, None)
    _untouched(rctx, other)


def test_mark_failed_ends_the_op_for_good_with_the_clouds_message(rctx: Context, seed: Seed) -> None:
    a, other = _op(rctx, "patient.update"), _op(rctx, "patient.update")
    op = _load(rctx, a)
    queue.mark_retry(rctx, op, "busy", 2, 5.0)
    before = utcnow()
    queue.mark_failed(rctx, op, "x" * 1001)
    row = outbox_row(rctx, a)
    assert row.attempts == 3
    assert row.last_error == "x" * 1000
    assert row.failed_at is not None and before <= row.failed_at <= utcnow()
    assert row.done_at is None
    _untouched(rctx, other)


def test_save_url_and_offset_write_the_clouds_upload_and_where_it_stands(rctx: Context, seed: Seed) -> None:
    a, other = _media(rctx, seed, _sha("a"), None), _media(rctx, seed, _sha("b"), None)
    op = _load(rctx, a)
    queue.save_url(rctx, op, "http://cloud/api/v1/uploads/one")
    assert op.upstream_url == "http://cloud/api/v1/uploads/one"
    queue.save_offset(rctx, op, 700)
    row = outbox_row(rctx, a)
    assert (row.upstream_url, row.sent_bytes) == ("http://cloud/api/v1/uploads/one", 700)
    queue.save_url(rctx, op, "http://cloud/api/v1/uploads/two")  # a new upload starts at byte 0
    row = outbox_row(rctx, a)
    assert (row.upstream_url, row.sent_bytes) == ("http://cloud/api/v1/uploads/two", 0)
    queue.save_offset(rctx, op, 900)
    queue.save_url(rctx, op, None)  # the cloud dropped it: the next try creates one
    assert op.upstream_url is None
    row = outbox_row(rctx, a)
    assert (row.upstream_url, row.sent_bytes) == (None, 0)
    _untouched(rctx, other)


def test_mark_done_clears_the_retry_state_and_counts_a_files_bytes_as_sent(rctx: Context, seed: Seed) -> None:
    m, n, other = _media(rctx, seed, _sha("m"), None, size=5000), _op(rctx, "media.tags"), _op(rctx, "media.tags")
    for op_id in (m, n):
        op = _load(rctx, op_id)
        queue.save_offset(rctx, op, 77)
        queue.mark_retry(rctx, op, "busy", 2, 60.0)
        before = utcnow()
        queue.mark_done(rctx, _load(rctx, op_id))
        row = outbox_row(rctx, op_id)
        assert row.done_at is not None and before <= row.done_at <= utcnow()
        assert (row.last_error, row.next_try_at, row.failed_at, row.attempts) == (None, None, None, 2)
    assert outbox_row(rctx, m).sent_bytes == 5000
    assert outbox_row(rctx, n).sent_bytes == 0
    _untouched(rctx, other)


# --- the pin rule ---------------------------------------------------------------------------------------------

def test_a_confirmed_recording_releases_its_file_and_thumbnail_and_nothing_else(rctx: Context, seed: Seed) -> None:
    a = _media(rctx, seed, _sha("a"), _sha("a-thumb"))
    _media(rctx, seed, _sha("b"), _sha("b-thumb"))
    c = _media(rctx, seed, _sha("c"), None)  # no thumbnail
    with rctx.db.session() as s:
        s.add(CachedBlob(sha256=_sha("kept"), size=1, pinned=True, last_used_at=utcnow()))
        s.add(CachedBlob(sha256=_sha("loose"), size=1, pinned=False, last_used_at=utcnow()))
    queue.mark_done(rctx, _load(rctx, a))
    assert _pins(rctx) == {_sha("a"): False, _sha("a-thumb"): False, _sha("b"): True, _sha("b-thumb"): True,
                           _sha("c"): True, _sha("kept"): True, _sha("loose"): False}
    queue.mark_done(rctx, _load(rctx, c))
    assert _pins(rctx)[_sha("c")] is False
    assert _pins(rctx)[_sha("b")] is True


def test_bytes_another_unfinished_upload_needs_stay_pinned(rctx: Context, seed: Seed) -> None:
    # The same recording sent twice under two media ids: the same file, the same thumbnail.
    a = _media(rctx, seed, _sha("same"), _sha("same-thumb"))
    b = _media(rctx, seed, _sha("same"), _sha("same-thumb"))
    # A file whose bytes are another item's thumbnail (a still sent as a photo of its own).
    c = _media(rctx, seed, _sha("still"), None)
    d = _media(rctx, seed, _sha("other"), _sha("still"))
    queue.mark_done(rctx, _load(rctx, a))
    queue.mark_done(rctx, _load(rctx, c))
    pins = _pins(rctx)
    assert (pins[_sha("same")], pins[_sha("same-thumb")], pins[_sha("still")]) == (True, True, True)
    queue.mark_done(rctx, _load(rctx, b))
    queue.mark_done(rctx, _load(rctx, d))
    assert _pins(rctx) == {_sha("same"): False, _sha("same-thumb"): False, _sha("still"): False,
                           _sha("other"): False}


def test_finished_ops_and_other_kinds_hold_no_pin(rctx: Context, seed: Seed) -> None:
    # Each of these names the bytes' media item but needs no bytes: a failed upload (for good), a done one,
    # and a trash of the item.
    failed = _media(rctx, seed, _sha("x"), _sha("x-thumb"))
    done = _media(rctx, seed, _sha("x"), _sha("x-thumb"))
    queue.mark_failed(rctx, _load(rctx, failed), "refused")
    queue.mark_done(rctx, _load(rctx, done))
    assert _pins(rctx) == {_sha("x"): False, _sha("x-thumb"): False}

    a = _media(rctx, seed, _sha("y"), _sha("y-thumb"))
    trash = _op(rctx, "media.trash", outbox_row(rctx, a).entity_id)
    queue.mark_done(rctx, _load(rctx, a))
    assert _pins(rctx)[_sha("y")] is False and _pins(rctx)[_sha("y-thumb")] is False
    with rctx.db.session() as s:  # pinned again (another acknowledgement of the bytes, say)
        s.execute(update(CachedBlob).values(pinned=True))
    queue.mark_done(rctx, _load(rctx, trash))  # not an upload: it releases nothing
    assert set(_pins(rctx).values()) == {True}


# --- the status figures ---------------------------------------------------------------------------------------

def test_status_figures_of_an_empty_outbox(rctx: Context, seed: Seed) -> None:
    assert queue.status_figures(rctx) == {"pending_items": 0, "pending_bytes": 0, "oldest_pending_age_s": None,
                                          "failed_items": 0, "failures": [], "retrying_because": None}


def test_status_figures_sum_up_the_waiting_the_failed_and_why(rctx: Context, seed: Seed,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    old = _media(rctx, seed, _sha("old"), None, size=9000)  # failed long ago: not waiting
    a = _media(rctx, seed, _sha("a"), None, size=1000)
    _media(rctx, seed, _sha("b"), None, size=500)
    p = _op(rctx, "patient.update", seed.patient_id)
    q = _op(rctx, "media.tags")
    done = _media(rctx, seed, _sha("done"), None, size=4000)
    now = utcnow()
    with rctx.db.session() as s:
        s.execute(update(OutboxOp).where(OutboxOp.id == old).values(created_at=now - timedelta(hours=5)))
        s.execute(update(OutboxOp).where(OutboxOp.id == a).values(created_at=now - timedelta(seconds=3600.27)))
        s.execute(update(OutboxOp).where(OutboxOp.id == done).values(created_at=now - timedelta(hours=9)))
    queue.mark_failed(rctx, _load(rctx, old), "the cloud answered 422: too big")
    queue.save_offset(rctx, _load(rctx, a), 300)
    queue.mark_retry(rctx, _load(rctx, q), "the cloud answered 503: later", 1, 1.0)
    queue.mark_retry(rctx, _load(rctx, p), "the cloud answered 404: not yet", 1, 1.0)
    queue.mark_done(rctx, _load(rctx, done))
    failed = [_op(rctx, "media.tags") for _ in range(11)]
    for i, op_id in enumerate(failed):
        queue.mark_failed(rctx, _load(rctx, op_id), f"refused {i}")

    _reverse_unordered_selects(rctx)
    monkeypatch.setattr(queue, "utcnow", lambda: now)
    figures = queue.status_figures(rctx)
    assert figures["pending_items"] == 4  # a, b, p, q
    assert figures["pending_bytes"] == 1000 - 300 + 500
    assert figures["oldest_pending_age_s"] == 3600.3  # the oldest waiting op's age, to a tenth of a second
    assert figures["failed_items"] == 12
    assert figures["retrying_because"] == "the cloud answered 404: not yet"  # the first waiting op with a reason
    shown = figures["failures"]
    assert len(shown) == 10  # the newest ten, newest first
    assert [f["error"] for f in shown] == [f"refused {i}" for i in range(10, 0, -1)]
    newest = outbox_row(rctx, failed[-1])
    assert newest.failed_at is not None
    assert shown[0] == {"id": str(newest.entity_id), "kind": "media.tags",
                        "failed_at": newest.failed_at.astimezone(UTC).isoformat(), "error": "refused 10"}
    assert datetime.fromisoformat(shown[0]["failed_at"]) == newest.failed_at


def test_bytes_sent_count_only_while_the_upload_waits(rctx: Context, seed: Seed) -> None:
    a = _media(rctx, seed, _sha("a"), None, size=1000)
    b = _media(rctx, seed, _sha("b"), None, size=800)
    assert queue.status_figures(rctx)["pending_bytes"] == 1800  # nothing sent yet
    queue.save_offset(rctx, _load(rctx, a), 1000)  # every byte in, not yet confirmed
    queue.save_offset(rctx, _load(rctx, b), 200)
    assert queue.status_figures(rctx)["pending_bytes"] == 600
    queue.mark_done(rctx, _load(rctx, b))
    assert queue.status_figures(rctx)["pending_bytes"] == 0
    assert queue.status_figures(rctx)["pending_items"] == 1
