"""POST /api/v1/relay/ops: a relay's writes applied once, merged per field by clock, flagged not joined."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from chairside.api.media import restore_media, trash_media
from chairside.api.patients import create_patient, update_patient
from chairside.api.relay_ops import OpIn, post_op
from chairside.auth.principal import Principal
from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AppliedOp, AuditEvent, Change, OutboxOp, Patient, RelayState
from chairside.domain.hlc import Clock, newer
from chairside.errors import Problem
from chairside.patients.fields import PatientIn, PatientPatch
from chairside.roles import RELAY
from chairside.tenancy.service import create_relay
from tests.admin_cli import run_admin
from tests.conftest import LiveServer
from tests.factories import Tenant


def op(server: LiveServer, token: str, kind: str, body: dict[str, Any], op_id: str | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/relay/ops", headers={"Authorization": f"Bearer {token}"},
                      json={"op_id": op_id or str(uuid.uuid4()), "kind": kind, "body": body})


def create_body(clinic_id: uuid.UUID, chart_no: str, clock: Clock, **fields: Any) -> dict[str, Any]:
    stamp = clock.now()
    values = {"chart_no": chart_no, "name": "山田 太郎", "name_kana": "ヤマダ タロウ", "birth_date": "1980-04-01",
              "sex": "male", **fields}
    return {"id": str(uuid.uuid4()), "clinic_id": str(clinic_id), "created_at": "2026-11-24T10:00:00+09:00",
            **values, "field_clocks": {f: stamp for f in ("chart_no", "name", "name_kana", "birth_date", "sex")}}


def feed_events(ctx: Context, contract_id: uuid.UUID, entity_id: str) -> list[Change]:
    with ctx.db.read() as s:
        return list(s.scalars(select(Change).where(Change.contract_id == contract_id,
                                                   Change.entity_id == uuid.UUID(entity_id)).order_by(Change.seq)))


def test_the_same_op_twice_applies_once(ctx: Context, server: LiveServer, tenant: Tenant, media_dir: Path) -> None:
    _, token = create_relay(ctx, tenant.clinic_ids[0])
    body = create_body(tenant.clinic_ids[0], "0100", Clock("aaaa0001"))
    op_id = str(uuid.uuid4())
    first = op(server, token, "patient.create", body, op_id)
    again = op(server, token, "patient.create", body, op_id)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["status"] == "applied" and again.json()["status"] == "duplicate"
    assert first.json()["result"] == again.json()["result"]
    assert first.json()["result"]["id"] == body["id"] and first.json()["result"]["merge_with"] is None
    assert len(feed_events(ctx, tenant.contract_id, body["id"])) == 1

    with Client(server.url, tenant.token) as api:
        item = api.upload(media_dir / "photo.jpg", body["id"])
    trash_id = str(uuid.uuid4())
    for _ in range(3):
        r = op(server, token, "media.trash", {"id": item["id"], "at": "2026-11-24T01:00:00+00:00"}, trash_id)
        assert r.status_code == 200
    assert r.json()["status"] == "duplicate" and r.json()["result"]["changed"] is True
    # A different op that finds the item already trashed changes nothing either (idempotent by state).
    assert op(server, token, "media.trash", {"id": item["id"]}).json()["result"]["changed"] is False
    restored = op(server, token, "media.restore", {"id": item["id"], "at": "2026-11-24T02:00:00+00:00"}).json()
    assert restored["status"] == "applied" and restored["result"]["deleted_at"] is None
    kinds = [(c.kind, c.body.get("deleted_at")) for c in feed_events(ctx, tenant.contract_id, item["id"])]
    assert kinds == [("media", None), ("media", "2026-11-24T01:00:00+00:00"), ("media", None)]
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(AppliedOp)) == 4
        actors = s.execute(select(AuditEvent.actor_kind, AuditEvent.action)
                           .where(AuditEvent.actor_kind == "relay").order_by(AuditEvent.id)).all()
    assert [a.action for a in actors] == ["patient.create", "media.trash", "media.restore"]


def test_copies_of_one_op_racing_each_other_apply_it_once(
    ctx: Context, server: LiveServer, tenant: Tenant, media_dir: Path,
) -> None:
    """Eight copies of an op at once (a relay retrying while its first try is still in flight): one is applied,
    the others answer duplicate with its result; one feed event, one audit entry."""
    _, token = create_relay(ctx, tenant.clinic_ids[0])

    def race(kind: str, body: dict[str, Any]) -> list[httpx.Response]:
        op_id, start = str(uuid.uuid4()), threading.Barrier(8)
        answers: list[httpx.Response] = []

        def send() -> None:
            start.wait()
            answers.append(op(server, token, kind, body, op_id))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
        assert sorted(r.json()["status"] for r in answers) == ["applied"] + ["duplicate"] * 7
        assert len({str(r.json()["result"]) for r in answers}) == 1
        return answers

    body = create_body(tenant.clinic_ids[0], "0300", Clock("aaaa0001"))
    race("patient.create", body)
    with Client(server.url, tenant.token) as api:
        item = api.upload(media_dir / "photo.jpg", body["id"])
    race("media.trash", {"id": item["id"]})
    assert len(feed_events(ctx, tenant.contract_id, body["id"])) == 1
    assert [c.body["deleted_at"] is None for c in feed_events(ctx, tenant.contract_id, item["id"])] == [True, False]
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(AppliedOp)) == 2
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.actor_kind == "relay")) == 2


EDITS = st.lists(
    st.tuples(st.sampled_from(["relay-a", "relay-b", "cloud"]), st.sampled_from(["birth_date", "name", "name_kana",
                                                                                 "sex"]),
              st.integers(0, 2), st.integers(-3000, 3000)),
    min_size=1, max_size=8,
)


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS, skew_a=st.integers(-60_000, 60_000), skew_b=st.integers(-60_000, 60_000), data=st.data())
def test_edits_from_two_relays_and_the_cloud_converge_to_the_newest_per_field(
    ctx: Context, tenant: Tenant, edits: list[tuple[str, str, int, int]], skew_a: int, skew_b: int, data: st.DataObject,
) -> None:
    relay, _ = create_relay(ctx, tenant.clinic_ids[0])
    as_relay = Principal("relay", tenant.contract_id, None, relay_id=relay.id, name=relay.name)
    as_admin = Principal("admin", tenant.contract_id, None, name="受付")
    patient = create_patient(PatientIn(clinic_id=tenant.clinic_ids[0], chart_no=f"P-{uuid.uuid4().hex[:8]}",
                                       name="初期 値", name_kana="ショキ アタイ"), as_admin, ctx)
    now = time.time_ns() // 1_000_000
    walls = {"relay-a": [now + skew_a], "relay-b": [now + skew_b]}
    clocks = {name: Clock(f"{name[-1]}0000000", lambda name=name: walls[name][0]) for name in walls}
    # Each relay makes its edits (each after seeing the patient as the cloud made it); the ops then reach
    # the cloud in any order, interleaved with edits made at the cloud itself.
    pending: list[tuple[str, dict[str, Any]]] = []
    cloud_edits: list[tuple[str, Any]] = []
    for source, field, pick, advance in edits:
        value = _nth(field, pick)
        if source == "cloud":
            cloud_edits.append((field, value))
            pending.append(("cloud", {"field": field, "value": value}))
            continue
        walls[source][0] += advance
        ts = clocks[source].now()
        pending.append((source, {"id": str(patient.id), "fields": {field: value}, "clocks": {field: ts}}))
    order = data.draw(st.permutations(range(len(pending))))
    # field -> (clock, value) of every write, the newest kept; the creation's are the first writes.
    initial = {"name": "初期 値", "name_kana": "ショキ アタイ", "sex": "unknown", "birth_date": None}
    winners: dict[str, tuple[str, Any]] = {f: (patient.field_clocks[f], v)  # type: ignore[index]
                                           for f, v in initial.items()}
    for i in order:
        source, body = pending[i]
        if source == "cloud":
            updated = update_patient(patient.id, PatientPatch.model_validate({body["field"]: body["value"]}),
                                     as_admin, ctx)
            ts = updated.field_clocks[body["field"]]  # type: ignore[index]
            candidate = (ts, body["value"])
            field = body["field"]
        else:
            post_op(OpIn(op_id=uuid.uuid4(), kind="patient.update", body=body), as_relay, ctx)
            (field, value), = body["fields"].items()
            candidate = (body["clocks"][field], value)
        if field not in winners or newer(candidate[0], winners[field][0]):
            winners[field] = candidate
    with ctx.db.read() as s:
        final = s.get(Patient, patient.id)
        assert final is not None
        for field, (ts, value) in winners.items():
            got = getattr(final, field)
            assert (got.isoformat() if field == "birth_date" and got else got) == value, field
            assert final.field_clocks is not None and final.field_clocks[field] == ts


def _nth(field: str, pick: int) -> Any:
    options = {
        "name": ["山田 太郎", "山田 次郎", "佐藤 花子"],
        "name_kana": ["ヤマダ タロウ", "ヤマダ ジロウ", "サトウ ハナコ"],
        "sex": ["male", "female", "other"],
        "birth_date": ["1980-04-01", "1990-12-31", "2001-01-01"],
    }[field]
    return options[pick % len(options)]


def test_a_cloud_edit_after_a_relay_edit_from_the_future_still_wins(ctx: Context, tenant: Tenant) -> None:
    """The cloud observes the clocks it stores: an edit made after seeing a skewed relay's edit is newer."""
    relay, _ = create_relay(ctx, tenant.clinic_ids[0])
    as_relay = Principal("relay", tenant.contract_id, None, relay_id=relay.id)
    as_admin = Principal("admin", tenant.contract_id, None)
    patient = create_patient(PatientIn(clinic_id=tenant.clinic_ids[0], chart_no="F-1", name="a", name_kana="ア"),
                             as_admin, ctx)
    ahead = Clock("f0000000", lambda: time.time_ns() // 1_000_000 + 3_600_000)  # an hour fast
    post_op(OpIn(op_id=uuid.uuid4(), kind="patient.update",
                 body={"id": str(patient.id), "fields": {"name": "relay"}, "clocks": {"name": ahead.now()}}),
            as_relay, ctx)
    assert update_patient(patient.id, PatientPatch(name="cloud"), as_admin, ctx).name == "cloud"
    stale = Clock("e0000000", lambda: time.time_ns() // 1_000_000)  # an honest relay that saw none of this
    result = post_op(OpIn(op_id=uuid.uuid4(), kind="patient.update",
                          body={"id": str(patient.id), "fields": {"name": "late"}, "clocks": {"name": stale.now()}}),
                     as_relay, ctx)
    assert result.result["applied_fields"] == []
    with ctx.db.read() as s:
        assert s.get(Patient, patient.id).name == "cloud"  # type: ignore[union-attr]


def test_two_relays_creating_one_chart_number_keep_both_and_flag_the_second(
    ctx: Context, server: LiveServer, tenant: Tenant,
) -> None:
    clinic = tenant.clinic_ids[0]
    _, token_a = create_relay(ctx, clinic)
    _, token_b = create_relay(ctx, clinic)
    first = create_body(clinic, "1234", Clock("aaaa0001"), name="山田 太郎")
    second = create_body(clinic, "1234", Clock("bbbb0002"), name="山田 たろう")
    a = op(server, token_a, "patient.create", first).json()
    b = op(server, token_b, "patient.create", second).json()
    assert a["result"]["merge_with"] is None
    assert b["status"] == "applied" and b["result"]["merge_with"] == first["id"]
    with Client(server.url, tenant.token) as api:
        found = {p["id"]: p["merge_with"] for p in api.search_patients("1234")}
        assert found == {first["id"]: None, second["id"]: first["id"]}
        with pytest.raises(Exception, match="already used"):  # a new patient at the cloud is still refused
            api.create_patient(clinic, "1234", "別人", "ベツジン")
    # Correcting the flagged patient's number settles it; taking a used number flags the one that moved.
    clock = Clock("bbbb0002")
    fixed = op(server, token_b, "patient.update",
               {"id": second["id"], "fields": {"chart_no": "1235"}, "clocks": {"chart_no": clock.now()}}).json()
    assert fixed["result"]["merge_with"] is None
    moved = op(server, token_a, "patient.update",
               {"id": first["id"], "fields": {"chart_no": "1235"}, "clocks": {"chart_no": clock.now()}}).json()
    assert moved["result"]["merge_with"] == second["id"]


def test_foreign_ids_are_not_found_and_change_nothing(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, media_dir: Path,
) -> None:
    _, mine = create_relay(ctx, tenant.clinic_ids[0])
    _, theirs = create_relay(ctx, other_tenant.clinic_ids[0])
    with Client(server.url, other_tenant.token) as api:
        patient = api.create_patient(other_tenant.clinic_ids[0], "9", "他院 患者", "タイン カンジャ")
        item = api.upload(media_dir / "photo.jpg", patient["id"])
    clock = Clock("aaaa0001")
    for kind, body in [
        ("patient.update", {"id": patient["id"], "fields": {"name": "x"}, "clocks": {"name": clock.now()}}),
        ("media.trash", {"id": item["id"]}),
        ("media.restore", {"id": item["id"]}),
        ("patient.update", {"id": str(uuid.uuid4()), "fields": {"name": "x"}, "clocks": {"name": clock.now()}}),
        ("media.trash", {"id": str(uuid.uuid4())}),
    ]:
        r = op(server, mine, kind, body)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json"), kind
    taken = create_body(tenant.clinic_ids[0], "9", clock)
    taken["id"] = patient["id"]  # another contract's patient id, sent as a creation
    assert op(server, mine, "patient.create", taken).status_code == 404
    foreign_clinic = op(server, mine, "patient.create", create_body(other_tenant.clinic_ids[0], "10", clock))
    assert foreign_clinic.status_code == 422 and foreign_clinic.json()["type"].endswith("/unknown-clinic")
    used = str(uuid.uuid4())
    assert op(server, theirs, "media.trash", {"id": item["id"]}, used).status_code == 200
    reused = op(server, mine, "media.trash", {"id": item["id"]}, used)
    # the answer names no contract (docs/security.md, "Ids in bodies")
    assert reused.status_code == 409 and reused.json()["type"].endswith("op-id-conflict")
    assert "contract" not in reused.json()["detail"]
    with Client(server.url, other_tenant.token) as api:
        assert api.get_patient(patient["id"])["name"] == "他院 患者"


@pytest.mark.parametrize(("kind", "body"), [
    ("patient.delete", {"id": "00000000-0000-0000-0000-000000000001"}),
    ("patient.create", {"id": "not-a-uuid"}),
    ("patient.update", {"id": "00000000-0000-0000-0000-000000000001", "fields": {"name": "x"},
                        "clocks": {"name": "yesterday"}}),
    ("patient.update", {"id": "00000000-0000-0000-0000-000000000001", "fields": {"colour": "x"},
                        "clocks": {"colour": "0000000000001-0000-aaaa0001"}}),
    ("patient.update", {"id": "00000000-0000-0000-0000-000000000001", "fields": {"name": None},
                        "clocks": {"name": "0000000000001-0000-aaaa0001"}}),
    ("media.trash", {"id": "00000000-0000-0000-0000-000000000001", "at": "soon"}),
])
def test_bad_ops_get_422_problems(
    ctx: Context, server: LiveServer, tenant: Tenant, kind: str, body: dict[str, Any],
) -> None:
    _, token = create_relay(ctx, tenant.clinic_ids[0])
    r = op(server, token, kind, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and r.json()["detail"]
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(AppliedOp)) == 0
    station = op(server, tenant.token, "media.trash", {"id": str(uuid.uuid4())})
    assert station.status_code == 403


def test_writes_at_a_relay_record_their_outbox_ops(
    ctx: Context, server: LiveServer, tenant: Tenant, media_dir: Path,
) -> None:
    with Client(server.url, tenant.token) as api:
        item_id = api.upload(media_dir / "photo.jpg",
                             api.create_patient(tenant.clinic_ids[0], "U-1", "既存", "キソン")["id"])["id"]
    relay_ctx = dataclasses.replace(ctx, role=RELAY)
    station = Principal("station", tenant.contract_id, None, station_id=uuid.uuid4(), name="Chair 1")
    created = create_patient(PatientIn(clinic_id=tenant.clinic_ids[0], chart_no="R-1", name="中村 誠",
                                       name_kana="ナカムラ マコト", birth_date="1970-01-02"), station, relay_ctx)
    updated = update_patient(created.id, PatientPatch(name="中村 まこと", sex="male"), station, relay_ctx)
    with pytest.raises(Problem) as taken:
        create_patient(PatientIn(clinic_id=tenant.clinic_ids[0], chart_no="R-1", name="別人", name_kana="ベツジン"),
                       station, relay_ctx)
    assert taken.value.status == 409  # a relay refuses a chart number it knows is taken, like the cloud
    trash_media(uuid.UUID(item_id), station, relay_ctx)
    trash_media(uuid.UUID(item_id), station, relay_ctx)  # already in the trash: nothing to send
    restore_media(uuid.UUID(item_id), station, relay_ctx)

    with ctx.db.read() as s:
        ops = s.scalars(select(OutboxOp).order_by(OutboxOp.id)).all()
        node = s.get(RelayState, "node")
    assert [(o.kind, str(o.entity_id)) for o in ops] == [
        ("patient.create", str(created.id)), ("patient.update", str(created.id)),
        ("media.trash", item_id), ("media.restore", item_id),
    ]
    assert node is not None and len(node.value["id"]) == 8 and relay_ctx.clock.get().node == node.value["id"]
    create_op, update_op = ops[0].body, ops[1].body
    assert create_op["chart_no"] == "R-1" and create_op["birth_date"] == "1970-01-02"
    assert set(create_op["field_clocks"]) == {"chart_no", "name", "name_kana", "birth_date", "sex"}
    assert all(ts.endswith("-" + node.value["id"]) for ts in create_op["field_clocks"].values())
    assert update_op["fields"] == {"name": "中村 まこと", "sex": "male"}
    assert update_op["clocks"]["name"] == updated.field_clocks["name"]  # type: ignore[index]
    assert newer(update_op["clocks"]["name"], create_op["field_clocks"]["name"])
    assert ops[2].body["id"] == item_id and ops[2].body["at"]

    # Carried to the cloud, the relay's ops apply there (here: the same database, so by clocks, nothing new).
    _, token = create_relay(ctx, tenant.clinic_ids[0])
    for o in ops[:2]:
        r = op(server, token, o.kind, o.body, str(o.op_id))
        assert r.status_code == 200 and r.json()["status"] == "applied", r.text


def test_relay_cli_create_list_revoke(ctx: Context, tenant: Tenant) -> None:
    made = run_admin(ctx, "relay", "create", "--clinic", str(tenant.clinic_ids[0])).json()
    assert made["token"].startswith("cs_rl_") and made["clinic_id"] == str(tenant.clinic_ids[0])
    listed = run_admin(ctx, "relay", "list", "--contract", str(tenant.contract_id)).json()["items"]
    assert [r["id"] for r in listed] == [made["id"]] and "token" not in listed[0] and "token_hash" not in listed[0]
    assert run_admin(ctx, "relay", "revoke", made["id"]).json()["revoked_at"] is not None
    missing = run_admin(ctx, "relay", "create", "--clinic", str(uuid.uuid4()))
    assert missing.exit_code == 2 and "no clinic" in missing.stderr
