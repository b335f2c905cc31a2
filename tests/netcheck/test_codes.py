"""Onboarding codes (netcheck/codes.py): hashed, expiring, a few runs each; refused as problem+json."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import AuditEvent, NetcheckCode, utcnow
from chairside.errors import Problem
from chairside.netcheck import codes
from tests.factories import Tenant


def test_a_code_is_stored_only_as_its_hash_and_expires(ctx: Context, tenant: Tenant) -> None:
    code, expires = codes.new_code(ctx, tenant.contract_id)
    assert len(codes.normalize(code)) == 12
    with ctx.db.read() as s:
        [row] = s.scalars(select(NetcheckCode)).all()
        assert row.contract_id == tenant.contract_id and row.expires_at == expires
        assert codes.normalize(code) not in row.code_hash and code not in row.code_hash
    assert timedelta(days=13) < expires - utcnow() <= timedelta(days=14)


def test_no_code_for_a_contract_that_does_not_exist(ctx: Context) -> None:
    with pytest.raises(LookupError):
        codes.new_code(ctx, uuid.uuid4())


def test_a_run_opens_a_window_and_is_audited_and_a_code_is_good_for_a_few_runs(ctx: Context, tenant: Tenant) -> None:
    code, _ = codes.new_code(ctx, tenant.contract_id)
    now = utcnow()
    run = codes.start_run(ctx, code.lower().replace("-", " "), 2.0, now=now)  # typed loosely still works
    assert run.until == now + timedelta(minutes=3) and run.runs_left == ctx.settings.netcheck_code_runs - 1
    codes.admit(ctx, code, now=now + timedelta(minutes=2))
    with ctx.db.read() as s:
        assert s.scalar(select(AuditEvent.action).where(AuditEvent.contract_id == tenant.contract_id)) == "netcheck.run"
    for _ in range(run.runs_left):
        codes.start_run(ctx, code, 1.0, now=now)
    with pytest.raises(Problem) as refused:
        codes.start_run(ctx, code, 1.0, now=now)
    assert refused.value.status == 403 and refused.value.code == "netcheck-code-used"


def test_a_bad_code_is_401_and_a_stale_code_is_403(ctx: Context, tenant: Tenant) -> None:
    code, expires = codes.new_code(ctx, tenant.contract_id)
    with pytest.raises(Problem) as bad:
        codes.start_run(ctx, "AAAA-BBBB-CCCC", 1.0)
    assert bad.value.status == 401 and "not right" in bad.value.detail
    with pytest.raises(Problem) as bad_ping:
        codes.admit(ctx, "AAAA-BBBB-CCCC")
    assert bad_ping.value.status == 401
    with pytest.raises(Problem) as stale:
        codes.start_run(ctx, code, 1.0, now=expires + timedelta(seconds=1))
    assert stale.value.status == 403 and stale.value.code == "netcheck-code-expired"
    assert "有効期限" in stale.value.detail and "expired" in stale.value.detail


def test_measurements_outside_a_run_are_refused(ctx: Context, tenant: Tenant) -> None:
    code, _ = codes.new_code(ctx, tenant.contract_id)
    with pytest.raises(Problem) as before:
        codes.admit(ctx, code)  # no run started yet
    assert before.value.status == 403 and before.value.code == "netcheck-run-ended"
    now = utcnow()
    codes.start_run(ctx, code, 0.5, now=now)
    with pytest.raises(Problem) as after:
        codes.admit(ctx, code, now=now + timedelta(minutes=2))  # 0.5 min + 1 min margin are over
    assert after.value.status == 403


def test_a_run_longer_than_allowed_is_refused_without_spending_the_code(ctx: Context, tenant: Tenant) -> None:
    code, _ = codes.new_code(ctx, tenant.contract_id)
    for minutes in (0.0, -1.0, ctx.settings.netcheck_max_minutes + 1):
        with pytest.raises(Problem) as refused:
            codes.start_run(ctx, code, minutes)
        assert refused.value.status == 422
    with ctx.db.read() as s:
        assert s.scalar(select(NetcheckCode.runs)) == 0
