"""POST /api/v1/plan-requests: a contract admin asks for more hours; the operator decides at the CLI."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chairside.context import Context
from tests.admin_cli import run_admin
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer
from tests.quota.helpers import HOUR_MS, set_counter


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ask(server: LiveServer, token: str, hours: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/plan-requests", headers=_h(token), json={"hours": hours})


@pytest.fixture
def admin_token(server: LiveServer, admin: Viewer) -> str:
    return sign_in(server, admin)


def test_an_admin_asks_for_100_more_hours_and_the_approval_applies_at_once(
    ctx: Context, server: LiveServer, tenant: Tenant, admin_token: str
) -> None:
    r = _ask(server, admin_token, 200)
    assert r.status_code == 201, r.text
    request = r.json()
    assert (request["hours"], request["plan_hours_then"], request["status"]) == (200, 100, "pending")
    assert request["requested_by_name"] == "admin-a" and request["decided_at"] is None
    listed = httpx.get(f"{server.url}/api/v1/plan-requests", headers=_h(admin_token)).json()["items"]
    assert [i["id"] for i in listed] == [request["id"]]

    assert run_admin(ctx, "plan-request", "approve", request["id"]).exit_code == 0
    quota = httpx.get(f"{server.url}/api/v1/quota", headers=_h(tenant.token)).json()
    assert quota["plan_hours"] == 200 and quota["remaining_hours"] == 200.0
    [decided] = httpx.get(f"{server.url}/api/v1/plan-requests", headers=_h(admin_token)).json()["items"]
    assert decided["status"] == "approved" and decided["decided_at"]


@pytest.mark.parametrize(("hours", "says"), [
    (0, "the smallest is 100"),
    (150, "the nearest are 100 and 200"),
    (4100, "the largest is 4000"),
    (-100, "-100 is not one of them"),
    ("abc", "'abc' is not a whole number"),
    (100, "The plan is already 100 hours"),
    (None, "Some fields are missing or invalid"),
])
def test_bad_plan_requests_are_refused_with_what_to_ask_for(
    server: LiveServer, admin_token: str, hours: Any, says: str
) -> None:
    r = _ask(server, admin_token, hours)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert says in r.json()["detail"]


def test_a_request_below_the_stored_hours_is_refused_with_the_figures(
    ctx: Context, server: LiveServer, tenant: Tenant, admin_token: str
) -> None:
    set_counter(ctx, tenant.contract_id, 350 * HOUR_MS + 6 * 60_000, plan_hours=200)  # over: a long recording
    r = _ask(server, admin_token, 300)
    assert r.status_code == 422
    assert "A 300-hour plan is smaller than the 350.1 hours of video already stored" in r.json()["detail"]
    assert _ask(server, admin_token, "400").status_code == 201


def test_only_a_contract_admin_may_ask(server: LiveServer, tenant: Tenant, viewer: Viewer) -> None:
    for token in (sign_in(server, viewer), tenant.token):
        r = _ask(server, token, 200)
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")
    assert httpx.post(f"{server.url}/api/v1/plan-requests", json={"hours": 200}).status_code == 401


def test_one_request_waits_at_a_time(server: LiveServer, admin_token: str) -> None:
    first = _ask(server, admin_token, 200).json()
    again = _ask(server, admin_token, 300)
    assert again.status_code == 409
    assert again.json()["pending_request_id"] == first["id"] and "still waiting" in again.json()["detail"]


def test_a_declined_request_leaves_the_plan_and_a_new_one_may_follow(
    ctx: Context, server: LiveServer, tenant: Tenant, admin_token: str
) -> None:
    first = _ask(server, admin_token, 200).json()
    assert run_admin(ctx, "plan-request", "decline", first["id"]).exit_code == 0
    assert httpx.get(f"{server.url}/api/v1/quota", headers=_h(tenant.token)).json()["plan_hours"] == 100
    assert _ask(server, admin_token, 200).status_code == 201


def test_an_approval_outdated_by_a_plan_change_is_refused(
    ctx: Context, server: LiveServer, tenant: Tenant, admin_token: str
) -> None:
    request = _ask(server, admin_token, 200).json()
    raised = run_admin(ctx, "contract", "set-plan", "--contract", str(tenant.contract_id), "--hours", "500")
    assert raised.exit_code == 0
    out = run_admin(ctx, "plan-request", "approve", request["id"])
    assert out.exit_code == 2 and "already 500 hours" in out.stderr
    assert run_admin(ctx, "plan-request", "decline", request["id"]).exit_code == 0
