"""`quota verify` recounts each contract from its own rows only, and reports without fixing unless asked; the
day's counters add up when a day holds several videos.

Written for the survivors of a mutmut run over quota/usage.py (docs/testing.md): the only test of verify had
one contract and went through the CLI, which always passes `fix`; the daily row was checked with one video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import QuotaDaily
from chairside.quota import usage
from tests.conftest import LiveServer
from tests.factories import Tenant, make_tenant
from tests.quota.helpers import counter, set_counter


def test_verify_recounts_each_contract_from_its_own_videos_and_reports_without_fixing_by_default(
        ctx: Context, server: LiveServer, api: Client, tenant: Tenant, patient: dict[str, Any],
        media_dir: Path) -> None:
    api.upload(media_dir / "clip.mp4", patient["id"])
    api.upload(media_dir / "clip2.mp4", patient["id"])  # a second video the same day adds to the day's row
    api.upload(media_dir / "photo.jpg", patient["id"])
    other = make_tenant(ctx, "別の歯科", clinics=1)
    with Client(server.url, other.token) as theirs:
        p = theirs.create_patient(other.clinic_ids[0], "X-1", "佐藤 花子", "サトウ ハナコ")
        theirs.upload(media_dir / "clip2.mp4", p["id"])
    ours, their_ms = counter(ctx, tenant.contract_id), counter(ctx, other.contract_id)
    assert ours > 0 and their_ms > 0
    with ctx.db.read() as s:
        day = s.scalars(select(QuotaDaily).where(QuotaDaily.contract_id == tenant.contract_id)).one()
        assert (day.recorded_ms, day.freed_ms) == (ours, 0)

    checked, drifts = usage.verify(ctx.db)
    assert checked == 2 and drifts == []  # each recount holds only the contract's own videos

    set_counter(ctx, tenant.contract_id, ours + 777)
    checked, drifts = usage.verify(ctx.db)  # by default: a report, nothing changed
    assert checked == 2
    assert [(d.contract_id, d.counter_ms, d.recount_ms) for d in drifts] == [(tenant.contract_id, ours + 777, ours)]
    assert counter(ctx, tenant.contract_id) == ours + 777
    _, drifts = usage.verify(ctx.db, fix=True)
    assert len(drifts) == 1
    assert (counter(ctx, tenant.contract_id), counter(ctx, other.contract_id)) == (ours, their_ms)
    assert usage.verify(ctx.db) == (2, [])
