"""The operator's commands: plans, plan requests and invoices, with the bad input an operator can type."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chairside import plan_changes
from chairside.api.context import Context
from chairside.db.models import Clinic, Contract, PlanChange, utcnow
from chairside.domain.billing import Month
from chairside.quota import japan_day
from tests.admin_cli import run_admin
from tests.conftest import Tenant
from tests.quota.helpers import HOUR_MS, set_counter

JST = ZoneInfo("Asia/Tokyo")


def _plan(ctx: Context, contract_id: uuid.UUID) -> int:
    with ctx.db.read() as s:
        value = s.scalar(select(Contract.plan_hours).where(Contract.id == contract_id))
        assert value is not None
        return value


# --- contract create / set-plan / onboard-plan ---------------------------------------------------


def test_contract_create_without_a_plan_starts_on_the_onboarding_plan_and_records_it(ctx: Context) -> None:
    out = run_admin(ctx, "contract", "create", "--name", "新規歯科")
    assert out.exit_code == 0, out.stderr
    created = out.json()
    assert created["plan_hours"] == 100
    with ctx.db.read() as s:
        [first] = s.scalars(select(PlanChange).where(PlanChange.contract_id == uuid.UUID(created["id"]))).all()
        assert (first.hours, first.previous_hours, first.reason) == (100, None, "onboarding")
    assert run_admin(ctx, "contract", "create", "--name", "大型", "--plan-hours", "1,000").json()["plan_hours"] == 1000


@pytest.mark.parametrize(("hours", "says"), [
    ("0", "0 is not one of them (the smallest is 100)"),
    ("150", "150 is not one of them (the nearest are 100 and 200)"),
    ("4100", "4100 is not one of them (the largest is 4000)"),
    ("-100", "-100 is not one of them"),
    ("abc", "'abc' is not a whole number"),
])
def test_plans_outside_100_to_4000_or_off_the_100_hour_steps_are_refused(
    ctx: Context, tenant: Tenant, hours: str, says: str
) -> None:
    out = run_admin(ctx, "contract", "set-plan", "--contract", str(tenant.contract_id), "--hours", hours)
    assert out.exit_code == 2
    assert out.stderr.startswith("error: ") and "plans run from 100 to 4000 hours in steps of 100" in out.stderr.lower()
    assert says in out.stderr
    assert _plan(ctx, tenant.contract_id) == 100
    created = run_admin(ctx, "contract", "create", "--name", "x", "--plan-hours", hours)
    assert created.exit_code == 2 and says in created.stderr


def test_set_plan_applies_at_once_and_is_recorded_with_its_time(ctx: Context, tenant: Tenant) -> None:
    before = utcnow()
    out = run_admin(ctx, "contract", "set-plan", "--contract", str(tenant.contract_id), "--hours", "300")
    assert out.exit_code == 0, out.stderr
    assert out.json() == {"contract_id": str(tenant.contract_id), "previous_plan_hours": 100, "plan_hours": 300}
    assert _plan(ctx, tenant.contract_id) == 300
    with ctx.db.read() as s:
        [change] = s.scalars(select(PlanChange).where(PlanChange.contract_id == tenant.contract_id)).all()
        assert (change.hours, change.previous_hours, change.reason) == (300, 100, "operator")
        assert change.effective_at >= before


def test_a_plan_below_the_stored_hours_is_refused_with_the_figures(ctx: Context, tenant: Tenant) -> None:
    set_counter(ctx, tenant.contract_id, 312 * HOUR_MS + 30 * 60_000, plan_hours=500)
    out = run_admin(ctx, "contract", "set-plan", "--contract", str(tenant.contract_id), "--hours", "300")
    assert out.exit_code == 2
    assert "A 300-hour plan is smaller than the 312.5 hours of video already stored" in out.stderr
    assert "at least 400 hours" in out.stderr
    assert _plan(ctx, tenant.contract_id) == 500


def test_onboard_plan_after_an_import_rounds_the_stored_hours_up_to_the_next_100(ctx: Context, tenant: Tenant) -> None:
    set_counter(ctx, tenant.contract_id, 312 * HOUR_MS + 1)  # an SSD import stored 312.0000003 h
    out = run_admin(ctx, "contract", "onboard-plan", "--contract", str(tenant.contract_id))
    assert out.exit_code == 0, out.stderr
    assert out.json()["plan_hours"] == 400 and out.json()["previous_plan_hours"] == 100
    set_counter(ctx, tenant.contract_id, 4001 * HOUR_MS)
    too_much = run_admin(ctx, "contract", "onboard-plan", "--contract", str(tenant.contract_id))
    assert too_much.exit_code == 2 and "more than the largest plan (4000 hours)" in too_much.stderr


def test_an_unknown_or_malformed_contract_id_is_a_clear_error(ctx: Context) -> None:
    out = run_admin(ctx, "contract", "set-plan", "--contract", "nope", "--hours", "200")
    assert out.exit_code == 2 and "'nope' is not a valid id" in out.stderr
    missing = str(uuid.uuid4())
    out = run_admin(ctx, "contract", "set-plan", "--contract", missing, "--hours", "200")
    assert out.exit_code == 2 and f"There is no contract {missing}" in out.stderr


# --- plan requests -------------------------------------------------------------------------------


def test_approve_applies_the_plan_and_a_decided_request_cannot_be_decided_again(ctx: Context, tenant: Tenant) -> None:
    request = plan_changes.request_plan(ctx.db, tenant.contract_id, 200, account_id=None, name="admin-a")
    listed = run_admin(ctx, "plan-request", "list").json()["items"]
    assert [(r["id"], r["hours"], r["status"]) for r in listed] == [(str(request.id), 200, "pending")]
    out = run_admin(ctx, "plan-request", "approve", str(request.id))
    assert out.exit_code == 0, out.stderr
    assert out.json()["status"] == "approved" and out.json()["decided_at"]
    assert _plan(ctx, tenant.contract_id) == 200
    with ctx.db.read() as s:
        [change] = s.scalars(select(PlanChange).where(PlanChange.contract_id == tenant.contract_id)).all()
        assert (change.reason, change.request_id, change.hours) == ("request", request.id, 200)
    for verb in ("approve", "decline"):
        again = run_admin(ctx, "plan-request", verb, str(request.id))
        assert again.exit_code == 2
        assert f"Plan request {request.id} was already approved on" in again.stderr
    assert _plan(ctx, tenant.contract_id) == 200
    assert run_admin(ctx, "plan-request", "list").json()["items"] == []


def test_decline_keeps_the_plan(ctx: Context, tenant: Tenant) -> None:
    request = plan_changes.request_plan(ctx.db, tenant.contract_id, 300, account_id=None)
    out = run_admin(ctx, "plan-request", "decline", str(request.id), "--reason", "支払い確認中")
    assert out.exit_code == 0 and out.json()["status"] == "declined" and out.json()["reason"] == "支払い確認中"
    assert _plan(ctx, tenant.contract_id) == 100
    assert run_admin(ctx, "plan-request", "approve", str(request.id)).exit_code == 2


def test_deciding_an_unknown_request_is_a_clear_error(ctx: Context) -> None:
    out = run_admin(ctx, "plan-request", "approve", str(uuid.uuid4()))
    assert out.exit_code == 2 and "There is no plan request" in out.stderr
    out = run_admin(ctx, "plan-request", "decline", "12")
    assert out.exit_code == 2 and "is not a valid id" in out.stderr


# --- invoices --------------------------------------------------------------------------------------


def _billed_contract(ctx: Context) -> uuid.UUID:
    created = datetime(2026, 1, 20, 10, tzinfo=JST)
    with ctx.db.session() as s:
        contract = Contract(name="=HYPERLINK(\"x\") 歯科", plan_hours=300, created_at=created)
        s.add(contract)
        s.flush()
        plan_changes.record_first_plan(s, contract)
        s.add(Clinic(contract_id=contract.id, name="本院", created_at=created))
        return contract.id


def test_invoices_as_json(ctx: Context) -> None:
    c = _billed_contract(ctx)
    out = run_admin(ctx, "invoices", "--month", "2026-02")
    assert out.exit_code == 0, out.stderr
    doc = out.json()
    assert doc["month"] == "2026-02" and doc["skipped"] == []
    [invoice] = doc["invoices"]
    assert invoice["contract_id"] == str(c) and invoice["currency"] == "JPY" and invoice["tax_included"] is True
    assert [line["code"] for line in invoice["lines"]] == ["maintenance", "plan", "setup_fee"]
    assert invoice["total_yen"] == doc["total_yen"] == 5_700 + 6_400 + 88_000
    assert all(isinstance(line["amount_yen"], int) for line in invoice["lines"])
    assert run_admin(ctx, "invoices", "--month", "2026-01").json()["invoices"] == []  # the start month is free


def test_invoices_as_csv_to_stdout_and_to_a_file_for_excel(ctx: Context, tmp_path: Path) -> None:
    _billed_contract(ctx)
    out = run_admin(ctx, "invoices", "--month", "2026-03", "--format", "csv")
    assert out.exit_code == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["contract_id", "month", "code", "description", "quantity", "unit_yen", "amount_yen",
                       "invoice_total_yen"]
    assert [r[2] for r in rows[1:]] == ["maintenance", "plan"] and {r[7] for r in rows[1:]} == {"12100"}
    path = tmp_path / "2026-03.csv"
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--format", "csv", "--output", str(path)).exit_code == 0
    assert path.read_bytes().startswith(b"\xef\xbb\xbfcontract_id,month")
    json_path = tmp_path / "2026-03.json"
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--output", str(json_path)).exit_code == 0
    assert json.loads(json_path.read_text())["total_yen"] == 12_100


@pytest.mark.parametrize(("month", "says"), [
    ("2026-13", "the month must be 01 to 12"),
    ("2026-00", "the month must be 01 to 12"),
    ("26-04", "write it as YYYY-MM"),
    ("2026/04", "write it as YYYY-MM"),
    ("April", "write it as YYYY-MM"),
    ("", "write it as YYYY-MM"),
])
def test_a_malformed_month_is_refused(ctx: Context, month: str, says: str) -> None:
    out = run_admin(ctx, "invoices", "--month", month)
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and says in out.stderr


def test_a_month_not_over_yet_is_refused(ctx: Context) -> None:
    today = japan_day(utcnow())
    for month in (Month.of(today).next(), Month(today.year + 3, 1)):
        out = run_admin(ctx, "invoices", "--month", str(month), "--format", "csv")
        assert out.exit_code == 2 and out.stdout == ""
        assert f"{month} is not over yet: its invoices are issued on {month.last_day}" in out.stderr
        assert "The latest month that can be invoiced is" in out.stderr
    this = Month.of(today)
    current = run_admin(ctx, "invoices", "--month", str(this))
    assert current.exit_code == (0 if today == this.last_day else 2)
