"""Notices: one per upward crossing of each threshold, inserted with the counter change that made it."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Job, Media, Notice
from chairside.quota import plan_changes, usage
from tests.conftest import LiveServer
from tests.factories import Tenant
from tests.quota.helpers import HOUR_MS, counter, notices, set_counter


def _video(contract_id: uuid.UUID, ms: int) -> Media:
    """A video row as count_video sees it (the counter does not need it inserted)."""
    return Media(id=uuid.uuid4(), contract_id=contract_id, kind="video", duration_s=ms / 1000, source="station")


def _add(ctx: Context, contract_id: uuid.UUID, ms: int, percents: tuple[int, ...] = (80, 90, 95, 100)) -> None:
    with ctx.db.session() as s:
        usage.count_video(s, _video(contract_id, ms), percents=percents)


def _remove(ctx: Context, contract_id: uuid.UUID, ms: int) -> None:
    with ctx.db.session() as s:
        usage.uncount_video(s, _video(contract_id, ms))


def test_each_threshold_crossed_upward_gives_one_notice(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    _add(ctx, c, 80 * HOUR_MS - 1)
    assert notices(ctx, c) == []
    _add(ctx, c, 1)  # exactly 80 %
    assert notices(ctx, c) == [(80, 1)]
    _add(ctx, c, 4 * HOUR_MS)  # 84 %: nothing new
    assert notices(ctx, c) == [(80, 1)]
    _add(ctx, c, 12 * HOUR_MS)  # 96 %: two thresholds at once
    assert notices(ctx, c) == [(80, 1), (90, 1), (95, 1)]
    _add(ctx, c, 10 * HOUR_MS)  # 106 %
    _add(ctx, c, 10 * HOUR_MS)
    assert notices(ctx, c) == [(80, 1), (90, 1), (95, 1), (100, 1)]


def test_falling_below_a_threshold_and_crossing_it_again_is_a_new_crossing(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    _add(ctx, c, 81 * HOUR_MS)
    _remove(ctx, c, 2 * HOUR_MS)  # purged: 79 %
    _add(ctx, c, 1 * HOUR_MS)  # 80 % again
    assert notices(ctx, c) == [(80, 1), (80, 2)]


def test_the_thresholds_are_settings(ctx: Context, tenant: Tenant) -> None:
    _add(ctx, tenant.contract_id, 55 * HOUR_MS, percents=(50, 75))
    assert notices(ctx, tenant.contract_id) == [(50, 1)]


def test_a_smaller_plan_that_puts_the_stored_hours_past_a_threshold_sends_its_notice(
    ctx: Context, tenant: Tenant
) -> None:
    c = tenant.contract_id
    set_counter(ctx, c, 170 * HOUR_MS, plan_hours=300)
    plan_changes.set_plan(ctx.db, c, 200)  # 85 %
    assert notices(ctx, c) == [(80, 1)]
    plan_changes.set_plan(ctx.db, c, 400)  # 42.5 %: no notice going down
    plan_changes.set_plan(ctx.db, c, 200)
    assert notices(ctx, c) == [(80, 1), (80, 2)]


def test_the_notice_and_its_email_job_are_rolled_back_with_the_counter(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    set_counter(ctx, c, 80 * HOUR_MS - 1)

    def store_then_fail() -> None:
        with ctx.db.session() as s:
            usage.count_video(s, _video(c, 1000))
            raise RuntimeError("the media row could not be stored")

    with pytest.raises(RuntimeError):
        store_then_fail()
    assert counter(ctx, c) == 80 * HOUR_MS - 1
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Notice)) == 0
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_videos_finishing_at_once_around_a_threshold_give_exactly_one_notice(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    set_counter(ctx, c, 80 * HOUR_MS - 7_500)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def finish() -> None:
        try:
            barrier.wait()
            _add(ctx, c, 1000)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=finish) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert counter(ctx, c) == 80 * HOUR_MS - 7_500 + 16_000
    assert notices(ctx, c) == [(80, 1)]
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == usage.NOTICE_MAIL)) == 1


def test_the_api_lists_notices_newest_first_with_their_figures_and_email_state(
    ctx: Context, server: LiveServer, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    set_counter(ctx, tenant.contract_id, 90 * HOUR_MS - 500)  # past 80 % already, without its notice
    api.upload(media_dir / "clip.mp4", patient["id"])  # crosses 90 %
    r = httpx.get(f"{server.url}/api/v1/notices", headers={"Authorization": f"Bearer {tenant.token}"})
    assert r.status_code == 200
    [item] = r.json()["items"]
    assert item["kind"] == "quota" and item["threshold_percent"] == 90 and item["crossing"] == 1
    assert item["plan_hours"] == 100 and item["used_hours"] == 90.01
    assert "90%" in item["title"] and "100 more hours" in item["message"] and "trash" in item["message"]
    assert item["email"] == "pending"  # no SMTP server in this test
    set_counter(ctx, tenant.contract_id, 100 * HOUR_MS - 500)
    api.upload(media_dir / "clip2.mp4", patient["id"])
    items = httpx.get(f"{server.url}/api/v1/notices", headers={"Authorization": f"Bearer {tenant.token}"}).json()
    assert [i["threshold_percent"] for i in items["items"]] == [100, 90]  # 95 % was skipped by set_counter
    assert "New videos are refused" in items["items"][0]["message"]


def test_notices_of_another_contract_are_not_listed(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant
) -> None:
    _add(ctx, other_tenant.contract_id, 81 * HOUR_MS)
    r = httpx.get(f"{server.url}/api/v1/notices", headers={"Authorization": f"Bearer {tenant.token}"})
    assert r.json() == {"items": []}
    assert httpx.get(f"{server.url}/api/v1/notices").status_code == 401
