"""Resolving merge flags through the API (SQLite and PostgreSQL): the list with both patients side by side, a
merge that moves everything and removes the flagged patient, keeping apart under a new chart number, and the
refusals (problem+json; another contract's ids answer like ids that do not exist)."""

# ruff: noqa: F811  (the fixture imported from the conftest is used as an argument)
from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent, Change, Media, Patient, PatientSearchTerm, ShareLink
from chairside.domain.hlc import Clock
from chairside.media import notes
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, make_account, make_tenant, operator
from tests.merges.conftest import dr, flag_pair, relay_op  # noqa: F401  (fixture)

DRAWING = [{"type": "arrow", "color": "#e53935", "start": [0.1, 0.1], "end": [0.5, 0.5]}]


def test_the_list_shows_each_flagged_patient_beside_the_other(
        ctx: Context, server: LiveServer, tenant: Tenant, dr: httpx.Client, api: Client, media_dir: Path) -> None:
    assert dr.get("/api/v1/merge-flags").json() == {"items": []}
    pair = flag_pair(ctx, server, tenant)
    api.upload(media_dir / "photo.jpg", pair.kept)
    api.upload(media_dir / "photo.png", pair.flagged)
    api.upload(media_dir / "clip.mp4", pair.flagged)
    r = dr.get("/api/v1/merge-flags")
    assert r.status_code == 200, r.text
    [flag] = r.json()["items"]
    assert flag["patient"]["id"] == str(pair.flagged) and flag["patient"]["merge_with"] == str(pair.kept)
    assert flag["other"]["id"] == str(pair.kept) and flag["other"]["chart_no"] == flag["patient"]["chart_no"]
    assert (flag["patient_items"], flag["other_items"]) == (2, 1)
    assert (flag["patient"]["birth_date"], flag["other"]["birth_date"]) == ("1980-04-01", None)
    # A station files recordings; people resolve flags.
    station = httpx.get(f"{server.url}/api/v1/merge-flags", headers={"Authorization": f"Bearer {tenant.token}"})
    assert station.status_code == 403 and station.headers["content-type"].startswith("application/problem+json")
    # An account that cannot see the clinic does not see its flags.
    scoped = make_account(ctx, tenant, "branch-only", clinic_ids=[tenant.clinic_ids[1]])
    other = httpx.get(f"{server.url}/api/v1/merge-flags",
                      headers={"Authorization": f"Bearer {sign_in(server, scoped)}"})
    assert other.json() == {"items": []}


def test_a_merge_moves_everything_to_the_kept_patient_and_removes_the_flagged_one(
        ctx: Context, server: LiveServer, tenant: Tenant, dr: httpx.Client, api: Client, media_dir: Path) -> None:
    pair = flag_pair(ctx, server, tenant)
    kept_item = api.upload(media_dir / "photo.jpg", pair.kept)
    photo = api.upload(media_dir / "photo.png", pair.flagged)
    clip = api.upload(media_dir / "clip.mp4", pair.flagged)
    binned = api.upload(media_dir / "photo.jpg", pair.flagged, media_id=uuid.uuid4())
    assert dr.delete(f"/api/v1/media/{binned['id']}").status_code == 200  # in the trash: moves too
    drawn = dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": DRAWING}).json()
    assert dr.put(f"/api/v1/media/{clip['id']}/tags", json={"tags": ["術前"]}).status_code == 200
    link = dr.post("/api/v1/share-links", json={"media_ids": [photo["id"]], "expires_in_s": 3600}).json()
    who = operator(tenant.contract_id)
    notes.set_note(ctx, who, "patient", pair.kept, "ペニシリンにアレルギー")
    notes.set_note(ctx, who, "patient", pair.flagged, "前歯の審美を希望")

    r = dr.post(f"/api/v1/patients/{pair.flagged}/merge", json={"into": str(pair.kept)})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["merged_id"] == str(pair.flagged) and done["moved_items"] == 3
    assert done["filled_fields"] == ["birth_date", "sex"]  # empty at the kept patient: taken from the other
    kept = done["patient"]
    assert (kept["id"], kept["name"], kept["birth_date"], kept["sex"], kept["merge_with"]) == (
        str(pair.kept), "山田 太郎", "1980-04-01", "male", None)  # the kept patient's name is never overwritten

    listed = dr.get(f"/api/v1/patients/{pair.kept}/media").json()["items"]
    assert {i["id"] for i in listed} == {kept_item["id"], photo["id"], clip["id"]}
    trash = dr.get(f"/api/v1/patients/{pair.kept}/media", params={"trash": "true"}).json()["items"]
    assert [i["id"] for i in trash] == [binned["id"]]
    assert [a["id"] for a in dr.get(f"/api/v1/media/{photo['id']}/annotations").json()["items"]] == [drawn["id"]]
    assert dr.get(f"/api/v1/patients/{pair.kept}/tags").json()["items"] == [{"media_id": clip["id"], "tags": ["術前"]}]
    assert notes.get_note(ctx, who, "patient", pair.kept).text == "ペニシリンにアレルギー\n――\n前歯の審美を希望"
    token = link["url"].rsplit("/", 1)[1]
    with httpx.Client(base_url=server.url) as anyone:  # the patient's link still opens the item
        assert [i["id"] for i in anyone.get(f"/api/v1/shared/{token}").json()["items"]] == [photo["id"]]

    gone = dr.get(f"/api/v1/patients/{pair.flagged}")
    assert gone.status_code == 404 and gone.json()["type"].endswith("/patient-not-found")
    assert [p["id"] for p in dr.get("/api/v1/patients", params={"q": "01234"}).json()["items"]] == [str(pair.kept)]
    assert dr.get("/api/v1/merge-flags").json() == {"items": []}
    with ctx.db.read() as s:
        assert s.get(Patient, pair.flagged) is None
        assert s.scalar(select(PatientSearchTerm.id).where(PatientSearchTerm.patient_id == pair.flagged)) is None
        assert s.scalar(select(ShareLink.patient_id).where(ShareLink.id == uuid.UUID(link["id"]))) == pair.kept
        assert {m.patient_id for m in s.scalars(select(Media))} == {pair.kept}
        merges = {e.patient_id: (e.action, e.detail) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(("patient.merge", "patient.merged"))))}
        moves = s.scalars(select(AuditEvent).where(AuditEvent.action == "media.move")).all()
        events = s.scalars(select(Change).where(Change.contract_id == tenant.contract_id)
                           .order_by(Change.seq.desc()).limit(6)).all()
    (action, detail), (gone_action, gone_detail) = merges[pair.kept], merges[pair.flagged]
    assert detail is not None and gone_detail is not None
    assert action == "patient.merge" and detail["merged_patient_id"] == str(pair.flagged)
    assert detail["filled"] == ["birth_date", "sex"] and detail["moved_items"] == 3
    assert (gone_action, gone_detail["into"], gone_detail["moved_items"]) == ("patient.merged", str(pair.kept), 3)
    assert gone_detail["merged"]["name"] == "山田 太朗"  # the removed patient's fields stay in the audit trail
    assert len(moves) == 6 and {e.actor_name for e in moves} == {"viewer-a"}  # each item, in both histories
    # The feed: each item under the kept patient, the kept patient, then the removed one's tombstone.
    kinds = [(e.kind, str(e.entity_id)) for e in reversed(events)]
    assert kinds[-2:] == [("patient", str(pair.kept)), ("patient.merged", str(pair.flagged))]
    assert events[0].body == {"id": str(pair.flagged), "into": str(pair.kept)}

    # A write still naming the removed patient (a recording queued at a branch) lands on the kept one.
    late = api.upload(media_dir / "photo.png", pair.flagged, media_id=uuid.uuid4())
    assert late["patient_id"] == str(pair.kept)
    edit = relay_op(server, pair.relay_token, "patient.update", {
        "id": str(pair.flagged), "fields": {"name": "山田 太朗"}, "clocks": {"name": Clock("feed0001").now()}})
    assert edit.status_code == 200, edit.text
    assert edit.json()["result"]["merged_into"] == str(pair.kept) and edit.json()["result"]["applied_fields"] == []


def test_keep_apart_gives_the_flagged_patient_a_free_chart_number(
        ctx: Context, server: LiveServer, tenant: Tenant, dr: httpx.Client) -> None:
    pair = flag_pair(ctx, server, tenant)
    taken = dr.post(f"/api/v1/patients/{pair.flagged}/keep-apart", json={"chart_number": "01234"})
    assert taken.status_code == 409 and taken.json()["type"].endswith("/chart-no-taken")
    assert "01234" in taken.json()["detail"]
    r = dr.post(f"/api/v1/patients/{pair.flagged}/keep-apart", json={"chart_number": " 01235 "})
    assert r.status_code == 200, r.text
    assert (r.json()["chart_no"], r.json()["merge_with"]) == ("01235", None)
    assert [p["id"] for p in dr.get("/api/v1/patients", params={"q": "1235"}).json()["items"]] == [str(pair.flagged)]
    assert dr.get("/api/v1/merge-flags").json() == {"items": []}
    again = dr.post(f"/api/v1/patients/{pair.flagged}/keep-apart", json={"chart_number": "01236"})
    assert again.status_code == 409 and again.json()["type"].endswith("/not-flagged")
    with ctx.db.read() as s:
        audited = s.scalars(select(AuditEvent).where(AuditEvent.action == "patient.keep_apart")).all()
        last = s.scalars(select(Change).where(Change.entity_id == pair.flagged).order_by(Change.seq.desc())).first()
        row = s.get(Patient, pair.flagged)
    assert {e.patient_id for e in audited} == {pair.flagged, pair.kept}
    assert last is not None and last.kind == "patient" and last.body["chart_no"] == "01235"
    assert last.body["merge_with"] is None
    assert row is not None and row.field_clocks is not None and row.field_clocks["chart_no"] > "0"


def test_refusals_are_problems_and_foreign_ids_answer_like_missing_ones(
        ctx: Context, server: LiveServer, tenant: Tenant, dr: httpx.Client) -> None:
    pair = flag_pair(ctx, server, tenant)
    theirs = make_tenant(ctx, "他院")
    foreign = flag_pair(ctx, server, theirs, "777")
    missing = uuid.uuid4()
    answers = [dr.post(f"/api/v1/patients/{pid}/merge", json={"into": str(pair.kept)}) for pid in
               (foreign.flagged, missing)]
    answers += [dr.post(f"/api/v1/patients/{pair.flagged}/merge", json={"into": str(pid)}) for pid in
                (foreign.kept, missing)]
    answers += [dr.post(f"/api/v1/patients/{pid}/keep-apart", json={"chart_number": "9"}) for pid in
                (foreign.flagged, missing)]
    assert {a.status_code for a in answers} == {404}
    bodies = {str({k: v for k, v in a.json().items() if k != "instance"}) for a in answers}
    assert len(bodies) == 1  # the same answer: nothing tells a foreign id from none
    assert answers[0].headers["content-type"].startswith("application/problem+json")
    not_flagged = dr.post(f"/api/v1/patients/{pair.kept}/merge", json={"into": str(pair.flagged)})
    assert not_flagged.status_code == 409 and not_flagged.json()["type"].endswith("/not-flagged")
    assert "統合" in not_flagged.json()["detail"]
    itself = dr.post(f"/api/v1/patients/{pair.flagged}/merge", json={"into": str(pair.flagged)})
    assert itself.status_code == 422 and itself.json()["type"].endswith("/merge-into-self")
    for bad in ({"chart_number": ""}, {"chart_number": "x" * 41}, {"chart_number": "\u202e12"}, {}):
        r = dr.post(f"/api/v1/patients/{pair.flagged}/keep-apart", json=bad)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), bad
    assert dr.post(f"/api/v1/patients/{pair.flagged}/merge", json={"into": "nope"}).status_code == 422
    station = httpx.post(f"{server.url}/api/v1/patients/{pair.flagged}/merge", json={"into": str(pair.kept)},
                         headers={"Authorization": f"Bearer {tenant.token}"})
    assert station.status_code == 403
    with ctx.db.read() as s:  # nothing changed anywhere
        assert s.get(Patient, pair.flagged) is not None and s.get(Patient, foreign.flagged) is not None
        assert s.scalar(select(AuditEvent.id).where(AuditEvent.action.like("patient.merge%"))) is None
