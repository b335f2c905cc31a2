"""The viewer at a relay, through its API: sign-in against the replica with the cloud away, the clinic's
patients and media from the replica and cache, drawings and tags written locally and carried to the cloud,
and the one-device rule kept at the relay and reconciled with the cloud when the line returns."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.db.models import Annotation, AuditEvent, DeviceSession, MediaTag
from tests.factories import make_account
from tests.relay.follow_fixtures import cloud, wait_for  # noqa: F401  (fixtures)
from tests.relay_viewer.conftest import Clinic, bearer, clinic, get, sign_in  # noqa: F401  (fixtures)

# The cloud's side of what the relay sends runs on SQLite and PostgreSQL; what only the relay decides, on SQLite.
sqlite_cloud = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DRAWING = [{"type": "arrow", "color": "#e53935", "start": [0.1, 0.1], "end": [0.5, 0.5]}]


def _clinic_item(c: Clinic, media_dir: Path) -> tuple[str, str]:
    """A patient and a recorded item at the cloud (another chair), replicated to the relay, bytes cached."""
    station = c.cloud.station(0)
    patient = station.create_patient(c.cloud.clinic_ids[0], "01001", "歯科 花子", "シカ ハナコ")
    item = station.upload(media_dir / "clip.mp4", patient["id"])
    return str(patient["id"]), str(item["id"])


@sqlite_cloud
def test_the_relay_signs_the_clouds_accounts_in_and_serves_the_clinic_with_the_cloud_away(
        clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    patient_id, media_id = _clinic_item(c, media_dir)
    wait_for(lambda: get(c.relay.url, f"/api/v1/media/{media_id}", {"Authorization":
             f"Bearer {c.cloud.station_tokens[0]}"}).status_code == 200, "the item at the relay")
    # Played once while the line is up: the bytes are in the relay's cache.
    online = bearer(sign_in(c.relay.url, c.viewer, "Counselling iPad"))
    assert get(c.relay.url, f"/api/v1/media/{media_id}/content", online).status_code == 200
    sha = get(c.relay.url, f"/api/v1/media/{media_id}", online).json()["sha256"]
    wait_for(lambda: c.relay_ctx.blobs.stat(sha) is not None, "the recording in the relay's cache")
    assert httpx.delete(f"{c.relay.url}/api/v1/sessions/current", headers=online).status_code == 204

    c.wan.outage()  # the internet is gone
    page = httpx.get(c.relay.url + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    wrong = httpx.post(f"{c.relay.url}/api/v1/sessions", json={"login": c.viewer.login, "password": "not-it-at-all",
                                                               "device_name": "x"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["type"].endswith("bad-credentials")
    auth = bearer(sign_in(c.relay.url, c.viewer, "Counselling iPad"))
    me = get(c.relay.url, "/api/v1/me", auth).json()
    assert (me["name"], me["device"]) == (c.viewer.login, "Counselling iPad")
    found = get(c.relay.url, "/api/v1/patients", auth, q="シカ").json()
    assert patient_id in [p["id"] for p in found["items"]]
    items = get(c.relay.url, f"/api/v1/patients/{patient_id}/media", auth).json()["items"]
    assert [i["id"] for i in items] == [media_id]
    assert get(c.relay.url, f"/api/v1/media/{media_id}/thumbnail", auth).status_code == 200
    ranged = httpx.get(f"{c.relay.url}/api/v1/media/{media_id}/content", headers={**auth, "Range": "bytes=0-99"},
                       timeout=30)
    assert ranged.status_code == 206 and len(ranged.content) == 100
    # What the cloud never sent cannot be had: an id of nothing answers as not found, not as an error.
    assert get(c.relay.url, f"/api/v1/media/{uuid.uuid4()}", auth).status_code == 404
    # Accounts are managed at the cloud only.
    assert get(c.relay.url, "/api/v1/accounts", auth).status_code == 404


def test_drawings_and_tags_made_at_the_relay_offline_arrive_at_the_cloud_once(
        clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    _, media_id = _clinic_item(c, media_dir)
    station = {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}
    wait_for(lambda: get(c.relay.url, f"/api/v1/media/{media_id}", station).status_code == 200, "the item")
    c.wan.outage()
    auth = bearer(sign_in(c.relay.url, c.viewer, "Chair 2 tablet"))
    made = httpx.post(f"{c.relay.url}/api/v1/media/{media_id}/annotations", headers=auth,
                      json={"shapes": DRAWING, "media_time_s": 0.4}, timeout=30)
    assert made.status_code == 201, made.text
    drawing = made.json()
    changed = httpx.put(f"{c.relay.url}/api/v1/annotations/{drawing['id']}", headers=auth, timeout=30,
                        json={"version": 1, "media_time_s": 0.4,
                              "shapes": [*DRAWING, {**DRAWING[0], "end": [0.9, 0.2]}]})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    gone = httpx.post(f"{c.relay.url}/api/v1/media/{media_id}/annotations", headers=auth,
                      json={"shapes": DRAWING}, timeout=30).json()
    assert httpx.delete(f"{c.relay.url}/api/v1/annotations/{gone['id']}", headers=auth, timeout=30).status_code == 204
    tagged = httpx.put(f"{c.relay.url}/api/v1/media/{media_id}/tags", headers=auth, json={"tags": ["術前", "説明用"]},
                       timeout=30)
    assert tagged.status_code == 200, tagged.text
    with c.cloud.ctx.db.read() as s:  # nothing reached the cloud yet
        assert s.get(Annotation, uuid.UUID(drawing["id"])) is None

    c.wan.outage(False)
    c.outbox_drained()
    with c.cloud.ctx.db.read() as s:
        row = s.get(Annotation, uuid.UUID(drawing["id"]))
        assert row is not None and len(row.shapes) == 2 and row.media_time_s == 0.4
        assert (row.author_name, row.author_id) == (c.viewer.login, c.viewer.account_id)
        assert s.get(Annotation, uuid.UUID(gone["id"])) is None
        tags = sorted(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == uuid.UUID(media_id))))
        assert tags == ["術前", "説明用"]
        via = s.scalars(select(AuditEvent.action).where(AuditEvent.actor_kind == "relay",
                                                        AuditEvent.media_id == uuid.UUID(media_id))).all()
        written = sorted(a for a in via if a.startswith("annotation.") or a == "media.tags")
        assert written == ["annotation.create", "annotation.create", "annotation.delete", "annotation.update",
                           "media.tags"]
    # The viewer at the cloud sees the drawing made in the clinic.
    cloud_auth = bearer(sign_in(c.cloud.url, c.viewer, "Home PC", takeover=True))
    listed = get(c.cloud.url, f"/api/v1/media/{media_id}/annotations", cloud_auth).json()["items"]
    assert [a["id"] for a in listed] == [drawing["id"]]


@sqlite_cloud
def test_a_drawing_on_an_item_of_another_contract_is_refused_at_the_cloud(clinic: Clinic, media_dir: Path) -> None:
    """A relay cannot smuggle a drawing onto a foreign contract's item through its ops: 404, as for no item."""
    c = clinic
    from tests.factories import make_tenant
    other = make_tenant(c.cloud.ctx, "他院")
    from chairside.client import Client
    with Client(c.cloud.url, other.token) as foreign:
        p = foreign.create_patient(other.clinic_ids[0], "9", "他人 様", "タニン サマ")
        item = foreign.upload(media_dir / "photo.jpg", p["id"])
    body: dict[str, Any] = {"id": str(uuid.uuid4()), "media_id": item["id"], "shapes": DRAWING}
    op: dict[str, Any] = {"op_id": str(uuid.uuid4()), "kind": "annotation.put", "body": body}
    r = httpx.post(f"{c.cloud.url}/api/v1/relay/ops", json=op, timeout=30,
                   headers={"Authorization": f"Bearer {c.cloud.relay_token}"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    _, mine = _clinic_item(c, media_dir)
    bad = {"op_id": str(uuid.uuid4()), "kind": "annotation.put",
           "body": {**body, "media_id": mine, "shapes": [{"type": "laser", "color": "#000000"}]}}
    r = httpx.post(f"{c.cloud.url}/api/v1/relay/ops", json=bad, timeout=30,
                   headers={"Authorization": f"Bearer {c.cloud.relay_token}"})
    assert r.status_code == 422 and r.json()["type"].endswith("bad-relay-op")
    with c.cloud.ctx.db.read() as s:
        assert s.scalar(select(Annotation.id)) is None  # neither was stored


@sqlite_cloud
def test_one_device_at_the_relay_while_the_cloud_is_away(clinic: Clinic) -> None:
    c = clinic
    c.wan.outage()
    first = bearer(sign_in(c.relay.url, c.viewer, "Reception iPad"))
    second = sign_in(c.relay.url, c.viewer, "Chair 3 tablet")
    assert second.status_code == 409 and second.json()["type"].endswith("account-in-use")
    assert second.json()["device_name"] == "Reception iPad"
    taken = bearer(sign_in(c.relay.url, c.viewer, "Chair 3 tablet", takeover=True))
    old = get(c.relay.url, "/api/v1/me", first)
    assert old.status_code == 401 and old.json()["type"].endswith("signed-in-elsewhere")
    assert "Chair 3 tablet" in old.json()["detail"]
    assert get(c.relay.url, "/api/v1/me", taken).status_code == 200


def test_outage_the_later_relay_sign_in_ends_the_clouds_session_when_the_line_returns(clinic: Clinic) -> None:
    c = clinic
    c.wan.outage()
    at_home = bearer(sign_in(c.cloud.url, c.viewer, "Home PC"))  # outside, through the cloud, first
    in_clinic = bearer(sign_in(c.relay.url, c.viewer, "Reception iPad"))  # then in the clinic, offline
    assert get(c.cloud.url, "/api/v1/me", at_home).status_code == 200  # the cloud cannot know yet
    c.wan.outage(False)
    c.outbox_drained("session.signin")
    ended = get(c.cloud.url, "/api/v1/me", at_home)
    assert ended.status_code == 401 and ended.json()["type"].endswith("signed-in-elsewhere")
    assert "Reception iPad" in ended.json()["detail"]
    assert get(c.relay.url, "/api/v1/me", in_clinic).status_code == 200  # the latest sign-in stays


def test_outage_the_later_cloud_sign_in_ends_the_relays_session_when_the_line_returns(clinic: Clinic) -> None:
    c = clinic
    c.wan.outage()
    in_clinic = bearer(sign_in(c.relay.url, c.viewer, "Reception iPad"))  # in the clinic, offline, first
    at_home = bearer(sign_in(c.cloud.url, c.viewer, "Home PC"))  # then outside: the cloud has no other session
    c.wan.outage(False)
    c.outbox_drained("session.signin")

    def relay_ended() -> bool:
        return get(c.relay.url, "/api/v1/me", in_clinic).status_code == 401
    wait_for(relay_ended, "the relay's older session to end")
    ended = get(c.relay.url, "/api/v1/me", in_clinic).json()
    assert ended["type"].endswith("signed-in-elsewhere") and "Home PC" in ended["detail"]
    assert get(c.cloud.url, "/api/v1/me", at_home).status_code == 200


@sqlite_cloud
def test_a_sign_in_at_the_cloud_while_online_ends_the_relays_older_session(clinic: Clinic) -> None:
    """The feed's `session` event: online, the latest sign-in anywhere is the one device."""
    c = clinic
    in_clinic = bearer(sign_in(c.relay.url, c.viewer, "Reception iPad"))
    c.outbox_drained("session.signin")
    cloud_try = sign_in(c.cloud.url, c.viewer, "Home PC")
    # The relay's sign-in reached the cloud, but its session lives at the relay: the cloud holds none.
    assert cloud_try.status_code == 201, cloud_try.text
    wait_for(lambda: get(c.relay.url, "/api/v1/me", in_clinic).status_code == 401, "the relay's session to end")
    with c.relay_ctx.db.read() as s:
        rows = s.scalars(select(DeviceSession).where(DeviceSession.account_id == c.viewer.account_id)).all()
    assert [(r.device_name, r.end_reason, r.ended_by_device) for r in rows] == [
        ("Reception iPad", "takeover", "Home PC")]


@sqlite_cloud
def test_an_account_created_or_rescoped_at_the_cloud_signs_in_at_the_relay_with_its_scope(
        clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    branch_only = make_account(c.cloud.ctx, c.cloud.contract_id, "branch-1-only", clinic_ids=[c.cloud.clinic_ids[1]])
    account = c.synced_account(branch_only.login)
    assert account.password_hash.startswith("$argon2id$")
    patient_id, _ = _clinic_item(c, media_dir)  # at clinic 0, which this account may not see
    wait_for(lambda: get(c.relay.url, f"/api/v1/patients/{patient_id}",
                         {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}).status_code == 200, "the patient")
    c.wan.outage()
    auth = bearer(sign_in(c.relay.url, branch_only, "Branch iPad"))
    assert get(c.relay.url, f"/api/v1/patients/{patient_id}", auth).status_code == 404


@sqlite_cloud
def test_an_import_from_the_viewer_at_the_relay_offline_is_stored_there_and_reaches_the_cloud(
        clinic: Clinic, media_dir: Path) -> None:
    """The viewer's import uses tus to the relay like a station: acknowledged once stored at the relay."""
    from chairside.client import Client
    c = clinic
    patient_id, _ = _clinic_item(c, media_dir)
    wait_for(lambda: get(c.relay.url, f"/api/v1/patients/{patient_id}",
                         {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}).status_code == 200, "the patient")
    c.wan.outage()
    token = sign_in(c.relay.url, c.viewer, "Reception PC").json()["token"]
    with Client(c.relay.url, token) as viewer:
        item = viewer.upload(media_dir / "photo.jpg", patient_id)
    auth = {"Authorization": f"Bearer {token}"}
    assert get(c.relay.url, f"/api/v1/media/{item['id']}", auth).status_code == 200
    at_cloud = httpx.get(f"{c.cloud.url}/api/v1/media/{item['id']}", timeout=30,
                         headers={"Authorization": f"Bearer {c.cloud.station_tokens[0]}"})
    assert at_cloud.status_code == 404  # not there yet
    c.wan.outage(False)
    c.outbox_drained()
    at_cloud = httpx.get(f"{c.cloud.url}/api/v1/media/{item['id']}", timeout=30,
                         headers={"Authorization": f"Bearer {c.cloud.station_tokens[0]}"})
    assert at_cloud.status_code == 200 and at_cloud.json()["sha256"] == item["sha256"]


@sqlite_cloud
def test_drawings_and_tags_made_at_the_cloud_come_down_to_the_relay_unless_a_newer_local_change_waits(
        clinic: Clinic, media_dir: Path) -> None:
    c = clinic
    _, media_id = _clinic_item(c, media_dir)
    station = {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}
    wait_for(lambda: get(c.relay.url, f"/api/v1/media/{media_id}", station).status_code == 200, "the item")
    at_cloud = bearer(sign_in(c.cloud.url, c.viewer, "Home PC"))
    drawing = httpx.post(f"{c.cloud.url}/api/v1/media/{media_id}/annotations", headers=at_cloud,
                         json={"shapes": DRAWING}, timeout=30).json()
    assert httpx.put(f"{c.cloud.url}/api/v1/media/{media_id}/tags", headers=at_cloud, json={"tags": ["術後"]},
                     timeout=30).status_code == 200

    def at_relay() -> list[dict[str, object]] | None:
        items: list[dict[str, object]] = get(c.relay.url, f"/api/v1/media/{media_id}/annotations",
                                             station).json()["items"]
        return items or None
    assert [a["id"] for a in wait_for(at_relay, "the cloud's drawing at the relay")] == [drawing["id"]]
    wait_for(lambda: _relay_tags(c, media_id) == ["術後"], "the cloud's tags at the relay")
    # Offline, the relay tags the item differently; meanwhile the cloud deletes its drawing.
    c.wan.outage()
    local = bearer(sign_in(c.relay.url, c.viewer, "Reception iPad"))
    assert httpx.put(f"{c.relay.url}/api/v1/media/{media_id}/tags", headers=local, json={"tags": ["説明用"]},
                     timeout=30).status_code == 200
    assert httpx.delete(f"{c.cloud.url}/api/v1/annotations/{drawing['id']}", headers=at_cloud,
                        timeout=30).status_code == 204
    c.wan.outage(False)
    c.outbox_drained()
    wait_for(lambda: _relay_tags(c, media_id) == ["説明用"] and _cloud_tags(c, media_id) == ["説明用"],
             "the relay's later tags at both ends")
    wait_for(lambda: at_relay() is None, "the drawing deleted at the cloud gone at the relay")


def _relay_tags(c: Clinic, media_id: str) -> list[str]:
    with c.relay_ctx.db.read() as s:
        return sorted(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == uuid.UUID(media_id))))


def _cloud_tags(c: Clinic, media_id: str) -> list[str]:
    with c.cloud.ctx.db.read() as s:
        return sorted(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == uuid.UUID(media_id))))
