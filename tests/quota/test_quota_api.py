"""GET /api/v1/quota, and the forecast of the day the plan will be full."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Contract, QuotaDaily
from chairside.domain.calendar import japan_day
from chairside.quota import usage
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer, make_contract
from tests.quota.helpers import HOUR_MS, set_counter

TODAY = date(2026, 6, 15)


def _get(server: LiveServer, token: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/api/v1/quota", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_new_contract_has_its_whole_plan_left_and_no_forecast(server: LiveServer, tenant: Tenant) -> None:
    body = _get(server, tenant.token)
    assert {k: body[k] for k in ("plan_hours", "used_hours", "remaining_hours", "percent", "forecast_full_on")} == {
        "plan_hours": 100, "used_hours": 0.0, "remaining_hours": 100.0, "percent": 0.0, "forecast_full_on": None}
    assert "trash" in body["note"]


def test_after_a_recording_the_figures_move_and_a_forecast_appears(
    server: LiveServer, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    api.upload(media_dir / "clip.mp4", patient["id"])
    body = _get(server, tenant.token)
    assert body["used_hours"] == 0.01  # one second, to 0.01 h rounded up
    assert body["remaining_hours"] == 99.99
    assert body["percent"] == 0.0
    assert date.fromisoformat(body["forecast_full_on"]) > date.today() + timedelta(days=300 * 365)


def test_figures_are_rounded_to_hundredths_of_an_hour_and_tenths_of_a_percent(
    ctx: Context, server: LiveServer, tenant: Tenant
) -> None:
    set_counter(ctx, tenant.contract_id, 241 * HOUR_MS + 22 * 60_000 + 13_200, plan_hours=300)  # 241.3703 h
    body = _get(server, tenant.token)
    assert (body["used_hours"], body["remaining_hours"], body["percent"]) == (241.38, 58.62, 80.4)


def test_over_the_limit_nothing_remains_and_the_plan_is_full_today(
    ctx: Context, server: LiveServer, tenant: Tenant
) -> None:
    set_counter(ctx, tenant.contract_id, 150 * HOUR_MS + 30 * 60_000)
    body = _get(server, tenant.token)
    assert (body["used_hours"], body["remaining_hours"], body["percent"]) == (150.5, 0.0, 150.5)
    assert body["forecast_full_on"] == japan_day(datetime.now(UTC)).isoformat()


def test_viewers_and_contract_admins_see_the_quota_too(
    ctx: Context, server: LiveServer, tenant: Tenant, admin: Viewer, viewer: Viewer
) -> None:
    set_counter(ctx, tenant.contract_id, 42 * HOUR_MS)
    for who in (admin, viewer):
        assert _get(server, sign_in(server, who, device=f"PC of {who.login}"))["used_hours"] == 42.0
    assert httpx.get(f"{server.url}/api/v1/quota").status_code == 401


# --- the forecast -------------------------------------------------------------------------------


def _days(ctx: Context, contract_id: uuid.UUID, rows: dict[date, tuple[int, int]]) -> None:
    with ctx.db.session() as s:
        for day, (recorded, freed) in rows.items():
            s.add(QuotaDaily(contract_id=contract_id, day=day, recorded_ms=recorded, freed_ms=freed))


def _forecast(ctx: Context, contract_id: uuid.UUID, used_h: float, plan: int = 300,
              since: date | None = date(2025, 1, 1)) -> date | None:
    with ctx.db.session() as s:
        return usage.forecast_full_on(s, contract_id, int(used_h * HOUR_MS), plan, today=TODAY, window_days=30,
                                      since=since)


def test_the_forecast_follows_the_last_30_days_rate(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    _days(ctx, c, {TODAY - timedelta(days=i): (2 * HOUR_MS, 0) for i in range(30)})  # 2 h a day
    _days(ctx, c, {TODAY - timedelta(days=40): (500 * HOUR_MS, 0)})  # older than the window: ignored
    assert _forecast(ctx, c, 100) == TODAY + timedelta(days=100)  # 200 h left at 2 h a day
    assert _forecast(ctx, c, 299.5) == TODAY + timedelta(days=1)  # part of a day rounds up


def test_purges_lower_the_rate_and_no_growth_means_no_forecast(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    _days(ctx, c, {TODAY - timedelta(days=i): (2 * HOUR_MS, HOUR_MS) for i in range(30)})  # net 1 h a day
    assert _forecast(ctx, c, 100) == TODAY + timedelta(days=200)
    _days(ctx, c, {TODAY - timedelta(days=31): (0, 0)})
    other = make_contract(ctx, "purging", 300)
    _days(ctx, other, {TODAY - timedelta(days=i): (HOUR_MS, HOUR_MS) for i in range(30)})
    assert _forecast(ctx, other, 100) is None  # rate zero
    assert _forecast(ctx, uuid.uuid4(), 100) is None  # no history at all


def test_a_young_contract_is_forecast_from_the_days_it_has(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    _days(ctx, c, {TODAY - timedelta(days=i): (2 * HOUR_MS, 0) for i in range(5)})
    assert _forecast(ctx, c, 100, since=TODAY - timedelta(days=4)) == TODAY + timedelta(days=100)  # 2 h/day, not 10/30


def test_a_full_plan_is_full_today(ctx: Context, tenant: Tenant) -> None:
    assert _forecast(ctx, tenant.contract_id, 300) == TODAY


@pytest.mark.parametrize("days_old", [0, 45])
def test_the_api_forecast_uses_the_contract_age(ctx: Context, server: LiveServer, tenant: Tenant,
                                                days_old: int) -> None:
    now = datetime.now(UTC)
    today = japan_day(now)
    with ctx.db.session() as s:
        s.execute(update(Contract).where(Contract.id == tenant.contract_id)
                  .values(created_at=now - timedelta(days=days_old), stored_video_ms=50 * HOUR_MS))
    _days(ctx, tenant.contract_id, {today: (10 * HOUR_MS, 0)})
    body = _get(server, tenant.token)
    span = min(days_old, 29) + 1
    assert body["forecast_full_on"] == (today + timedelta(days=-(-50 * span // 10))).isoformat()
