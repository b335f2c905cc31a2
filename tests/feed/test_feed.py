"""The changes feed: every kept write appends one event in its transaction; GET /api/v1/feed pages it."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Clinic, Contract, Relay
from chairside.feed import changes
from chairside.media import trash
from chairside.quota.plan_changes import set_plan
from chairside.tenancy.service import create_relay, create_station, revoke_relay
from tests.admin_cli import run_admin
from tests.conftest import LiveServer
from tests.factories import Tenant, make_relay_token


def feed(server: LiveServer, token: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/feed", params=params, headers={"Authorization": f"Bearer {token}"},
                     timeout=90)


def test_a_clinics_day_appears_in_the_feed_in_order_with_gapless_seqs(
    ctx: Context, server: LiveServer, media_dir: Path,
) -> None:
    contract = run_admin(ctx, "contract", "create", "--name", "フィード歯科").json()["id"]
    clinic_a = run_admin(ctx, "clinic", "create", "--contract", contract, "--name", "本院").json()["id"]
    clinic_b = run_admin(ctx, "clinic", "create", "--contract", contract, "--name", "分院").json()["id"]
    station = run_admin(ctx, "station", "create", "--clinic", clinic_a, "--name", "Chair 1").json()
    relay = run_admin(ctx, "relay", "create", "--clinic", clinic_a, "--name", "本院 relay").json()
    assert relay["token"].startswith("cs_rl_") and relay["contract_id"] == contract

    with Client(server.url, station["token"]) as api:
        patient = api.create_patient(clinic_a, "0042", "歯科 太郎", "シカ タロウ")
        video = api.upload(media_dir / "clip.mp4", patient["id"])
        api.trash(video["id"])
        api.restore(video["id"])
        httpx.patch(f"{server.url}/api/v1/patients/{patient['id']}", json={"name": "歯科 次郎"},
                    headers={"Authorization": f"Bearer {station['token']}"}).raise_for_status()
        set_plan(ctx.db, uuid.UUID(contract), 200)
        api.trash(video["id"])
    assert trash.purge_media(ctx.db, ctx.blobs, uuid.UUID(video["id"]))
    run_admin(ctx, "station", "revoke", station["id"])

    page = feed(server, relay["token"]).json()
    got = [(e["seq"], e["kind"], e["id"]) for e in page["items"]]
    expected = [
        ("contract", contract), ("clinic", clinic_a), ("clinic", clinic_b), ("station", station["id"]),
        ("patient", patient["id"]),
        ("contract", contract), ("media", video["id"]),  # the stored hours move with the row
        ("media", video["id"]), ("media", video["id"]),  # trash, restore
        ("patient", patient["id"]),
        ("contract", contract),  # the plan
        ("media", video["id"]),  # trash again
        ("media.purged", video["id"]), ("contract", contract),  # the tombstone, the hours freed
        ("station", station["id"]),  # revoked
    ]
    assert got == [(i + 1, kind, ident) for i, (kind, ident) in enumerate(expected)]
    assert (page["next"], page["more"], page["head"]) == (len(expected), False, len(expected))

    events = page["items"]
    assert events[0]["clinic_id"] is None and events[1]["clinic_id"] is None
    assert all(e["clinic_id"] == clinic_a for e in events if e["kind"] in ("station", "patient", "media"))
    assert "contact_emails" not in events[0]["body"] and "feed_seq" not in events[0]["body"]
    assert events[3]["body"]["token_hash"] and events[3]["body"]["revoked_at"] is None
    assert events[-1]["body"]["revoked_at"] is not None
    assert events[5]["body"]["stored_video_ms"] > 0 and events[13]["body"]["stored_video_ms"] == 0
    assert events[7]["body"]["deleted_at"] is not None and events[8]["body"]["deleted_at"] is None
    assert events[9]["body"]["name"] == "歯科 次郎"
    assert events[9]["body"]["field_clocks"]["name"] > events[4]["body"]["field_clocks"]["name"]
    assert events[10]["body"]["plan_hours"] == 200
    assert events[12]["body"] == {"id": video["id"], "sha256": video["sha256"], "patient_id": patient["id"]}

    with ctx.db.read() as s:
        seen = s.get(Relay, uuid.UUID(relay["id"]))
        assert seen is not None and seen.last_seen_at is not None  # the relay's last contact is kept


@pytest.mark.parametrize("threads", [8])
def test_concurrent_writers_get_unique_gapless_seqs_and_a_reader_never_skips_one(
    ctx: Context, tenant: Tenant, threads: int,
) -> None:
    per_thread = 20
    with ctx.db.read() as s:
        start = changes.head(s, tenant.contract_id)
    total = start + threads * per_thread
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def write() -> None:
        try:
            barrier.wait()
            for n in range(per_thread):
                with ctx.db.session() as s:  # not create_clinic: this writes more after the event
                    clinic = Clinic(contract_id=tenant.contract_id, name=f"branch {threading.get_ident()} {n}")
                    s.add(clinic)
                    changes.clinic_changed(s, clinic)
                    s.flush()  # more work after the event, before the commit: a window for reordering
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    seen: list[int] = []

    def read() -> None:
        try:
            barrier.wait()
            cursor = start
            while cursor < total and not errors:
                with ctx.db.read() as s:
                    page = changes.read(s, tenant.contract_id, cursor, 7)
                seqs = [c.seq for c in page.items]
                # Whatever is visible after the cursor starts right after it and has no holes.
                assert seqs == list(range(cursor + 1, cursor + 1 + len(seqs))), (cursor, seqs)
                seen.extend(seqs)
                cursor = page.next
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=write) for _ in range(threads)] + [threading.Thread(target=read)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not errors, errors[0]
    assert seen == list(range(start + 1, total + 1))
    with ctx.db.read() as s:
        page = changes.read(s, tenant.contract_id, 0, 1000)
    assert [c.seq for c in page.items] == list(range(1, total + 1)) and page.head == total


def test_paging_through_2500_events(ctx: Context, server: LiveServer, tenant: Tenant) -> None:
    with ctx.db.session() as s:
        for n in range(2500):
            changes.emit(s, tenant.contract_id, "clinic", uuid.uuid4(), {"n": n})
    token = make_relay_token(ctx, tenant.clinic_ids[0])
    cursor, pages, seqs = 0, [], []
    while True:
        page = feed(server, token, after=cursor, limit=1000).json()
        pages.append((len(page["items"]), page["next"], page["more"]))
        seqs += [e["seq"] for e in page["items"]]
        cursor = page["next"]
        if not page["more"]:
            break
    head = 2500 + 5  # and the tenant's contract, two clinics and two stations
    assert pages == [(1000, 1000, True), (1000, 2000, True), (505, head, False)]
    assert seqs == list(range(1, head + 1))
    last = feed(server, token, after=cursor).json()  # at the head: nothing, the cursor stays
    assert (last["items"], last["next"], last["more"], last["head"]) == ([], head, False, head)


def test_visibility_leaves_out_other_clinics_events_but_moves_past_them(ctx: Context, tenant: Tenant) -> None:
    a, b = tenant.clinic_ids
    with ctx.db.session() as s:
        for clinic in (a, b, b, None, b, a):
            changes.emit(s, tenant.contract_id, "patient", uuid.uuid4(), {}, clinic_id=clinic)
    with ctx.db.read() as s:
        # seqs 6..9 examined (the tenant's contract, two clinics and two stations first)
        scoped = changes.read(s, tenant.contract_id, 5, 4, frozenset({a}))
        everything = changes.read(s, tenant.contract_id, 5, 4, None)
        hidden_tail = changes.read(s, tenant.contract_id, 9, 1, frozenset({a}))  # seq 10: clinic b only
    assert [(c.seq, c.clinic_id) for c in scoped.items] == [(6, a), (9, None)]
    assert (scoped.next, scoped.more, scoped.head) == (9, True, 11)
    assert [c.seq for c in everything.items] == [6, 7, 8, 9]
    assert (hidden_tail.items, hidden_tail.next, hidden_tail.more) == ([], 10, True)


def test_long_poll_returns_the_new_event(ctx: Context, server: LiveServer, tenant: Tenant) -> None:
    token = make_relay_token(ctx, tenant.clinic_ids[0])
    head = feed(server, token).json()["head"]
    quiet = feed(server, token, after=head, wait=0.3).json()
    assert (quiet["items"], quiet["next"], quiet["more"]) == ([], head, False)

    answer: list[httpx.Response] = []
    poll = threading.Thread(target=lambda: answer.append(feed(server, token, after=head, wait=60)))
    poll.start()
    poll.join(timeout=0.5)  # give the poll a moment to start waiting (the test passes either way)
    run_admin(ctx, "clinic", "create", "--contract", str(tenant.contract_id), "--name", "新分院")
    poll.join(timeout=90)
    assert not poll.is_alive()
    page = answer[0].json()
    assert [(e["seq"], e["kind"]) for e in page["items"]] == [(head + 1, "clinic")]
    assert page["items"][0]["body"]["name"] == "新分院"


def test_a_relay_reads_only_its_own_contracts_feed(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant,
) -> None:
    mine = feed(server, make_relay_token(ctx, tenant.clinic_ids[0])).json()
    theirs = feed(server, make_relay_token(ctx, other_tenant.clinic_ids[0])).json()

    def contract_of(event: dict[str, Any]) -> str:  # a contract's own event names it by its id
        return str(event["body"]["id" if event["kind"] == "contract" else "contract_id"])

    assert {contract_of(e) for e in mine["items"]} == {str(tenant.contract_id)}
    assert {contract_of(e) for e in theirs["items"]} == {str(other_tenant.contract_id)}
    assert [e["seq"] for e in theirs["items"]] == [1, 2, 3]  # each contract counts from 1: contract, clinic, station


def test_bad_parameters_and_callers_get_problems(ctx: Context, server: LiveServer, tenant: Tenant) -> None:
    relay, token = create_relay(ctx, tenant.clinic_ids[0])
    for params in ({"after": -1}, {"limit": 0}, {"limit": 1001}, {"wait": 61}, {"wait": "soon"}, {"after": "x"}):
        r = feed(server, token, **params)
        assert r.status_code == 422, params
        assert r.headers["content-type"].startswith("application/problem+json")
    station = feed(server, tenant.token)
    assert station.status_code == 403 and station.json()["type"].endswith("/forbidden")
    assert feed(server, "cs_rl_" + "x" * 43).status_code == 401
    revoke_relay(ctx, relay.id)
    gone = feed(server, token)
    assert gone.status_code == 401 and gone.json()["type"].endswith("/relay-revoked")
    assert "revoked" in gone.json()["detail"]


def test_backfill_puts_rows_made_before_the_feed_into_it(ctx: Context, server: LiveServer, media_dir: Path) -> None:
    # Rows as written before the feed existed: straight into the database, not through the services (which
    # announce every row); only the stations, made by the service, are in the feed.
    with ctx.db.session() as s:
        contract = Contract(name="古い歯科", plan_hours=100)
        s.add(contract)
        s.flush()
        clinics = [Clinic(contract_id=contract.id, name=f"古い歯科 {i + 1}") for i in range(2)]
        s.add_all(clinics)
        s.flush()
        contract_id, clinic_ids = contract.id, [c.id for c in clinics]
    tenant = Tenant(contract_id, clinic_ids, [create_station(ctx, cid, f"Chair {i + 1}")[1]
                                              for i, cid in enumerate(clinic_ids)])
    with Client(server.url, tenant.token) as api:
        patient = api.create_patient(tenant.clinic_ids[0], "1", "古川 一郎", "フルカワ イチロウ")
        item = api.upload(media_dir / "photo.jpg", patient["id"])
    with ctx.db.read() as s:
        before = changes.head(s, tenant.contract_id)
    done = run_admin(ctx, "feed", "backfill", "--contract", str(tenant.contract_id)).json()
    assert done["events"] == 1 + 2 + 2 + 1 + 1  # contract, clinics, stations, the patient, the photo
    page = feed(server, make_relay_token(ctx, tenant.clinic_ids[0]), after=before).json()
    assert [e["kind"] for e in page["items"]] == ["contract", "clinic", "clinic", "station", "station", "patient",
                                                  "media"]
    assert page["items"][-1]["id"] == item["id"] and page["head"] == before + done["events"]
    assert run_admin(ctx, "feed", "backfill", "--contract", str(uuid.uuid4())).exit_code == 2
