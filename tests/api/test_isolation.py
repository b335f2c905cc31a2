"""Nothing crosses contracts or scopes: every route in the OpenAPI document, walked with
another contract's ids and with out-of-scope ids, answers exactly as for ids that do not
exist — status, body, length and validators — and changes nothing."""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import Client
from chairside.context import Context
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, make_account
from tests.uploads.helpers import create

PARAM = re.compile(r"\{(\w+)\}")


def _bodies(method: str, path: str) -> dict[str, Any] | None:
    if path.endswith("/scope"):
        return {"clinic_ids": None}
    if method == "PATCH" and "patients" in path:
        return {"name": "改ざん"}
    return None


def _request(server: LiveServer, token: str, method: str, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    content = None
    if "/uploads/" in path:
        headers.update({"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        content = b"x" * 10 if method == "PATCH" else None
    return httpx.request(method, server.url + path, headers=headers, json=_bodies(method, path)
                         if content is None else None, content=content)


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code
    assert "etag" not in a.headers and "etag" not in b.headers
    if a.content or b.content:
        ja, jb = a.json(), b.json()
        ja.pop("instance", None)
        jb.pop("instance", None)
        assert ja == jb


@pytest.fixture
def world(ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, media_dir: Path) -> dict[str, Any]:
    with Client(server.url, tenant.token) as chair:
        patient = chair.create_patient(tenant.clinic_ids[0], "1", "山田 太郎", "ヤマダ タロウ")
        item = chair.upload(media_dir / "photo.jpg", patient["id"])
    upload = create(server.url, tenant.token, 1000, patient["id"]).headers["Location"].rsplit("/", 1)[1]
    viewer = make_account(ctx, tenant, "a-viewer")
    a_admin = make_account(ctx, tenant, "a-admin", admin=True)
    b_admin = make_account(ctx, other_tenant, "b-admin", admin=True)
    stations = httpx.get(f"{server.url}/api/v1/stations",
                         headers={"Authorization": f"Bearer {sign_in(server, a_admin)}"}).json()["items"]
    branch_station = next(s for s in stations if s["clinic_id"] == str(tenant.clinic_ids[1]))
    httpx.put(f"{server.url}/api/v1/stations/{branch_station['id']}/scope",
              headers={"Authorization": f"Bearer {sign_in(server, a_admin, 'admin 2', takeover=True)}"},
              json={"clinic_ids": [str(tenant.clinic_ids[1])]}).raise_for_status()
    drawing = httpx.post(f"{server.url}/api/v1/media/{item['id']}/annotations",
                         headers={"Authorization": f"Bearer {tenant.token}"},
                         json={"shapes": [{"type": "arrow", "color": "#e53935", "start": [0.1, 0.1],
                                           "end": [0.5, 0.5]}]})
    drawing.raise_for_status()
    link = httpx.post(f"{server.url}/api/v1/share-links", json={"media_ids": [item["id"]]},
                      headers={"Authorization": f"Bearer {sign_in(server, viewer)}"})
    link.raise_for_status()
    return {
        "ids": {"link_id": link.json()["id"], "patient_id": patient["id"], "media_id": item["id"],
                "account_id": str(viewer.account_id), "clinic_id": str(tenant.clinic_ids[0]),
                "station_id": stations[0]["id"], "upload_id": upload, "annotation_id": drawing.json()["id"],
                "sha256": item["sha256"], "path": "generations/0000000000000000/wal/0000000000000001.ltx"},
        "callers": {"other contract's admin": sign_in(server, b_admin),
                    "other contract's station": other_tenant.token,
                    "out-of-scope station": tenant.station_tokens[1]},
        "patient": patient, "item": item,
    }


def test_every_route_answers_foreign_and_out_of_scope_ids_like_missing_ones(
    server: LiveServer, tenant: Tenant, world: dict[str, Any]
) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    walked = 0
    for path, operations in doc["paths"].items():
        params = PARAM.findall(path)
        if not params or "token" in params:  # a share link's token is a capability: anyone holding it may open it
            continue                         # (tests/sharing proves a wrong, expired or revoked one answers alike)
        for method in operations:
            method = method.upper()
            real = path
            fake = path
            for p in params:
                real = real.replace("{" + p + "}", world["ids"][p])
                fake = fake.replace("{" + p + "}", secrets.token_hex({"upload_id": 16, "sha256": 32}[p])
                                    if p in ("upload_id", "sha256") else "x.ltx" if p == "path" else str(uuid.uuid4()))
            for who, token in world["callers"].items():
                if who == "out-of-scope station" and not {"patient_id", "media_id"} & set(params):
                    continue
                foreign = _request(server, token, method, real)
                missing = _request(server, token, method, fake)
                # The mirror site's routes take only a mirror's credential: any other caller gets 401 there.
                refused = (401,) if path.startswith("/api/v1/mirror/") else (403, 404, 405, 422)
                assert foreign.status_code in refused, (who, method, path, foreign.status_code)
                _same(foreign, missing)
                walked += 1
    assert walked > 30
    # And nothing was changed by all of that.
    with Client(server.url, tenant.token) as chair:
        assert chair.get_patient(world["patient"]["id"])["name"] == "山田 太郎"
        assert chair.get_media(world["item"]["id"])["deleted_at"] is None


def test_lists_searches_and_counts_hide_foreign_and_out_of_scope_patients(
    server: LiveServer, tenant: Tenant, world: dict[str, Any]
) -> None:
    for who, token in world["callers"].items():
        h = {"Authorization": f"Bearer {token}"}
        for q in ("やまだ", "山田", "1", None):
            params = {"q": q} if q else {}
            items = httpx.get(f"{server.url}/api/v1/patients", params=params, headers=h).json()["items"]
            assert world["patient"]["id"] not in {p["id"] for p in items}, (who, q)
    b_admin = world["callers"]["other contract's admin"]
    audit = httpx.get(f"{server.url}/api/v1/audit", params={"patient_id": world["patient"]["id"]},
                      headers={"Authorization": f"Bearer {b_admin}"}).json()
    assert audit["items"] == []
