"""Tags on media, and the clinics list the viewer filters by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from chairside.client import Client
from chairside.context import Context
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer, make_account


def _h(server: LiveServer, viewer: Viewer) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_in(server, viewer)}"}


def test_tags_are_set_cleaned_and_listed_per_patient(
    server: LiveServer, api: Client, patient: dict[str, Any], media_dir: Path, viewer: Viewer
) -> None:
    photo = api.upload(media_dir / "photo.jpg", patient["id"])
    clip = api.upload(media_dir / "clip.mp4", patient["id"])
    h = _h(server, viewer)
    r = httpx.put(f"{server.url}/api/v1/media/{photo['id']}/tags", headers=h,
                  json={"tags": [" 術前 ", "説明用", "術前", "ｶﾙﾃ"]})
    assert r.status_code == 200 and r.json()["tags"] == ["カルテ", "術前", "説明用"]
    httpx.put(f"{server.url}/api/v1/media/{clip['id']}/tags", headers=h, json={"tags": ["術後"]})
    listed = httpx.get(f"{server.url}/api/v1/patients/{patient['id']}/tags", headers=h).json()
    assert listed["tags"] == ["カルテ", "術前", "術後", "説明用"]
    assert {i["media_id"]: i["tags"] for i in listed["items"]} == {photo["id"]: ["カルテ", "術前", "説明用"],
                                                                   clip["id"]: ["術後"]}
    httpx.put(f"{server.url}/api/v1/media/{photo['id']}/tags", headers=h, json={"tags": []})
    listed = httpx.get(f"{server.url}/api/v1/patients/{patient['id']}/tags", headers=h).json()
    assert listed["tags"] == ["術後"]


def test_bad_tags_are_refused(server: LiveServer, api: Client, patient: dict[str, Any], media_dir: Path,
                              viewer: Viewer) -> None:
    photo = api.upload(media_dir / "photo.jpg", patient["id"])
    h = _h(server, viewer)
    for tags in (["x" * 41], [""], ["a\u0000b"], [str(i) for i in range(21)]):
        r = httpx.put(f"{server.url}/api/v1/media/{photo['id']}/tags", headers=h, json={"tags": tags})
        assert r.status_code == 422, tags


def test_clinics_are_those_in_scope(ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant) -> None:
    everyone = make_account(ctx, tenant, "all-clinics")
    branch = make_account(ctx, tenant, "branch", clinic_ids=[tenant.clinic_ids[1]])
    names = httpx.get(f"{server.url}/api/v1/clinics", headers=_h(server, everyone)).json()["items"]
    assert [c["id"] for c in names] == [str(c) for c in tenant.clinic_ids]
    names = httpx.get(f"{server.url}/api/v1/clinics", headers=_h(server, branch)).json()["items"]
    assert [c["id"] for c in names] == [str(tenant.clinic_ids[1])]
