"""Tooth numbers and notes at a relay: written while the cloud is away, carried up once the line returns,
and what the cloud wrote coming down the feed; the latest note wins wherever it was saved."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures and relay_viewer are used as arguments)
from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from chairside.db.models import AuditEvent, MediaTooth, Note
from tests.factories import make_account
from tests.relay.follow_fixtures import cloud, wait_for  # noqa: F401  (fixtures)
from tests.relay_viewer.conftest import Clinic, bearer, clinic, get, sign_in  # noqa: F401  (fixtures)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the cloud side: test_dentistry_api


def _replicated_item(c: Clinic, media_dir: Path) -> tuple[str, str]:
    station = c.cloud.station(0)
    patient = station.create_patient(c.cloud.clinic_ids[0], "02002", "歯式 太郎", "シシキ タロウ")
    item = station.upload(media_dir / "photo.jpg", patient["id"])
    auth = {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}
    wait_for(lambda: get(c.relay.url, f"/api/v1/media/{item['id']}", auth).status_code == 200, "the item at the relay")
    return str(patient["id"]), str(item["id"])


def test_teeth_and_notes_written_at_the_relay_offline_reach_the_cloud(clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    patient_id, media_id = _replicated_item(c, media_dir)
    c.wan.outage()
    auth = bearer(sign_in(c.relay.url, c.viewer, "Chair 2 tablet"))
    r = httpx.put(f"{c.relay.url}/api/v1/media/{media_id}/teeth", headers=auth, json={"teeth": [26, 16]}, timeout=30)
    assert r.status_code == 200 and r.json()["teeth"] == [16, 26]
    assert httpx.put(f"{c.relay.url}/api/v1/media/{media_id}/note", headers=auth, timeout=30,
                     json={"text": "院内で記入: 右上6 の説明"}).status_code == 200
    assert httpx.put(f"{c.relay.url}/api/v1/patients/{patient_id}/note", headers=auth, timeout=30,
                     json={"text": "停電中に記入"}).status_code == 200
    # The relay answers from its replica: the item shows its teeth, the timeline filters by them.
    listed = get(c.relay.url, f"/api/v1/patients/{patient_id}/media", auth, tooth=16).json()["items"]
    assert [(m["id"], m["teeth"]) for m in listed] == [(media_id, [16, 26])]
    assert get(c.relay.url, f"/api/v1/patients/{patient_id}/media", auth, tooth=11).json()["items"] == []
    with c.cloud.ctx.db.read() as s:
        assert s.scalar(select(MediaTooth.media_id)) is None  # nothing reached the cloud yet

    c.wan.outage(False)
    c.outbox_drained()
    with c.cloud.ctx.db.read() as s:
        assert list(s.scalars(select(MediaTooth.tooth).where(MediaTooth.media_id == uuid.UUID(media_id))
                              .order_by(MediaTooth.tooth))) == [16, 26]
        item_note, patient_note = s.get(Note, uuid.UUID(media_id)), s.get(Note, uuid.UUID(patient_id))
        assert item_note is not None and item_note.text == "院内で記入: 右上6 の説明"
        assert (item_note.author_name, item_note.author_id) == (c.viewer.login, c.viewer.account_id)
        assert patient_note is not None and patient_note.text == "停電中に記入" and patient_note.kind == "patient"
        via = sorted(s.scalars(select(AuditEvent.action).where(
            AuditEvent.actor_kind == "relay", AuditEvent.patient_id == uuid.UUID(patient_id),
            AuditEvent.action.in_(("media.note", "media.teeth", "patient.note")))))
    assert via == ["media.note", "media.teeth", "patient.note"]
    home = bearer(sign_in(c.cloud.url, c.viewer, "Home PC", takeover=True))
    assert get(c.cloud.url, f"/api/v1/patients/{patient_id}/media", home, tooth=26).json()["items"][0]["id"] == media_id


def test_what_the_cloud_writes_comes_down_and_the_latest_note_wins(clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    patient_id, media_id = _replicated_item(c, media_dir)
    colleague = make_account(c.cloud.ctx, c.cloud.contract_id, f"dr-{uuid.uuid4().hex[:6]}")
    cloud_auth = bearer(sign_in(c.cloud.url, colleague, "Home PC"))
    assert httpx.put(f"{c.cloud.url}/api/v1/media/{media_id}/teeth", headers=cloud_auth, json={"teeth": [36]},
                     timeout=30).status_code == 200
    assert httpx.put(f"{c.cloud.url}/api/v1/media/{media_id}/note", headers=cloud_auth, json={"text": "クラウドで記入"},
                     timeout=30).status_code == 200

    def relay_has(entity: str, text: str) -> bool:
        with c.relay_ctx.db.read() as s:
            row = s.get(Note, uuid.UUID(entity))
            return row is not None and row.text == text
    wait_for(lambda: relay_has(media_id, "クラウドで記入"), "the cloud's note at the relay")
    with c.relay_ctx.db.read() as s:
        assert list(s.scalars(select(MediaTooth.tooth).where(MediaTooth.media_id == uuid.UUID(media_id)))) == [36]

    # During an outage the clinic writes the patient's note first; the cloud writes it later: the cloud's stays.
    c.wan.outage()
    relay_auth = bearer(sign_in(c.relay.url, c.viewer, "Reception iPad"))
    assert httpx.put(f"{c.relay.url}/api/v1/patients/{patient_id}/note", headers=relay_auth, timeout=30,
                     json={"text": "院内で先に"}).status_code == 200
    assert httpx.put(f"{c.cloud.url}/api/v1/patients/{patient_id}/note", headers=cloud_auth, timeout=30,
                     json={"text": "外で後から"}).status_code == 200
    c.wan.outage(False)
    c.outbox_drained()
    with c.cloud.ctx.db.read() as s:
        row = s.get(Note, uuid.UUID(patient_id))
        assert row is not None and row.text == "外で後から"
        assert s.scalar(select(AuditEvent.id).where(AuditEvent.actor_kind == "relay",
                                                    AuditEvent.action == "patient.note")) is None
    wait_for(lambda: relay_has(patient_id, "外で後から"), "the later note at the relay")

    # A clinic's display choice is made at the cloud and reaches the relay with the clinic.
    clinic_id = str(c.cloud.clinic_ids[0])
    admin = make_account(c.cloud.ctx, c.cloud.contract_id, f"admin-{uuid.uuid4().hex[:6]}", admin=True)
    admin_auth = bearer(sign_in(c.cloud.url, admin, "Office PC"))
    assert httpx.put(f"{c.cloud.url}/api/v1/clinics/{clinic_id}/tooth-notation", headers=admin_auth, timeout=30,
                     json={"tooth_notation": "palmer"}).status_code == 200

    def relay_notation() -> bool:
        found = get(c.relay.url, "/api/v1/clinics", relay_auth).json()["items"]
        return any(x["id"] == clinic_id and x["tooth_notation"] == "palmer" for x in found)
    wait_for(relay_notation, "the clinic's notation at the relay")
    c.synced_account(admin.login)
    at_relay = bearer(sign_in(c.relay.url, admin, "Office PC at the relay", takeover=True))
    refused = httpx.put(f"{c.relay.url}/api/v1/clinics/{clinic_id}/tooth-notation", headers=at_relay, timeout=30,
                        json={"tooth_notation": "fdi"})
    assert refused.status_code == 409 and refused.json()["type"].endswith("setting-at-cloud")
