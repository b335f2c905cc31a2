from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import text, update

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import EnrollmentCode, utcnow
from chairside.tenancy.service import new_enroll_code
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_station_enrolls_once_with_a_code_and_is_revoked_at_once(
    ctx: Context, server: LiveServer, tenant: Tenant, admin: Viewer
) -> None:
    code, expires = new_enroll_code(ctx, tenant.clinic_ids[0])
    assert expires > utcnow()
    r = httpx.post(f"{server.url}/api/v1/stations/enroll", json={"code": code.lower(), "name": "Chair 9"})
    assert r.status_code == 201
    station = r.json()
    assert httpx.get(f"{server.url}/api/v1/me", headers=_h(station["token"])).json()["role"] == "station"
    again = httpx.post(f"{server.url}/api/v1/stations/enroll", json={"code": code, "name": "Thief"})
    assert again.status_code == 422 and "already used" in again.json()["detail"]
    admin_token = sign_in(server, admin)
    r = httpx.post(f"{server.url}/api/v1/stations/{station['id']}/revoke", headers=_h(admin_token))
    assert r.status_code == 200 and r.json()["revoked_at"]
    gone = httpx.get(f"{server.url}/api/v1/patients", headers=_h(station["token"]))
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]


def test_an_expired_enrollment_code_is_refused(ctx: Context, server: LiveServer, tenant: Tenant) -> None:
    code, _ = new_enroll_code(ctx, tenant.clinic_ids[0])
    with ctx.db.session() as s:
        s.execute(update(EnrollmentCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = httpx.post(f"{server.url}/api/v1/stations/enroll", json={"code": code, "name": "Late"})
    assert r.status_code == 422 and "expired" in r.json()["detail"]


def test_scopes_restrict_stations_and_accounts_to_their_branches(
    ctx: Context, server: LiveServer, tenant: Tenant, admin: Viewer, viewer: Viewer
) -> None:
    main_clinic, branch = tenant.clinic_ids
    with Client(server.url, tenant.token) as chair:
        a = chair.create_patient(main_clinic, "1", "山田 太郎", "ヤマダ タロウ")
        b = chair.create_patient(branch, "1", "山田 次郎", "ヤマダ ジロウ")
    admin_token = sign_in(server, admin)
    stations = httpx.get(f"{server.url}/api/v1/stations", headers=_h(admin_token)).json()["items"]
    branch_station = next(s for s in stations if s["clinic_id"] == str(branch))
    r = httpx.put(f"{server.url}/api/v1/stations/{branch_station['id']}/scope", headers=_h(admin_token),
                  json={"clinic_ids": [str(branch)]})
    assert r.status_code == 200
    with Client(server.url, tenant.station_tokens[1]) as branch_chair:
        assert [p["id"] for p in branch_chair.search_patients("やまだ")] == [b["id"]]
        assert httpx.get(f"{server.url}/api/v1/patients/{a['id']}", headers=_h(tenant.station_tokens[1])
                         ).status_code == 404
    r = httpx.put(f"{server.url}/api/v1/accounts/{viewer.account_id}/scope", headers=_h(admin_token),
                  json={"clinic_ids": [str(main_clinic)]})
    assert r.status_code == 200
    viewer_token = sign_in(server, viewer)
    names = [p["name"] for p in httpx.get(f"{server.url}/api/v1/patients", params={"q": "やまだ"},
                                           headers=_h(viewer_token)).json()["items"]]
    assert names == ["山田 太郎"]
    r = httpx.put(f"{server.url}/api/v1/stations/{branch_station['id']}/scope", headers=_h(admin_token),
                  json={"clinic_ids": None})
    with Client(server.url, tenant.station_tokens[1]) as branch_chair:
        assert len(branch_chair.search_patients("やまだ")) == 2


def test_a_scope_naming_another_contracts_clinic_is_422(
    server: LiveServer, tenant: Tenant, other_tenant: Tenant, admin: Viewer, viewer: Viewer
) -> None:
    token = sign_in(server, admin)
    for body in ({"clinic_ids": [str(other_tenant.clinic_ids[0])]}, {"clinic_ids": []},
                 {"clinic_ids": [str(tenant.clinic_ids[0]), str(uuid.uuid4())]}):
        r = httpx.put(f"{server.url}/api/v1/accounts/{viewer.account_id}/scope", headers=_h(token), json=body)
        assert r.status_code == 422, body


def test_only_contract_admins_manage_accounts_and_scopes(
    server: LiveServer, tenant: Tenant, viewer: Viewer
) -> None:
    token = sign_in(server, viewer)
    for method, path, body in (("GET", "/api/v1/accounts", None), ("GET", "/api/v1/audit", None),
                               ("PUT", f"/api/v1/accounts/{viewer.account_id}/scope", {"clinic_ids": None}),
                               ("POST", "/api/v1/accounts", {"login": "x", "password": "0123456789a"})):
        for auth in (token, tenant.token):
            r = httpx.request(method, server.url + path, headers=_h(auth), json=body)
            assert r.status_code == 403, (method, path)


def test_admin_creates_a_viewer_account_that_can_sign_in(server: LiveServer, admin: Viewer) -> None:
    token = sign_in(server, admin)
    r = httpx.post(f"{server.url}/api/v1/accounts", headers=_h(token),
                   json={"login": "hygienist", "password": "long-enough-pw"})
    assert r.status_code == 201
    dup = httpx.post(f"{server.url}/api/v1/accounts", headers=_h(token),
                     json={"login": "hygienist", "password": "long-enough-pw"})
    assert dup.status_code == 409
    sign_in(server, Viewer("hygienist", "long-enough-pw", uuid.UUID(r.json()["id"])))


def test_cli_account_create_reads_the_password_from_stdin(ctx: Context, server: LiveServer, tenant: Tenant) -> None:
    url = ctx.settings.database_url
    out = subprocess.run(
        [sys.executable, "-m", "chairside", "admin", "--data", str(ctx.settings.data_dir), "--database-url", url,
         "account", "create", "--contract", str(tenant.contract_id), "--login", "cli-user", "--admin"],
        input="a-password-from-stdin\n", capture_output=True, text=True, check=True,
    )
    assert '"admin": true' in out.stdout
    sign_in(server, Viewer("cli-user", "a-password-from-stdin", uuid.uuid4()))
    short = subprocess.run(
        [sys.executable, "-m", "chairside", "admin", "--data", str(ctx.settings.data_dir), "--database-url", url,
         "account", "create", "--contract", str(tenant.contract_id), "--login", "weak"],
        input="short\n", capture_output=True, text=True,
    )
    assert short.returncode == 2 and "10 characters" in short.stderr


def test_cli_enroll_code_prints_code_and_expiry(ctx: Context, tenant: Tenant) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "chairside", "admin", "--data", str(ctx.settings.data_dir), "--database-url",
         ctx.settings.database_url, "station", "enroll-code", "--clinic", str(tenant.clinic_ids[0])],
        capture_output=True, text=True, check=True,
    )
    assert '"code"' in out.stdout and '"expires_at"' in out.stdout


def test_audit_records_reads_and_writes_with_who_device_and_address(
    ctx: Context, server: LiveServer, tenant: Tenant, admin: Viewer, viewer: Viewer, media_dir: Path
) -> None:
    with Client(server.url, tenant.token) as chair:
        p = chair.create_patient(tenant.clinic_ids[0], "77", "木村 彩", "キムラ アヤ")
        item = chair.upload(media_dir / "photo.jpg", p["id"])
    vt = sign_in(server, viewer, "Tablet 2")
    for _ in range(3):  # repeated reads of one item are recorded once
        httpx.get(f"{server.url}/api/v1/media/{item['id']}/content", headers=_h(vt))
    httpx.get(f"{server.url}/api/v1/media/{item['id']}/thumbnail", headers=_h(vt))
    httpx.get(f"{server.url}/api/v1/patients/{p['id']}", headers=_h(vt))
    at = sign_in(server, admin)
    events = httpx.get(f"{server.url}/api/v1/audit", params={"patient_id": p["id"]}, headers=_h(at)).json()["items"]
    actions = [(e["action"], e["actor_kind"], e["device"]) for e in events]
    assert ("media.content", "account", "Tablet 2") in actions
    assert sum(1 for a in actions if a[0] == "media.content") == 1
    assert ("media.thumbnail", "account", "Tablet 2") in actions
    assert ("patient.read", "account", "Tablet 2") in actions
    assert ("media.upload", "station", "Chair 1") in actions
    assert ("patient.create", "station", "Chair 1") in actions
    assert all(e["address"] == "127.0.0.1" for e in events)
    signins = httpx.get(f"{server.url}/api/v1/audit", params={"action": "session.signin"}, headers=_h(at)).json()
    assert {e["device"] for e in signins["items"]} >= {"Tablet 2", "Reception PC"}
    page = httpx.get(f"{server.url}/api/v1/audit", params={"limit": 2}, headers=_h(at)).json()
    assert len(page["items"]) == 2 and page["next_before"]
    older = httpx.get(f"{server.url}/api/v1/audit", params={"limit": 2, "before": page["next_before"]},
                      headers=_h(at)).json()
    assert all(e["id"] < page["next_before"] for e in older["items"])


def test_the_audit_trail_cannot_be_rewritten_even_in_the_database(
    ctx: Context, server: LiveServer, viewer: Viewer
) -> None:
    import pytest
    from sqlalchemy.exc import DBAPIError

    sign_in(server, viewer)
    for statement in ("UPDATE audit_events SET action = 'nothing'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), ctx.db.engine.begin() as conn:
            conn.execute(text(statement))
