"""The operator's commands: plans, plan requests and invoices, with the bad input an operator can type."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import Contract, IssuedInvoice, PlanChange, utcnow
from chairside.domain.billing import Month, late_interest
from chairside.domain.calendar import japan_day
from chairside.quota import plan_changes
from tests.admin_cli import run_admin
from tests.factories import Tenant, make_clinic, make_contract
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
    with ctx.db.read() as s:  # after the tenant's first plan, recorded when it was made
        [change] = s.scalars(select(PlanChange).where(PlanChange.contract_id == tenant.contract_id,
                                                      PlanChange.reason != "onboarding")).all()
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
    with ctx.db.read() as s:  # after the tenant's first plan, recorded when it was made
        [change] = s.scalars(select(PlanChange).where(PlanChange.contract_id == tenant.contract_id,
                                                      PlanChange.reason != "onboarding")).all()
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
    contract_id = make_contract(ctx, "=HYPERLINK(\"x\") 歯科", 300, created_at=created)
    make_clinic(ctx, contract_id, "本院", created_at=created)
    return contract_id


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


# --- cancellation notices ---------------------------------------------------------------------------


def _small_contract(ctx: Context, created: datetime | None = None) -> uuid.UUID:
    """A 100-hour contract with one clinic, started on 20 January 2026: 7,900 yen a month from March."""
    created = created or datetime(2026, 1, 20, 10, tzinfo=JST)
    contract_id = make_contract(ctx, "小さな歯科", 100, created_at=created)
    make_clinic(ctx, contract_id, "本院", created_at=created)
    return contract_id


def _billed_months(ctx: Context, contract_id: uuid.UUID, *months: str) -> list[str]:
    """The months among `months` in which the contract has an invoice."""
    found = []
    for month in months:
        out = run_admin(ctx, "invoices", "--month", month)
        assert out.exit_code == 0, out.stderr
        if any(i["contract_id"] == str(contract_id) for i in out.json()["invoices"]):
            found.append(month)
    return found


@pytest.mark.parametrize(("notice_on", "ends_on", "last_month"), [
    ("2026-03-20", "2026-03-31", "2026-03"),  # 11 days before the end of a 31-day month: ends that month
    ("2026-03-21", "2026-03-31", "2026-03"),  # 10 days: still that month
    ("2026-03-22", "2026-04-30", "2026-04"),  # 9 days: a month later
])
def test_a_cancellation_notice_ends_the_invoices_by_the_10_day_rule(
    ctx: Context, notice_on: str, ends_on: str, last_month: str
) -> None:
    c = _small_contract(ctx)
    out = run_admin(ctx, "contract", "cancel", "--contract", str(c), "--notice-on", notice_on)
    assert out.exit_code == 0, out.stderr
    assert out.json() | {"note": None} == {
        "contract_id": str(c), "cancellation_notice_on": notice_on, "ends_on": ends_on,
        "last_billed_month": last_month, "replaced_notice_on": None, "note": None}
    with ctx.db.read() as s:
        assert str(s.scalar(select(Contract.cancellation_notice_on).where(Contract.id == c))) == notice_on
    assert _billed_months(ctx, c, "2026-02", "2026-03", "2026-04", "2026-05") == [
        m for m in ("2026-02", "2026-03", "2026-04") if m <= last_month]
    [march] = run_admin(ctx, "invoices", "--month", "2026-03").json()["invoices"]
    assert march["total_yen"] == 7_900  # the month the contract ends in is billed in full


def test_a_notice_is_replaced_only_when_asked_and_can_be_withdrawn(ctx: Context) -> None:
    c = _small_contract(ctx)
    cancel = ("contract", "cancel", "--contract", str(c))
    assert run_admin(ctx, *cancel, "--notice-on", "2026-03-20").exit_code == 0
    again = run_admin(ctx, *cancel, "--notice-on", "2026-03-20")  # the same notice twice: nothing changes
    assert again.exit_code == 0 and "already recorded" in again.json()["note"]
    other = run_admin(ctx, *cancel, "--notice-on", "2026-03-22")
    assert other.exit_code == 2 and other.stderr.startswith("error: ")
    assert "already has a cancellation notice received on 2026-03-20" in other.stderr and "--replace" in other.stderr
    replaced = run_admin(ctx, *cancel, "--notice-on", "2026-03-22", "--replace")
    assert replaced.exit_code == 0, replaced.stderr
    assert (replaced.json()["ends_on"], replaced.json()["replaced_notice_on"]) == ("2026-04-30", "2026-03-20")
    assert _billed_months(ctx, c, "2026-04", "2026-05") == ["2026-04"]
    withdrawn = run_admin(ctx, *cancel, "--withdraw")
    assert withdrawn.exit_code == 0 and withdrawn.json()["withdrawn_notice_on"] == "2026-03-22"
    assert _billed_months(ctx, c, "2026-04", "2026-05") == ["2026-04", "2026-05"]
    assert run_admin(ctx, *cancel, "--withdraw").json()["note"] == "no notice was recorded"


def test_bad_cancellation_notices_are_refused(ctx: Context) -> None:
    c = _small_contract(ctx)
    cancel = ("contract", "cancel", "--contract", str(c))
    tomorrow = japan_day(utcnow()) + timedelta(days=1)
    for args, says in [
        (("--notice-on", "2026-01-19"), "a notice on 2026-01-19 is before the service started on 2026-01-20"),
        (("--notice-on", str(tomorrow)), f"a notice on {tomorrow} is in the future"),
        (("--notice-on", "2026-02-30"), "the notice date '2026-02-30' is not a date"),
        (("--notice-on", "2026/03/20"), "write it as YYYY-MM-DD"),
        ((), "give either --notice-on YYYY-MM-DD (record the notice) or --withdraw (clear it), not neither"),
        (("--notice-on", "2026-03-20", "--withdraw"), "not both"),
    ]:
        out = run_admin(ctx, *cancel, *args)
        assert out.exit_code == 2 and out.stdout == "", args
        assert out.stderr.startswith("error: ") and says in out.stderr, out.stderr
    missing = str(uuid.uuid4())
    out = run_admin(ctx, "contract", "cancel", "--contract", missing, "--notice-on", "2026-03-20")
    assert out.exit_code == 2 and f"There is no contract {missing}" in out.stderr
    with ctx.db.read() as s:
        assert s.scalar(select(Contract.cancellation_notice_on).where(Contract.id == c)) is None


def test_a_notice_cannot_end_the_contract_before_invoices_already_issued_or_a_clinic_is_set_up(ctx: Context) -> None:
    c = _small_contract(ctx)
    assert run_admin(ctx, "invoices", "--month", "2026-05", "--issue", "--due-on", "2026-06-30").exit_code == 0
    out = run_admin(ctx, "contract", "cancel", "--contract", str(c), "--notice-on", "2026-03-20")
    assert out.exit_code == 2
    assert "ends the contract on 2026-03-31, but invoices were already issued for 2026-05" in out.stderr
    make_clinic(ctx, c, "分院", created_at=datetime(2026, 7, 1, 10, tzinfo=JST))
    out = run_admin(ctx, "contract", "cancel", "--contract", str(c), "--notice-on", "2026-05-10")
    assert out.exit_code == 2 and "is set up on 2026-07-01, after the contract ends on 2026-05-31" in out.stderr
    with ctx.db.read() as s:
        assert s.scalar(select(Contract.cancellation_notice_on).where(Contract.id == c)) is None


# --- issuing invoices ------------------------------------------------------------------------------


def _issued(ctx: Context, contract_id: uuid.UUID) -> list[tuple[str, int, str, str | None]]:
    with ctx.db.read() as s:
        rows = s.scalars(select(IssuedInvoice).where(IssuedInvoice.contract_id == contract_id)
                         .order_by(IssuedInvoice.month)).all()
        return [(r.month, r.amount_yen, str(r.due_on), str(r.paid_on) if r.paid_on else None) for r in rows]


def test_issuing_a_month_records_each_invoice_once_and_keeps_the_first_record(ctx: Context) -> None:
    a = _small_contract(ctx)
    b = _billed_contract(ctx)
    out = run_admin(ctx, "invoices", "--month", "2026-02", "--issue", "--due-on", "2026-03-31")
    assert out.exit_code == 0, out.stderr
    issued = out.json()["issued"]
    assert {i["contract_id"]: (i["status"], i["amount_yen"], i["issued_on"], i["due_on"]) for i in issued} == {
        str(a): ("issued", 5_700 + 2_200 + 88_000, "2026-02-28", "2026-03-31"),
        str(b): ("issued", 5_700 + 6_400 + 88_000, "2026-02-28", "2026-03-31")}
    assert f"issued: contract {a}, 2026-02: 95,900 yen, due 2026-03-31" in out.stderr
    assert _issued(ctx, a) == [("2026-02", 95_900, "2026-03-31", None)]

    again = run_admin(ctx, "invoices", "--month", "2026-02", "--issue", "--due-on", "2026-04-15", "--format", "csv")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.startswith("contract_id,month")
    assert f"note: contract {a}, 2026-02 was already issued (95,900 yen, due 2026-03-31); the first record is kept" \
        in again.stderr
    assert _issued(ctx, a) == [("2026-02", 95_900, "2026-03-31", None)]
    assert [i["status"] for i in run_admin(ctx, "invoices", "--month", "2026-02", "--issue").json()["issued"]] == [
        "already issued", "already issued"]

    c = _small_contract(ctx, datetime(2026, 2, 10, 9, tzinfo=JST))  # started in February: first billed in March
    later = run_admin(ctx, "invoices", "--month", "2026-02", "--issue", "--due-on", "2026-03-31").json()["issued"]
    assert str(c) not in [i["contract_id"] for i in later]
    assert _issued(ctx, c) == []


def test_the_default_due_date_is_the_end_of_the_month_after_the_billed_month(ctx: Context) -> None:
    c = _small_contract(ctx)
    today = japan_day(utcnow())
    latest = Month.of(today) if today == Month.of(today).last_day else Month.of(today).previous()
    out = run_admin(ctx, "invoices", "--month", str(latest), "--issue")
    assert out.exit_code == 0, out.stderr
    [issued] = out.json()["issued"]
    assert issued["due_on"] == str(latest.next().last_day) and issued["issued_on"] == str(latest.last_day)
    assert _issued(ctx, c) == [(str(latest), 7_900, str(latest.next().last_day), None)]

    past = run_admin(ctx, "invoices", "--month", "2026-03", "--issue")  # its default due date has passed
    assert past.exit_code == 2 and past.stdout == ""
    assert ("the default due date of the 2026-03 invoices, 2026-04-30 (the last day of the month after them), "
            "has already passed") in past.stderr and "--due-on YYYY-MM-DD" in past.stderr
    assert [m for m, *_ in _issued(ctx, c)] == [str(latest)]


@pytest.mark.parametrize(("args", "says"), [
    (("--due-on", "2026-04-30"), "--due-on is the due date of invoices being issued: use it with --issue"),
    (("--issue", "--due-on", "2026-03-30"), "a due date of 2026-03-30 is before the 2026-03 invoices are issued on "
                                            "2026-03-31"),
    (("--issue", "--due-on", "30 April"), "the due date '30 April' is not a date"),
    (("--issue", "--due-on", "2026-04-31"), "the due date '2026-04-31' is not a date"),
])
def test_bad_issue_options_are_refused_and_nothing_is_recorded(ctx: Context, args: tuple[str, ...], says: str) -> None:
    c = _small_contract(ctx)
    out = run_admin(ctx, "invoices", "--month", "2026-03", *args)
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.startswith("error: ") and says in out.stderr
    assert _issued(ctx, c) == []


# --- payments and late interest --------------------------------------------------------------------


def _interest_lines(ctx: Context, contract_id: uuid.UUID, month: str) -> list[tuple[int, str]]:
    out = run_admin(ctx, "invoices", "--month", month)
    assert out.exit_code == 0, out.stderr
    [invoice] = [i for i in out.json()["invoices"] if i["contract_id"] == str(contract_id)]
    return [(line["amount_yen"], line["description"]) for line in invoice["lines"] if line["code"] == "late_interest"]


def test_an_invoice_paid_30_days_late_puts_the_interest_on_the_next_invoice(ctx: Context) -> None:
    c = _small_contract(ctx)
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--issue", "--due-on", "2026-04-30").exit_code == 0
    assert _issued(ctx, c) == [("2026-03", 7_900, "2026-04-30", None)]
    # Due 30 April, paid 31 May: interest from 1 May to 30 May, 30 days.
    out = run_admin(ctx, "payment", "record", "--contract", str(c), "--month", "2026-03", "--paid-on", "2026-05-31",
                    "--amount", "7,900円")
    assert out.exit_code == 0, out.stderr
    paid = out.json()
    expected = 7_900 * 146 * 30 // (1_000 * 365)  # floor(7900 x 14.6 % x 30 / 365) = floor(94.8)
    assert expected == 94 == late_interest(7_900, date(2026, 4, 30), date(2026, 5, 31))
    assert (paid["status"], paid["late_days"], paid["late_interest_yen"]) == ("paid late", 30, 94)
    assert _issued(ctx, c) == [("2026-03", 7_900, "2026-04-30", "2026-05-31")]

    assert _interest_lines(ctx, c, "2026-04") == []  # not due before 30 April's end
    assert _interest_lines(ctx, c, "2026-05") == [
        (94, "Late payment interest on invoice 2026-03 (7,900 yen due 2026-04-30): 30 days at 14.6% a year")]
    [may] = run_admin(ctx, "invoices", "--month", "2026-05").json()["invoices"]
    assert may["total_yen"] == 7_900 + 94
    assert _interest_lines(ctx, c, "2026-06") == []  # paid: nothing more accrues


def test_a_payment_on_time_or_the_day_after_the_due_date_owes_no_interest(ctx: Context) -> None:
    c = _small_contract(ctx)
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--issue", "--due-on", "2026-04-30").exit_code == 0
    out = run_admin(ctx, "payment", "record", "--contract", str(c), "--month", "2026-03", "--paid-on", "2026-05-01")
    assert out.exit_code == 0 and (out.json()["status"], out.json()["late_interest_yen"]) == ("paid", 0)
    assert _interest_lines(ctx, c, "2026-05") == []


def test_an_unpaid_invoice_accrues_interest_month_after_month_until_paid(ctx: Context) -> None:
    c = _small_contract(ctx)
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--issue", "--due-on", "2026-04-30").exit_code == 0
    due = date(2026, 4, 30)
    monthly = {month: [yen for yen, _ in _interest_lines(ctx, c, month)] for month in
               ("2026-04", "2026-05", "2026-06", "2026-07")}
    # Cumulative interest to each month's end, differenced: 31 days (97), 61 (192), 92 (290).
    assert monthly == {"2026-04": [], "2026-05": [97], "2026-06": [192 - 97], "2026-07": [290 - 192]}
    assert 97 + 95 + 98 == late_interest(7_900, due, date(2026, 8, 1)) == 290

    listed = run_admin(ctx, "payment", "list", "--contract", str(c), "--unpaid").json()
    [item] = listed["items"]
    today = japan_day(utcnow())
    assert (item["month"], item["status"], item["paid_on"]) == ("2026-03", "overdue", None)
    assert item["late_interest_yen"] == late_interest(7_900, due, today) and listed["unpaid_total_yen"] == 7_900

    assert run_admin(ctx, "payment", "record", "--contract", str(c), "--month", "2026-03",
                     "--paid-on", "2026-08-10").exit_code == 0
    assert _interest_lines(ctx, c, "2026-08")[0][0] == late_interest(7_900, due, date(2026, 8, 10)) - 290 == 29
    assert _interest_lines(ctx, c, "2026-09") == []
    assert run_admin(ctx, "payment", "list", "--unpaid").json() == {"as_of": str(today), "items": [],
                                                                   "unpaid_total_yen": 0}
    [paid] = run_admin(ctx, "payment", "list").json()["items"]
    assert (paid["status"], paid["late_days"], paid["late_interest_yen"]) == ("paid late", 101, 319)


def test_a_late_payment_recorded_after_the_next_invoices_were_issued_warns_of_the_excess(ctx: Context) -> None:
    c = _small_contract(ctx)
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--issue", "--due-on", "2026-04-30").exit_code == 0
    assert run_admin(ctx, "invoices", "--month", "2026-05", "--issue", "--due-on", "2026-06-30").exit_code == 0
    assert _issued(ctx, c)[1] == ("2026-05", 7_900 + 97, "2026-06-30", None)  # interest to 31 May, as unpaid
    out = run_admin(ctx, "payment", "record", "--contract", str(c), "--month", "2026-03", "--paid-on", "2026-05-20")
    assert out.exit_code == 0, out.stderr
    assert out.json()["late_interest_yen"] == 60  # 19 days
    assert "billed interest on the 2026-03 invoice as if it were unpaid to 2026-05-31: 37 yen more" in out.stderr
    again = run_admin(ctx, "invoices", "--month", "2026-05", "--issue")
    assert "the first record is kept" in again.stderr and "computed now, it comes to 7,960 yen" in again.stderr
    assert _issued(ctx, c)[1] == ("2026-05", 7_997, "2026-06-30", None)


def _bases(ctx: Context, contract_id: uuid.UUID) -> dict[str, tuple[int, int]]:
    """Each issued invoice's month -> (amount_yen, interest_base_yen)."""
    with ctx.db.read() as s:
        rows = s.scalars(select(IssuedInvoice).where(IssuedInvoice.contract_id == contract_id)).all()
        return {r.month: (r.amount_yen, r.interest_base_yen) for r in rows}


@pytest.mark.parametrize(("march_paid_on", "carried", "may_paid_on", "days", "interest"), [
    # March paid on 31 May, before May is issued: May carries 30 days of it, 94 yen, so May is 7,994 yen.
    # May paid 31 July: 30 days (1 to 30 July) on its 7,900 yen of charges:
    # 7,900 x 0.146 x 30 / 365 = 94.8 -> 94 (on the whole 7,994 it would be 95.9 -> 95).
    ("2026-05-31", 94, "2026-07-31", 30, 94),
    # March still unpaid when May is issued: May carries 31 days of it (1 to 31 May), 97 yen: 7,997 yen.
    # May paid 31 October: 122 days (1 July to 30 October) on 7,900 yen:
    # 7,900 x 146 x 122 / 365,000 = 140,714,800 / 365,000 = 385.5 -> 385 (on 7,997: 390.3 -> 390).
    (None, 97, "2026-10-31", 122, 385),
])
def test_an_invoice_that_carried_interest_and_is_paid_late_owes_interest_on_its_charges_only(
    ctx: Context, march_paid_on: str | None, carried: int, may_paid_on: str, days: int, interest: int
) -> None:
    c = _small_contract(ctx)
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--issue", "--due-on", "2026-04-30").exit_code == 0
    if march_paid_on is not None:
        assert run_admin(ctx, "payment", "record", "--contract", str(c), "--month", "2026-03",
                         "--paid-on", march_paid_on).exit_code == 0
    out = run_admin(ctx, "invoices", "--month", "2026-05", "--issue", "--due-on", "2026-06-30")
    assert out.exit_code == 0, out.stderr
    [issued] = out.json()["issued"]
    assert (issued["amount_yen"], issued["interest_base_yen"]) == (7_900 + carried, 7_900)
    assert _bases(ctx, c)["2026-05"] == (7_900 + carried, 7_900)
    assert _bases(ctx, c)["2026-03"] == (7_900, 7_900)

    record = ("payment", "record", "--contract", str(c), "--month", "2026-05", "--paid-on", may_paid_on)
    partial = run_admin(ctx, *record, "--amount", "7,900")  # the charges alone are not the invoice
    assert partial.exit_code == 2 and "only payments in full are recorded" in partial.stderr
    out = run_admin(ctx, *record, "--amount", f"{7_900 + carried:,}")
    assert out.exit_code == 0, out.stderr
    paid = out.json()
    assert (paid["amount_yen"], paid["interest_base_yen"]) == (7_900 + carried, 7_900)
    assert (paid["status"], paid["late_days"], paid["late_interest_yen"]) == ("paid late", days, interest)
    assert interest == late_interest(7_900, date(2026, 6, 30), date.fromisoformat(may_paid_on))
    assert interest < late_interest(7_900 + carried, date(2026, 6, 30), date.fromisoformat(may_paid_on))

    listed = {i["month"]: i for i in run_admin(ctx, "payment", "list", "--contract", str(c)).json()["items"]}
    assert (listed["2026-05"]["late_interest_yen"], listed["2026-05"]["interest_base_yen"]) == (interest, 7_900)

    # The invoices from June to the month of the payment bill it, month by month, on the charges only.
    month, lines = Month(2026, 6), []
    while month <= Month.of(date.fromisoformat(may_paid_on)):
        lines += [(yen, text) for yen, text in _interest_lines(ctx, c, str(month)) if "invoice 2026-05" in text]
        month = month.next()
    assert sum(yen for yen, _ in lines) == interest
    assert lines[0][1].startswith(f"Late payment interest on invoice 2026-05 ({7_900 + carried:,} yen due 2026-06-30)")
    assert all(text.endswith("at 14.6% a year on 7,900 yen of charges") for _, text in lines)


def test_the_excess_warning_counts_interest_on_the_charges_only(ctx: Context) -> None:
    c = _small_contract(ctx)
    for month, due in (("2026-03", "2026-04-30"), ("2026-05", "2026-06-30"), ("2026-07", "2026-08-31")):
        assert run_admin(ctx, "invoices", "--month", month, "--issue", "--due-on", due).exit_code == 0
    # May carried 97 yen on the unpaid March (7,997 yen, of which 7,900 of charges); July billed interest on
    # May as unpaid to 31 July: 1 to 31 July, 31 days, 7,900 x 0.146 x 31 / 365 = 97.9 -> 97.
    assert _bases(ctx, c)["2026-05"] == (7_997, 7_900)
    out = run_admin(ctx, "payment", "record", "--contract", str(c), "--month", "2026-05", "--paid-on", "2026-07-10")
    assert out.exit_code == 0, out.stderr
    # Owed to 10 July: 1 to 9 July, 9 days, 7,900 x 0.146 x 9 / 365 = 28.4 -> 28; excess 97 - 28 = 69
    # (on the whole 7,997 it would be 99 - 28 = 71).
    assert out.json()["late_interest_yen"] == 28
    assert "billed interest on the 2026-05 invoice as if it were unpaid to 2026-07-31: 69 yen more" in out.stderr


def test_bad_payments_are_refused(ctx: Context) -> None:
    c = _small_contract(ctx)
    assert run_admin(ctx, "invoices", "--month", "2026-03", "--issue", "--due-on", "2026-04-30").exit_code == 0
    record = ("payment", "record", "--contract", str(c))
    tomorrow = japan_day(utcnow()) + timedelta(days=1)
    for args, says in [
        (("--month", "2026-04", "--paid-on", "2026-05-10"),
         f"no invoice for 2026-04 was issued to contract {c} (its issued invoices are for 2026-03)"),
        (("--month", "2026-03", "--paid-on", str(tomorrow)), f"a payment on {tomorrow} is in the future"),
        (("--month", "2026-03", "--paid-on", "2026-03-30"),
         "a payment on 2026-03-30 is before the 2026-03 invoice was issued on 2026-03-31"),
        (("--month", "2026-03", "--paid-on", "2026-05-32"), "the payment date '2026-05-32' is not a date"),
        (("--month", "2026-13", "--paid-on", "2026-05-10"), "the month must be 01 to 12"),
        (("--month", "2026-03", "--paid-on", "2026-05-10", "--amount", "-7900"), "the amount '-7900' is negative"),
        (("--month", "2026-03", "--paid-on", "2026-05-10", "--amount", "7900.5"),
         "the amount '7900.5' is not a whole number of yen"),
        (("--month", "2026-03", "--paid-on", "2026-05-10", "--amount", "abc"), "is not a whole number of yen"),
        (("--month", "2026-03", "--paid-on", "2026-05-10", "--amount", "7,000"),
         "7,000 yen received, but the 2026-03 invoice of contract"),
    ]:
        out = run_admin(ctx, *record, *args)
        assert out.exit_code == 2 and out.stdout == "", args
        assert out.stderr.startswith("error: ") and says in out.stderr, out.stderr
    assert _issued(ctx, c) == [("2026-03", 7_900, "2026-04-30", None)]

    assert run_admin(ctx, *record, "--month", "2026-03", "--paid-on", "2026-05-10").exit_code == 0
    twice = run_admin(ctx, *record, "--month", "2026-03", "--paid-on", "2026-05-11")
    assert twice.exit_code == 2
    assert f"the 2026-03 invoice of contract {c} (7,900 yen) was already paid on 2026-05-10" in twice.stderr
    assert _issued(ctx, c) == [("2026-03", 7_900, "2026-04-30", "2026-05-10")]

    missing = str(uuid.uuid4())
    for args in (("payment", "record", "--contract", missing, "--month", "2026-03", "--paid-on", "2026-05-10"),
                 ("payment", "list", "--contract", missing)):
        out = run_admin(ctx, *args)
        assert out.exit_code == 2 and f"There is no contract {missing}" in out.stderr
    other = _small_contract(ctx)
    out = run_admin(ctx, "payment", "record", "--contract", str(other), "--month", "2026-03", "--paid-on", "2026-05-10")
    assert out.exit_code == 2 and "(it has no issued invoice)" in out.stderr
