"""Correcting mistakes through the API: a mis-filed item moved to the right patient, a patient's details edited;
both within the caller's sight, both audited, both in the changes feed."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent, Change, Media
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, make_account, make_patient


def test_a_misfiled_item_moves_to_the_right_patient(
    ctx: Context, dr: httpx.Client, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    item = api.upload(media_dir / "photo.jpg", patient["id"])
    right = api.create_patient(tenant.clinic_ids[1], "00777", "山田 太一", "ヤマダ タイチ")
    drawn = dr.post(f"/api/v1/media/{item['id']}/annotations", json={"shapes": [
        {"type": "arrow", "color": "#e53935", "start": [0.1, 0.1], "end": [0.5, 0.5]}]})
    assert drawn.status_code == 201
    r = dr.patch(f"/api/v1/media/{item['id']}", json={"patient_id": right["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["patient_id"] == right["id"]
    assert r.json()["clinic_id"] == item["clinic_id"]  # where it was taken does not change
    assert [m["id"] for m in dr.get(f"/api/v1/patients/{right['id']}/media").json()["items"]] == [item["id"]]
    assert dr.get(f"/api/v1/patients/{patient['id']}/media").json()["items"] == []
    assert len(dr.get(f"/api/v1/media/{item['id']}/annotations").json()["items"]) == 1  # drawings follow
    with ctx.db.read() as s:
        moves = s.scalars(select(AuditEvent).where(AuditEvent.action == "media.move")).all()
        last = s.scalars(select(Change).where(Change.entity_id == uuid.UUID(item["id"]))
                         .order_by(Change.seq.desc())).first()
    assert {str(e.patient_id) for e in moves} == {patient["id"], right["id"]}  # in both patients' histories
    assert all(e.actor_name == "viewer-a" and e.detail == {"from_patient_id": patient["id"],
                                                           "to_patient_id": right["id"]} for e in moves)
    assert last is not None and last.kind == "media" and last.body["patient_id"] == right["id"]
    assert last.clinic_id == tenant.clinic_ids[1]
    again = dr.patch(f"/api/v1/media/{item['id']}", json={"patient_id": right["id"]})  # already there: no change
    assert again.status_code == 200
    with ctx.db.read() as s:
        assert len(s.scalars(select(AuditEvent).where(AuditEvent.action == "media.move")).all()) == 2


def test_a_move_stays_within_sight(
    ctx: Context, dr: httpx.Client, api: Client, server: LiveServer, tenant: Tenant, other_tenant: Tenant,
    patient: dict[str, Any], media_dir: Path,
) -> None:
    item = api.upload(media_dir / "photo.jpg", patient["id"])
    with Client(server.url, other_tenant.token) as theirs:
        foreign_patient = theirs.create_patient(other_tenant.clinic_ids[0], "1", "他院 患者", "タイン カンジャ")
        foreign_item = theirs.upload(media_dir / "photo.png", foreign_patient["id"])
    to_foreign = dr.patch(f"/api/v1/media/{item['id']}", json={"patient_id": foreign_patient["id"]})
    assert to_foreign.status_code == 422 and to_foreign.json()["type"].endswith("/unknown-patient")
    from_foreign = dr.patch(f"/api/v1/media/{foreign_item['id']}", json={"patient_id": patient["id"]})
    assert from_foreign.status_code == 404 and from_foreign.json()["type"].endswith("/media-not-found")
    branch = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[1], "B-2")
    scoped = make_account(ctx, tenant, "honin-only", clinic_ids=[tenant.clinic_ids[0]])
    r = httpx.patch(f"{server.url}/api/v1/media/{item['id']}", json={"patient_id": str(branch.id)},
                    headers={"Authorization": f"Bearer {sign_in(server, scoped)}"})
    assert r.status_code == 422  # a patient of a clinic the account cannot see: as unknown
    station = httpx.patch(f"{server.url}/api/v1/media/{item['id']}", json={"patient_id": str(branch.id)},
                          headers={"Authorization": f"Bearer {tenant.token}"})
    assert station.status_code == 403  # capture stations file recordings; people correct them
    with ctx.db.read() as s:
        row = s.get(Media, uuid.UUID(item["id"]))
        assert row is not None and str(row.patient_id) == patient["id"]
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "media.move")).all() == []


def test_editing_a_patient_is_audited_and_searchable(
    ctx: Context, dr: httpx.Client, patient: dict[str, Any], other_tenant: Tenant, server: LiveServer
) -> None:
    r = dr.patch(f"/api/v1/patients/{patient['id']}", json={"name": "山田 次郎", "name_kana": "ヤマダ ジロウ"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "山田 次郎"
    found = dr.get("/api/v1/patients", params={"q": "じろう"}).json()["items"]
    assert [p["id"] for p in found] == [patient["id"]]
    assert dr.get("/api/v1/patients", params={"q": "たろう"}).json()["items"] == []
    stranger = make_account(ctx, other_tenant, "stranger")
    foreign = httpx.patch(f"{server.url}/api/v1/patients/{patient['id']}", json={"name": "乗っ取り"},
                          headers={"Authorization": f"Bearer {sign_in(server, stranger)}"})
    assert foreign.status_code == 404
    with ctx.db.read() as s:
        edits = s.scalars(select(AuditEvent).where(AuditEvent.action == "patient.update")).all()
    assert len(edits) == 1 and edits[0].actor_name == "viewer-a"
    assert edits[0].detail == {"fields": ["name", "name_kana"]} and str(edits[0].patient_id) == patient["id"]
