"""The smaller holes of hostile input, each closed: formula cells, bidi and invisible names, the sign-in throttle's
count and its audit trail, caching of API answers, the data folder's permissions, and the edge of each limit."""

from __future__ import annotations

import base64
import csv
import io
import stat
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.client import Client
from chairside.context import build_context
from chairside.db.models import AuditEvent
from chairside.domain.text import UnsafeText, visible_text
from chairside.settings import Settings
from tests.conftest import LiveServer
from tests.factories import Tenant, make_account, make_tenant

TUS = {"Tus-Resumable": "1.0.0"}


def test_api_json_is_never_cached_and_media_bytes_keep_their_own_policy(
        server: LiveServer, api: Client, patient: dict[str, Any], tenant: Tenant, media_dir: Path) -> None:
    auth = {"Authorization": f"Bearer {tenant.token}"}
    assert httpx.get(f"{server.url}/api/v1/health").headers["cache-control"] == "no-store"
    listing = httpx.get(f"{server.url}/api/v1/patients", headers=auth)
    assert listing.headers["cache-control"] == "no-store"
    missing = httpx.get(f"{server.url}/api/v1/patients/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"
    item = api.upload(media_dir / "photo.jpg", patient["id"])
    content = httpx.get(f"{server.url}/api/v1/media/{item['id']}/content", headers=auth)
    assert content.status_code == 200 and content.headers["cache-control"].startswith("private")


def test_manifest_csv_cells_cannot_run_formulas(server: LiveServer, api: Client, tenant: Tenant,
                                                media_dir: Path) -> None:
    patient = api.create_patient(tenant.clinic_ids[0], "=1+2", '=HYPERLINK("http://evil.example","x")',
                                 "@SUM(A1)")
    item = api.upload(media_dir / "photo.jpg", patient["id"], filename="-2+3.jpg")
    r = httpx.post(f"{server.url}/api/v1/exports/zip", headers={"Authorization": f"Bearer {tenant.token}"},
                   json={"media_ids": [item["id"]]})
    assert r.status_code == 200, r.text
    z = zipfile.ZipFile(io.BytesIO(r.content))
    name = next(n for n in z.namelist() if n.endswith("manifest.csv"))
    rows = list(csv.reader(io.StringIO(z.read(name).decode("utf-8-sig"))))
    cells = [cell for row in rows[1:] for cell in row]
    assert "'=1+2" in cells and "'@SUM(A1)" in cells and "'-2+3.jpg" in cells
    assert any(c.startswith("'=HYPERLINK") for c in cells)
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells), cells


@pytest.mark.parametrize("text", ["photo\u202egpj.exe", "\u200b\u200b", "\u2066x\u2069", " \u200d ", "a\x07b"])
def test_unsafe_text_is_refused(text: str) -> None:
    with pytest.raises(UnsafeText):
        visible_text(text)


def test_text_is_nfc() -> None:
    assert visible_text(" \u304b\u3099 ") == "\u304c"  # か + combining voicing mark → が


def test_names_and_file_names_with_bidi_controls_or_nothing_visible_are_refused(
        server: LiveServer, api: Client, patient: dict[str, Any], tenant: Tenant) -> None:
    auth = {"Authorization": f"Bearer {tenant.token}"}
    for name in ("山田\u202e太郎", "\u200b", "\u3000\u200b"):
        r = httpx.post(f"{server.url}/api/v1/patients", headers=auth, json={
            "clinic_id": str(tenant.clinic_ids[0]), "chart_no": "777", "name": name, "name_kana": "ヤマダ"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (name, r.text)
    r = httpx.patch(f"{server.url}/api/v1/patients/{patient['id']}", headers=auth, json={"name": "\u2067x"})
    assert r.status_code == 422, r.text
    made = httpx.post(f"{server.url}/api/v1/patients", headers=auth, json={
        "clinic_id": str(tenant.clinic_ids[0]), "chart_no": "778", "name": "\u304b\u3099んだ", "name_kana": "ガンダ"})
    assert made.status_code == 201 and made.json()["name"] == "\u304cんだ"
    for filename in ("IMG\u202egpj.exe", "\u200b\u200c"):
        meta = {"patient_id": patient["id"], "media_id": str(uuid.uuid4()), "filename": filename}
        r = httpx.post(f"{server.url}/api/v1/uploads/", headers={
            **TUS, **auth, "Upload-Length": "10",
            "Upload-Metadata": ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())})
        assert r.status_code == 400 and r.json()["type"].endswith("bad-filename"), r.text


def test_the_throttle_counts_as_documented_and_refusals_are_audited(tmp_path: Path, database_url: str) -> None:
    settings = Settings.load(environ={}, data_dir=tmp_path / "t", database_url=database_url,
                             signin_free_failures=3, signin_max_wait_s=60)
    ctx = build_context(settings)
    tenant = make_tenant(ctx)
    owner = make_account(ctx, tenant, "owner")
    with LiveServer(ctx) as server, httpx.Client(base_url=server.url) as c:
        answers = [c.post("/api/v1/sessions", json={"login": owner.login, "password": f"x{i}",
                                                    "device_name": "d"}).status_code for i in range(4)]
        unknown = c.post("/api/v1/sessions", json={"login": "nobody", "password": "x", "device_name": "d"})
    assert answers == [401, 401, 401, 429]  # three wrong passwords allowed; the fourth attempt waits
    assert unknown.status_code == 401
    with ctx.db.read() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(
            AuditEvent.contract_id == tenant.contract_id, AuditEvent.action.like("session.%")).order_by(AuditEvent.id))]
        addresses = {e.address for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "session.throttled"))}
    assert actions == ["session.signin_failed"] * 3 + ["session.throttled"]
    assert addresses == {"127.0.0.1"}
    ctx.db.dispose()


def test_the_data_folder_and_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    ctx = build_context(Settings.load(environ={}, data_dir=data))
    make_tenant(ctx)
    ctx.db.dispose()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("chairside.db", "chairside.db-wal", "chairside.db-shm"):
        path = data / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert (data / "chairside.db").exists()


def test_a_json_body_just_under_the_limit_passes_and_one_byte_over_is_refused(tmp_path: Path) -> None:
    settings = Settings.load(environ={}, data_dir=tmp_path / "d", limit_json_body_bytes=200)
    ctx = build_context(settings)
    tenant = make_tenant(ctx)
    with LiveServer(ctx) as server:
        body = {"clinic_id": str(tenant.clinic_ids[0]), "chart_no": "1", "name": "a", "name_kana": "a"}
        base = len(httpx.Request("POST", "/", json=body).content)  # with a name of one letter
        body["name"] = "a" * (201 - base + 1)
        over = httpx.Request("POST", "/", json=body).content
        body["name"] = "a" * (200 - base + 1)
        under = httpx.Request("POST", "/", json=body).content
        assert len(under) == 200 and len(over) == 201
        headers = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/json"}
        ok = httpx.post(f"{server.url}/api/v1/patients", content=under, headers=headers)
        assert ok.status_code == 201, ok.text
        body["chart_no"] = "2"

        def chunked() -> Any:
            yield over[:100]
            yield over[100:]

        refused = httpx.post(f"{server.url}/api/v1/patients", content=chunked(), headers=headers)
        assert refused.status_code == 413 and refused.json()["type"].endswith("body-too-large"), refused.text
        assert refused.headers["connection"] == "close"
    ctx.db.dispose()


def test_a_405_names_every_method_of_the_path(server: LiveServer, tenant: Tenant) -> None:
    r = httpx.get(f"{server.url}/api/v1/uploads/0123abcd", headers={"Authorization": f"Bearer {tenant.token}"})
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"DELETE", "HEAD", "OPTIONS", "PATCH"}
    r = httpx.put(f"{server.url}/api/v1/patients", headers={"Authorization": f"Bearer {tenant.token}"})
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


def test_the_openapi_document_declares_errors_as_problem_json(server: LiveServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.isdigit() and int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
            assert "422" in operation["responses"], (method, path)
    patch = doc["paths"]["/api/v1/uploads/{upload_id}"]["patch"]
    tus = next(p for p in patch["parameters"] if p["name"].lower() == "tus-resumable")
    assert tus["required"] is True and tus["schema"]["enum"] == ["1.0.0"]
