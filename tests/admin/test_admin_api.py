"""A contract admin manages viewer accounts and stations through the API (both databases): every action, who may
(403 problem+json for a viewer and a station), another contract's ids answered exactly like ids that do not exist,
the audit rows, the device signed out at once, and the changes-feed events a relay learns from."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent, Change
from chairside.tenancy.service import create_relay
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer, make_account

# Who may call, and what another contract's ids answer, are decided above the database: one engine suffices.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def boss(server: LiveServer, admin: Viewer) -> Any:
    with httpx.Client(base_url=f"{server.url}/api/v1", headers=_h(sign_in(server, admin, "Office PC")),
                      timeout=30) as client:
        yield client


def _audit(ctx: Context, contract_id: uuid.UUID, action: str) -> list[AuditEvent]:
    with ctx.db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.contract_id == contract_id,
                                                       AuditEvent.action == action).order_by(AuditEvent.id)))


def _events(ctx: Context, contract_id: uuid.UUID, after: int) -> list[Change]:
    with ctx.db.read() as s:
        return list(s.scalars(select(Change).where(Change.contract_id == contract_id, Change.seq > after)
                              .order_by(Change.seq)))


def _head(ctx: Context, contract_id: uuid.UUID) -> int:
    with ctx.db.read() as s:
        return int(s.scalar(select(Change.seq).where(Change.contract_id == contract_id)
                            .order_by(Change.seq.desc()).limit(1)) or 0)


def _account(boss: httpx.Client, account_id: uuid.UUID) -> dict[str, Any]:
    items = boss.get("/accounts").json()["items"]
    return next(a for a in items if a["id"] == str(account_id))


def test_the_admin_sees_an_accounts_device_and_ends_its_session_here_and_at_the_relays(
    ctx: Context, server: LiveServer, tenant: Tenant, boss: httpx.Client, viewer: Viewer
) -> None:
    r = httpx.post(f"{server.url}/api/v1/sessions", headers={"User-Agent": "Mozilla/5.0 (iPad) Safari"},
                   json={"login": viewer.login, "password": viewer.password, "device_name": "Reception iPad"})
    device = _h(r.json()["token"])
    listed = _account(boss, viewer.account_id)
    assert listed["session"]["device_name"] == "Reception iPad"
    assert listed["session"]["user_agent"] == "Mozilla/5.0 (iPad) Safari"
    assert listed["session"]["since"] and listed["session"]["last_seen_at"]
    head = _head(ctx, tenant.contract_id)

    assert boss.delete(f"/accounts/{viewer.account_id}/session").status_code == 204
    refused = httpx.get(f"{server.url}/api/v1/me", headers=device)
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("/signed-out-by-admin") and "administrator" in refused.json()["detail"]
    assert _account(boss, viewer.account_id)["session"] is None
    [row] = _audit(ctx, tenant.contract_id, "session.end")
    assert row.actor_kind == "account" and row.actor_name == "admin-a" and row.device == "Office PC"
    assert row.detail == {"account_id": str(viewer.account_id), "login": viewer.login, "devices": ["Reception iPad"]}
    # The relays end their sessions of the account that started before now (relay/viewer.py session_event).
    [event] = _events(ctx, tenant.contract_id, head)
    assert event.kind == "session" and event.body["account_id"] == str(viewer.account_id)
    assert event.clinic_id is None  # every relay of the contract hears it
    # The account itself is untouched: it signs in again.
    assert sign_in(server, viewer, "Reception iPad")


def test_a_password_reset_signs_the_device_out_and_only_the_new_password_signs_in(
    ctx: Context, server: LiveServer, tenant: Tenant, boss: httpx.Client, viewer: Viewer
) -> None:
    device = _h(sign_in(server, viewer, "Chair 2 tablet"))
    weak = boss.post(f"/accounts/{viewer.account_id}/password", json={"password": "short"})
    assert weak.status_code == 422 and weak.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(f"{server.url}/api/v1/me", headers=device).status_code == 200  # nothing changed
    head = _head(ctx, tenant.contract_id)

    r = boss.post(f"/accounts/{viewer.account_id}/password", json={"password": "new-secret-2026"})
    assert r.status_code == 200 and r.json()["login"] == viewer.login and "password" not in r.text
    refused = httpx.get(f"{server.url}/api/v1/me", headers=device)
    assert refused.status_code == 401 and refused.json()["type"].endswith("/password-reset")
    old = httpx.post(f"{server.url}/api/v1/sessions", json={"login": viewer.login, "password": viewer.password,
                                                           "device_name": "x"})
    assert old.status_code == 401
    assert sign_in(server, Viewer(viewer.login, "new-secret-2026", viewer.account_id), "Chair 2 tablet")
    [row] = _audit(ctx, tenant.contract_id, "account.password_reset")
    assert row.detail == {"account_id": str(viewer.account_id), "login": viewer.login, "devices": ["Chair 2 tablet"]}
    assert "new-secret-2026" not in str(row.detail)
    kinds = [(e.kind, e.entity_id) for e in _events(ctx, tenant.contract_id, head)]
    assert ("account", viewer.account_id) in kinds and kinds[0][0] == "session"
    account_event = next(e for e in _events(ctx, tenant.contract_id, head) if e.kind == "account")
    assert account_event.body["password_hash"].startswith("$argon2id$")  # the relay signs the new one in


def test_a_disabled_account_is_signed_out_at_once_cannot_sign_in_and_can_be_enabled_again(
    ctx: Context, server: LiveServer, tenant: Tenant, boss: httpx.Client, admin: Viewer, viewer: Viewer
) -> None:
    device = _h(sign_in(server, viewer, "Counselling iPad"))
    head = _head(ctx, tenant.contract_id)
    r = boss.post(f"/accounts/{viewer.account_id}/disable")
    assert r.status_code == 200 and r.json()["disabled_at"]
    refused = httpx.get(f"{server.url}/api/v1/me", headers=device)
    assert refused.status_code == 401 and refused.json()["type"].endswith("/account-disabled")
    again = httpx.post(f"{server.url}/api/v1/sessions", json={"login": viewer.login, "password": viewer.password,
                                                             "device_name": "x"})
    assert again.status_code == 401
    events = _events(ctx, tenant.contract_id, head)
    assert [e.kind for e in events] == ["session", "account"]
    assert events[1].body["disabled_at"]  # the relay refuses it from its replica
    assert boss.post(f"/accounts/{viewer.account_id}/disable").status_code == 200  # twice: no second record
    assert len(_audit(ctx, tenant.contract_id, "account.disable")) == 1

    own = boss.post(f"/accounts/{admin.account_id}/disable")
    assert own.status_code == 409 and own.json()["type"].endswith("/own-account")

    r = boss.post(f"/accounts/{viewer.account_id}/enable")
    assert r.status_code == 200 and r.json()["disabled_at"] is None
    assert sign_in(server, viewer, "Counselling iPad")
    [row] = _audit(ctx, tenant.contract_id, "account.enable")
    assert row.detail == {"account_id": str(viewer.account_id), "login": viewer.login}
    assert _events(ctx, tenant.contract_id, head)[-2].kind == "account"  # enabled: the relays learn it too


def test_accounts_are_created_and_scoped_by_the_admin(
    ctx: Context, tenant: Tenant, boss: httpx.Client
) -> None:
    r = boss.post("/accounts", json={"login": "hygienist-1", "password": "first-pass-123",
                                     "clinic_ids": [str(tenant.clinic_ids[1])]})
    assert r.status_code == 201 and r.json()["clinic_scope"] == [str(tenant.clinic_ids[1])]
    new_id = r.json()["id"]
    listed = _account(boss, uuid.UUID(new_id))
    assert listed["session"] is None and listed["disabled_at"] is None and listed["is_admin"] is False
    r = boss.put(f"/accounts/{new_id}/scope", json={"clinic_ids": None})
    assert r.status_code == 200 and r.json()["clinic_scope"] is None
    assert [e.detail for e in _audit(ctx, tenant.contract_id, "scope.set")] == [
        {"account_id": new_id, "clinic_ids": None}]


def test_stations_are_listed_with_their_last_contact_and_a_code_enrolls_a_new_one(
    ctx: Context, server: LiveServer, tenant: Tenant, boss: httpx.Client, media_dir: Any
) -> None:
    with Client(server.url, tenant.station_tokens[0]) as chair:
        patient = chair.create_patient(tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ")
        item = chair.upload(media_dir / "photo.jpg", patient["id"])
    stations = {s["name"]: s for s in boss.get("/stations").json()["items"]}
    assert set(stations) == {"Chair 1", "Chair 2"}
    assert stations["Chair 1"]["last_contact_at"] is not None and stations["Chair 2"]["last_contact_at"] is None
    assert stations["Chair 1"]["last_contact_at"] >= item["created_at"][:19]

    r = boss.post(f"/clinics/{tenant.clinic_ids[1]}/enroll-codes")
    assert r.status_code == 201 and r.json()["clinic_id"] == str(tenant.clinic_ids[1]) and r.json()["expires_at"]
    code = r.json()["code"]
    enrolled = httpx.post(f"{server.url}/api/v1/stations/enroll", json={"code": code, "name": "Chair 9"})
    assert enrolled.status_code == 201
    [row] = _audit(ctx, tenant.contract_id, "station.enroll_code")
    assert row.actor_name == "admin-a" and code not in str(row.detail)
    new = next(s for s in boss.get("/stations").json()["items"] if s["name"] == "Chair 9")
    assert new["clinic_id"] == str(tenant.clinic_ids[1]) and new["last_contact_at"] is None

    r = boss.put(f"/stations/{new['id']}/scope", json={"clinic_ids": [str(tenant.clinic_ids[1])]})
    assert r.status_code == 200 and r.json()["clinic_scope"] == [str(tenant.clinic_ids[1])]
    r = boss.post(f"/stations/{new['id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked_at"]
    gone = httpx.get(f"{server.url}/api/v1/patients", headers=_h(enrolled.json()["token"]))
    assert gone.status_code == 401


ADMIN_ROUTES = [
    ("GET", "/accounts", None),
    ("POST", "/accounts", {"login": "someone", "password": "0123456789ab"}),
    ("PUT", "/accounts/{account}/scope", {"clinic_ids": None}),
    ("POST", "/accounts/{account}/password", {"password": "0123456789ab"}),
    ("POST", "/accounts/{account}/disable", None),
    ("POST", "/accounts/{account}/enable", None),
    ("DELETE", "/accounts/{account}/session", None),
    ("GET", "/stations", None),
    ("POST", "/clinics/{clinic}/enroll-codes", None),
    ("PUT", "/stations/{station}/scope", {"clinic_ids": None}),
    ("POST", "/stations/{station}/revoke", None),
]


def _call(server: LiveServer, token: str, method: str, path: str, body: Any, ids: dict[str, Any]) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/v1{path.format(**ids)}", headers=_h(token), json=body, timeout=30)


@sqlite_only
def test_only_a_contract_admin_may_and_the_refusal_is_problem_json(
    ctx: Context, server: LiveServer, tenant: Tenant, viewer: Viewer
) -> None:
    target = make_account(ctx, tenant, "target")
    ids = {"account": target.account_id, "clinic": tenant.clinic_ids[0], "station": tenant.station_ids[1]}
    for token in (sign_in(server, viewer), tenant.station_tokens[0]):
        for method, path, body in ADMIN_ROUTES:
            r = _call(server, token, method, path, body, ids)
            assert r.status_code == 403, (method, path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"].endswith("/forbidden") and "administrator" in r.json()["detail"]
    assert sign_in(server, target)  # nothing happened to it
    with ctx.db.read() as s:
        assert s.scalar(select(AuditEvent.id).where(AuditEvent.action.in_(
            ["account.disable", "account.password_reset", "session.end", "station.enroll_code"]))) is None


@sqlite_only
def test_another_contracts_ids_answer_exactly_like_ids_that_do_not_exist(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, admin: Viewer
) -> None:
    token = sign_in(server, admin)
    foreign = make_account(ctx, other_tenant, "foreign-dr")
    theirs = {"account": foreign.account_id, "clinic": other_tenant.clinic_ids[0],
              "station": other_tenant.station_ids[0]}
    nobody = {"account": uuid.uuid4(), "clinic": uuid.uuid4(), "station": uuid.uuid4()}
    for method, path, body in ADMIN_ROUTES:
        if "{" not in path:
            continue
        a = _call(server, token, method, path, body, theirs)
        b = _call(server, token, method, path, body, nobody)
        assert a.status_code == b.status_code == 404, (method, path, a.text)
        assert {k: v for k, v in a.json().items() if k != "instance"} == \
            {k: v for k, v in b.json().items() if k != "instance"}
    assert sign_in(server, foreign)  # untouched
    with ctx.db.read() as s:
        assert s.scalar(select(AuditEvent.id).where(AuditEvent.contract_id == other_tenant.contract_id,
                                                    AuditEvent.action.like("account.%"))) is None


@sqlite_only
def test_a_relay_reads_the_disable_in_its_feed(
    ctx: Context, server: LiveServer, tenant: Tenant, boss: httpx.Client, viewer: Viewer
) -> None:
    _, relay_token = create_relay(ctx, tenant.clinic_ids[0])
    head = httpx.get(f"{server.url}/api/v1/feed", headers=_h(relay_token), params={"after": 0, "limit": 1000}
                     ).json()["head"]
    assert boss.post(f"/accounts/{viewer.account_id}/disable").status_code == 200
    page = httpx.get(f"{server.url}/api/v1/feed", headers=_h(relay_token), params={"after": head}).json()
    account = next(e for e in page["items"] if e["kind"] == "account")
    assert account["id"] == str(viewer.account_id) and account["body"]["disabled_at"]
