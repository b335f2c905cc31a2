"""Drawings over media: a separate, versioned layer, as visible as its item, every change audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer, make_account

ARROW = {"type": "arrow", "color": "#e53935", "width": 0.006, "start": [0.1, 0.2], "end": [0.5, 0.6]}
PEN = {"type": "pen", "color": "#1e88e5", "width": 0.004, "points": [[0.1, 0.1], [0.2, 0.25], [0.3, 0.2]]}
TEXT = {"type": "text", "color": "#ffffff", "width": 0.004, "at": [0.4, 0.4], "text": "ここが虫歯", "size": 0.05}
CIRCLE = {"type": "circle", "color": "#fdd835", "width": 0.009, "start": [0.6, 0.6], "end": [0.9, 0.8]}


@pytest.fixture
def photo(api: Client, patient: dict[str, Any], media_dir: Path) -> dict[str, Any]:
    return api.upload(media_dir / "photo.jpg", patient["id"])


@pytest.fixture
def dr(server: LiveServer, viewer: Viewer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {sign_in(server, viewer)}"}) as client:
        yield client


def test_a_drawing_is_saved_listed_and_never_touches_the_original(
    dr: httpx.Client, photo: dict[str, Any], media_dir: Path
) -> None:
    r = dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": [ARROW, PEN, TEXT, CIRCLE]})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["version"] == 1 and made["media_time_s"] is None and made["author_name"] == "viewer-a"
    assert made["shapes"] == [ARROW, PEN, TEXT, CIRCLE]
    listed = dr.get(f"/api/v1/media/{photo['id']}/annotations").json()["items"]
    assert [a["id"] for a in listed] == [made["id"]]
    original = dr.get(f"/api/v1/media/{photo['id']}/content")
    assert original.content == (media_dir / "photo.jpg").read_bytes()


def test_a_drawing_on_a_video_keeps_its_time(api: Client, dr: httpx.Client, patient: dict[str, Any],
                                             media_dir: Path) -> None:
    clip = api.upload(media_dir / "clip.mp4", patient["id"])
    r = dr.post(f"/api/v1/media/{clip['id']}/annotations", json={"shapes": [ARROW], "media_time_s": 0.5334})
    assert r.json()["media_time_s"] == pytest.approx(0.5334)


def test_updates_name_the_version_they_replace(dr: httpx.Client, photo: dict[str, Any]) -> None:
    made = dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": [ARROW]}).json()
    first = dr.put(f"/api/v1/annotations/{made['id']}", json={"shapes": [PEN], "version": 1})
    assert first.status_code == 200 and first.json()["version"] == 2 and first.json()["shapes"] == [PEN]
    stale = dr.put(f"/api/v1/annotations/{made['id']}", json={"shapes": [CIRCLE], "version": 1})
    assert stale.status_code == 409
    assert stale.json()["type"].endswith("annotation-changed") and stale.json()["version"] == 2
    assert dr.get(f"/api/v1/media/{photo['id']}/annotations").json()["items"][0]["shapes"] == [PEN]
    assert dr.delete(f"/api/v1/annotations/{made['id']}").status_code == 204
    assert dr.get(f"/api/v1/media/{photo['id']}/annotations").json()["items"] == []
    assert dr.delete(f"/api/v1/annotations/{made['id']}").status_code == 404


@pytest.mark.parametrize("shape", [
    {**ARROW, "start": [1.2, 0.1]},           # outside the picture
    {**ARROW, "color": "red"},                # not #rrggbb
    {**PEN, "points": []},
    {**TEXT, "text": ""},
    {"type": "polygon", "color": "#ffffff", "points": [[0, 0]]},
    {**ARROW, "script": "alert(1)"},          # unknown fields are refused
])
def test_malformed_shapes_are_refused(dr: httpx.Client, photo: dict[str, Any], shape: dict[str, Any]) -> None:
    r = dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": [shape]})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


def test_drawings_are_as_visible_as_their_item(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, dr: httpx.Client, photo: dict[str, Any]
) -> None:
    made = dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": [ARROW]}).json()
    branch_only = make_account(ctx, tenant, "branch-b", clinic_ids=[tenant.clinic_ids[1]])
    stranger = make_account(ctx, other_tenant, "stranger")
    for who in (branch_only, stranger):
        h = {"Authorization": f"Bearer {sign_in(server, who)}"}
        assert httpx.get(f"{server.url}/api/v1/media/{photo['id']}/annotations", headers=h).status_code == 404
        assert httpx.put(f"{server.url}/api/v1/annotations/{made['id']}", headers=h,
                         json={"shapes": [PEN], "version": 1}).status_code == 404
        assert httpx.delete(f"{server.url}/api/v1/annotations/{made['id']}", headers=h).status_code == 404
    assert dr.get(f"/api/v1/media/{photo['id']}/annotations").json()["items"][0]["version"] == 1


def test_every_change_is_in_the_audit_trail(ctx: Context, dr: httpx.Client, photo: dict[str, Any]) -> None:
    made = dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": [ARROW]}).json()
    dr.put(f"/api/v1/annotations/{made['id']}", json={"shapes": [PEN], "version": 1})
    dr.delete(f"/api/v1/annotations/{made['id']}")
    dr.get(f"/api/v1/media/{photo['id']}/annotations")
    with ctx.db.read() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action.like("annotation.%")).order_by(AuditEvent.id)).all()
        assert [(r.action, r.actor_name, str(r.media_id), str(r.patient_id)) for r in rows] == [
            (a, "viewer-a", photo["id"], photo["patient_id"])
            for a in ("annotation.create", "annotation.update", "annotation.delete")]
        assert all(r.detail and r.detail["annotation_id"] == made["id"] for r in rows)


def test_purging_the_item_removes_its_drawings(
    ctx: Context, server: LiveServer, admin: Viewer, dr: httpx.Client, photo: dict[str, Any]
) -> None:
    from chairside.db.models import Annotation
    dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": [ARROW]})
    boss = {"Authorization": f"Bearer {sign_in(server, admin)}"}
    assert httpx.delete(f"{server.url}/api/v1/media/{photo['id']}", headers=boss).status_code == 200
    assert httpx.post(f"{server.url}/api/v1/media/{photo['id']}/purge", headers=boss).status_code == 204
    with ctx.db.read() as s:
        assert s.scalars(select(Annotation)).all() == []
