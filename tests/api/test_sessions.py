from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from chairside.context import Context
from chairside.db.models import DeviceSession, utcnow
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer, make_account


def _me(server: LiveServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def test_sign_in_gives_a_token_and_an_httponly_lax_cookie(server: LiveServer, viewer: Viewer) -> None:
    r = httpx.post(f"{server.url}/api/v1/sessions",
                   json={"login": viewer.login, "password": viewer.password, "device_name": "iPad 1"})
    assert r.status_code == 201
    body = r.json()
    assert body["token"].startswith("cs_se_") and body["expires_at"]
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain http here
    me = _me(server, body["token"]).json()
    assert me["role"] == "viewer" and me["device"] == "iPad 1"
    with httpx.Client(base_url=server.url, cookies={"cs_session": body["token"]}) as browser:
        assert browser.get("/api/v1/me").json()["account_id"] == str(viewer.account_id)


def test_second_device_is_told_which_device_and_since_when_then_can_take_over(
    server: LiveServer, viewer: Viewer
) -> None:
    first = sign_in(server, viewer, "Chair-side PC")
    r = httpx.post(f"{server.url}/api/v1/sessions",
                   json={"login": viewer.login, "password": viewer.password, "device_name": "Phone"})
    assert r.status_code == 409
    problem = r.json()
    assert problem["device_name"] == "Chair-side PC" and problem["since"]
    assert "Chair-side PC" in problem["detail"]
    second = sign_in(server, viewer, "Phone", takeover=True)
    kicked = _me(server, first)
    assert kicked.status_code == 401
    assert kicked.json()["type"].endswith("signed-in-elsewhere")
    assert "Phone" in kicked.json()["detail"]
    assert _me(server, second).status_code == 200


def test_an_idle_session_frees_the_account_and_a_heartbeat_keeps_one_alive(
    ctx: Context, server: LiveServer, viewer: Viewer
) -> None:
    first = sign_in(server, viewer, "PC")
    # The clock is a system boundary: move the session's last activity instead of waiting 30 minutes.
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).values(last_seen_at=utcnow() - timedelta(minutes=29)))
    assert httpx.post(f"{server.url}/api/v1/sessions/current/heartbeat",
                      headers={"Authorization": f"Bearer {first}"}).status_code == 204
    r = httpx.post(f"{server.url}/api/v1/sessions",
                   json={"login": viewer.login, "password": viewer.password, "device_name": "Phone"})
    assert r.status_code == 409  # the heartbeat kept it active
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).values(last_seen_at=utcnow() - timedelta(minutes=31)))
    second = sign_in(server, viewer, "Phone")  # no takeover needed
    assert _me(server, second).status_code == 200
    idle = _me(server, first)
    assert idle.status_code == 401 and idle.json()["type"].endswith("session-idle")


def test_sign_out_ends_the_session_and_clears_the_cookie(server: LiveServer, viewer: Viewer) -> None:
    token = sign_in(server, viewer)
    r = httpx.delete(f"{server.url}/api/v1/sessions/current", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    assert 'cs_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    assert _me(server, token).status_code == 401
    sign_in(server, viewer, "Another")  # the account is free


def test_state_changes_through_the_cookie_need_the_csrf_token(
    server: LiveServer, viewer: Viewer, tenant: Tenant
) -> None:
    r = httpx.post(f"{server.url}/api/v1/sessions",
                   json={"login": viewer.login, "password": viewer.password, "device_name": "Browser"})
    token, csrf = r.json()["token"], r.json()["csrf_token"]
    body = {"clinic_id": str(tenant.clinic_ids[0]), "chart_no": "1", "name": "林 大樹", "name_kana": "ハヤシ ダイキ"}
    with httpx.Client(base_url=server.url, cookies={"cs_session": token}) as browser:
        refused = browser.post("/api/v1/patients", json=body)
        assert refused.status_code == 403 and refused.json()["type"].endswith("csrf")
        ok = browser.post("/api/v1/patients", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201
    # A Bearer token is not sent by browsers on their own: it needs no CSRF token.
    body["chart_no"] = "2"
    assert httpx.post(f"{server.url}/api/v1/patients", json=body,
                      headers={"Authorization": f"Bearer {token}"}).status_code == 201


@pytest.mark.parametrize("cookie", ["cs_se_tampered", "", "cs_st_nonsense", "x" * 4000])
def test_a_tampered_cookie_is_401(server: LiveServer, viewer: Viewer, cookie: str) -> None:
    token = sign_in(server, viewer)
    forged = cookie or token[:-1] + ("A" if token[-1] != "A" else "B")
    with httpx.Client(base_url=server.url, cookies={"cs_session": forged}) as browser:
        assert browser.get("/api/v1/me").status_code == 401


def test_two_devices_racing_to_sign_in_exactly_one_wins(server: LiveServer, ctx: Context, tenant: Tenant) -> None:
    for round_ in range(5):
        viewer = make_account(ctx, tenant, f"race-{round_}")
        results: list[int] = []
        barrier = threading.Barrier(2)

        def go(device: str, v: Viewer = viewer, barrier: threading.Barrier = barrier,
               results: list[int] = results) -> None:
            barrier.wait()
            r = httpx.post(f"{server.url}/api/v1/sessions",
                           json={"login": v.login, "password": v.password, "device_name": device})
            results.append(r.status_code)

        threads = [threading.Thread(target=go, args=(d,)) for d in ("A", "B")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [201, 409]


def test_wrong_passwords_are_throttled_without_revealing_logins_and_the_owner_gets_back_in(
    tmp_path: object, database_url: str
) -> None:
    from pathlib import Path

    from chairside.context import build_context
    from chairside.settings import Settings
    from tests.conftest import LiveServer
    from tests.factories import make_tenant

    settings = Settings.load(environ={}, data_dir=Path(str(tmp_path)) / "t", database_url=database_url,
                             signin_max_wait_s=2, signin_free_failures=5, signin_free_failures_per_address=20)
    ctx = build_context(settings)
    tenant = make_tenant(ctx)
    owner = make_account(ctx, tenant, "owner")
    with LiveServer(ctx) as server, httpx.Client(base_url=server.url) as c:
        unknown = c.post("/api/v1/sessions", json={"login": "nobody", "password": "x", "device_name": "d"})
        wrong = c.post("/api/v1/sessions", json={"login": owner.login, "password": "x", "device_name": "d"})
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json()["detail"] == wrong.json()["detail"]
        statuses: dict[int, int] = {}
        for i in range(1000):
            r = c.post("/api/v1/sessions", json={"login": owner.login, "password": f"guess{i}", "device_name": "d"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert set(statuses) == {401, 429}
        assert statuses[429] > 900
        blocked = c.post("/api/v1/sessions",
                         json={"login": owner.login, "password": owner.password, "device_name": "d"})
        assert blocked.status_code == 429
        wait = int(blocked.headers["Retry-After"])
        assert 0 < wait <= 3 and "seconds" in blocked.json()["detail"]
        time.sleep(wait + 0.2)
        ok = c.post("/api/v1/sessions", json={"login": owner.login, "password": owner.password, "device_name": "d"})
        assert ok.status_code == 201
    ctx.db.dispose()


def test_a_session_of_another_contract_sees_nothing_of_this_one(
    server: LiveServer, ctx: Context, api: object, patient: dict[str, object], other_tenant: Tenant
) -> None:
    stranger = make_account(ctx, other_tenant, "stranger", admin=True)
    token = sign_in(server, stranger)
    r = httpx.get(f"{server.url}/api/v1/patients/{patient['id']}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404
    listing = httpx.get(f"{server.url}/api/v1/patients", headers={"Authorization": f"Bearer {token}"}).json()
    assert listing["items"] == []
