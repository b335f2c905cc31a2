"""Moving a mis-filed item at a relay whose cloud is away: applied there at once, carried upstream as a
`media.move` op when the line returns, applied once at the cloud; and the conflict rule — when the item was
moved at the cloud meanwhile, the cloud's answer wins and the relay takes it back (media/move.py)."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from chairside.db.models import AuditEvent, Media, OutboxOp
from tests.relay.follow_fixtures import cloud, wait_for  # noqa: F401  (fixtures)
from tests.relay_viewer.conftest import Clinic, bearer, clinic, get, sign_in  # noqa: F401  (fixtures)

sqlite_cloud = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _two_patients_and_an_item(c: Clinic, media_dir: Path) -> tuple[str, str, str]:
    station = c.cloud.station(0)
    clinic_id = c.cloud.clinic_ids[0]
    wrong = station.create_patient(clinic_id, "02001", "佐藤 一郎", "サトウ イチロウ")
    right = station.create_patient(clinic_id, "02002", "佐藤 二郎", "サトウ ジロウ")
    item = station.upload(media_dir / "photo.jpg", wrong["id"])
    auth = {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}
    wait_for(lambda: get(c.relay.url, f"/api/v1/media/{item['id']}", auth).status_code == 200, "the item at the relay")
    wait_for(lambda: get(c.relay.url, f"/api/v1/patients/{right['id']}", auth).status_code == 200, "the patient")
    return str(wrong["id"]), str(right["id"]), str(item["id"])


def _cloud_patient(c: Clinic, media_id: str) -> uuid.UUID | None:
    with c.cloud.ctx.db.read() as s:
        return s.scalar(select(Media.patient_id).where(Media.id == uuid.UUID(media_id)))


def _relay_patient(c: Clinic, media_id: str) -> uuid.UUID | None:
    with c.relay_ctx.db.read() as s:
        return s.scalar(select(Media.patient_id).where(Media.id == uuid.UUID(media_id)))


def test_a_move_at_the_relay_offline_reaches_the_cloud_when_the_line_returns(clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    wrong, right, media_id = _two_patients_and_an_item(c, media_dir)
    c.wan.outage()
    auth = bearer(sign_in(c.relay.url, c.viewer, "Reception PC"))
    r = httpx.patch(f"{c.relay.url}/api/v1/media/{media_id}", json={"patient_id": right}, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["patient_id"] == right
    assert [i["id"] for i in get(c.relay.url, f"/api/v1/patients/{right}/media", auth).json()["items"]] == [media_id]
    assert get(c.relay.url, f"/api/v1/patients/{wrong}/media", auth).json()["items"] == []
    # A patient's details are corrected at the relay too (carried upstream as patient.update).
    edited = httpx.patch(f"{c.relay.url}/api/v1/patients/{right}", json={"name": "佐藤 次郎"}, headers=auth, timeout=30)
    assert edited.status_code == 200, edited.text
    with c.relay_ctx.db.read() as s:
        ops = {o.kind: o.body for o in s.scalars(select(OutboxOp).where(OutboxOp.done_at.is_(None)))}
    assert ops["media.move"] == {"id": media_id, "patient_id": right, "from_patient_id": wrong,
                                 "at": ops["media.move"]["at"]}
    assert "patient.update" in ops
    assert str(_cloud_patient(c, media_id)) == wrong  # nothing reached the cloud yet

    c.wan.outage(False)
    c.outbox_drained()
    assert str(_cloud_patient(c, media_id)) == right
    with c.cloud.ctx.db.read() as s:
        moves = s.scalars(select(AuditEvent).where(AuditEvent.action == "media.move",
                                                   AuditEvent.media_id == uuid.UUID(media_id))).all()
        assert {str(e.patient_id) for e in moves} == {wrong, right} and {e.actor_kind for e in moves} == {"relay"}
        assert all(e.detail == {"from_patient_id": wrong, "to_patient_id": right, "via": "relay"} for e in moves)
    cloud_auth = bearer(sign_in(c.cloud.url, c.viewer, "Home PC", takeover=True))
    assert get(c.cloud.url, f"/api/v1/patients/{right}", cloud_auth).json()["name"] == "佐藤 次郎"
    # The cloud's own event of the move comes down: the relay keeps the item where it put it.
    wait_for(lambda: _relay_patient(c, media_id) == uuid.UUID(right), "the relay's copy")


@sqlite_cloud
def test_a_move_at_the_relay_loses_to_a_move_made_at_the_cloud_meanwhile(clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    _, right, media_id = _two_patients_and_an_item(c, media_dir)
    third = c.cloud.station(0).create_patient(c.cloud.clinic_ids[0], "02003", "佐藤 三郎", "サトウ サブロウ")
    wait_for(lambda: get(c.relay.url, f"/api/v1/patients/{third['id']}",
                         {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}).status_code == 200, "the patient")
    c.wan.outage()
    auth = bearer(sign_in(c.relay.url, c.viewer, "Reception PC"))
    moved = httpx.patch(f"{c.relay.url}/api/v1/media/{media_id}", json={"patient_id": right}, headers=auth,
                        timeout=30)
    assert moved.status_code == 200, moved.text
    at_cloud = bearer(sign_in(c.cloud.url, c.viewer, "Home PC", takeover=True))
    first = httpx.patch(f"{c.cloud.url}/api/v1/media/{media_id}", json={"patient_id": third["id"]}, headers=at_cloud,
                        timeout=30)
    assert first.status_code == 200, first.text

    c.wan.outage(False)
    c.outbox_drained("media.move")
    assert str(_cloud_patient(c, media_id)) == third["id"]  # the cloud's answer wins
    with c.cloud.ctx.db.read() as s:
        conflict = s.scalars(select(AuditEvent).where(AuditEvent.action == "media.move.conflict")).one()
    assert str(conflict.patient_id) == third["id"] and conflict.detail is not None
    assert conflict.detail["to_patient_id"] == right and conflict.detail["kept_patient_id"] == third["id"]
    wait_for(lambda: _relay_patient(c, media_id) == uuid.UUID(third["id"]), "the relay taking the cloud's patient")
