"""The operator's plan, quota and billing commands, added to `chairside admin` by `register`.

    chairside admin --data DIR contract set-plan --contract ID --hours H
    chairside admin --data DIR contract onboard-plan --contract ID
    chairside admin --data DIR contract set-contacts --contract ID --email a@example.jp [--email ...]
    chairside admin --data DIR plan-request list [--status pending]
    chairside admin --data DIR plan-request approve ID
    chairside admin --data DIR plan-request decline ID [--reason TEXT]
    chairside admin --data DIR contract cancel --contract ID --notice-on YYYY-MM-DD [--replace]
    chairside admin --data DIR contract cancel --contract ID --withdraw
    chairside admin --data DIR invoices --month YYYY-MM [--format json|csv] [--output FILE]
                                        [--issue [--due-on YYYY-MM-DD]]
    chairside admin --data DIR payment record --contract ID --month YYYY-MM --paid-on YYYY-MM-DD [--amount YEN]
    chairside admin --data DIR payment list [--contract ID] [--unpaid]
    chairside admin --data DIR quota show --contract ID
    chairside admin --data DIR quota verify [--fix]
    chairside admin --data DIR notices send

Every refusal prints `error: ...` on standard error and exits with code 2. The billing rules
behind cancellation notices, issued invoices, due dates and payments: docs/billing.md.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.billing.invoices import contract_billing, invoices_for_month, invoices_in
from chairside.cli.common import emit, fail, parse_uuid
from chairside.context import Context
from chairside.db.models import Contract, IssuedInvoice, PlanRequest, utcnow
from chairside.domain.billing import (
    Invoice,
    Month,
    contract_end_for_notice,
    invoice_to_json,
    invoices_to_csv,
    late_interest,
    late_interest_days,
    parse_month,
)
from chairside.domain.calendar import japan_day
from chairside.errors import Problem
from chairside.quota import notify, plan_changes, usage

_get_ctx: Callable[[], Context] | None = None

plan_request_app = typer.Typer(no_args_is_help=True, help="Requests for a larger plan from contract admins.")
quota_app = typer.Typer(no_args_is_help=True, help="Stored video hours against the plans.")
notices_app = typer.Typer(no_args_is_help=True, help="Notices to contracts and their e-mails.")
payment_app = typer.Typer(no_args_is_help=True, help="Payments of issued invoices (the ledger late interest reads).")

# Deliberately simple: one address, no spaces or line breaks (which could forge e-mail headers).
_EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")


def _ctx() -> Context:
    assert _get_ctx is not None, "register() was not called"
    return _get_ctx()


_fail, _uuid = fail, parse_uuid


_ONE_DAY = timedelta(days=1)
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_YEN = re.compile(r"\d{1,3}(,\d{3})+|\d+", re.ASCII)


def _today() -> date:
    """Today in Japan: billing's calendar (domain.billing takes Japanese calendar days)."""
    return japan_day(utcnow())


def _day(text: str, what: str) -> date:
    """A calendar day typed as YYYY-MM-DD, or a refusal saying how to write it."""
    found = _DAY.fullmatch(text.strip())
    if found is None:
        _fail(f"{what} '{text}' is not a date: write it as YYYY-MM-DD, for example 2026-04-30.")
    try:
        return date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError as e:
        _fail(f"{what} '{text}' is not a date ({e}): write it as YYYY-MM-DD, for example 2026-04-30.")


def _month(text: str) -> Month:
    try:
        return parse_month(text)
    except ValueError as e:
        _fail(str(e))


def _yen(text: str, what: str) -> int:
    """Whole yen typed by a person: "7900" or "7,900"; negative, fractional or other text is refused."""
    cleaned = text.strip()
    if cleaned.endswith("円"):
        cleaned = cleaned[:-1].strip()
    if not _YEN.fullmatch(cleaned):
        if re.fullmatch(r"\s*-.*", cleaned):
            _fail(f"{what} '{text}' is negative: an amount is whole yen, 0 or more, for example 7900.")
        _fail(f"{what} '{text}' is not a whole number of yen: write it as digits, for example 7900 or 7,900 "
              "(amounts are integer yen, tax included; there are no fractions of a yen).")
    return int(cleaned.replace(",", ""))


def _contract_row(s: Session, contract_id: uuid.UUID) -> Contract:
    row = s.get(Contract, contract_id)
    if row is None:
        _fail(f"There is no contract {contract_id}.")
    return row


def _contract_opt() -> typer.models.OptionInfo:
    option: typer.models.OptionInfo = typer.Option("--contract", help="Contract id.")
    return option


# --- contract ---------------------------------------------------------------------------------


def set_plan(
    contract: Annotated[str, _contract_opt()],
    hours: Annotated[str, typer.Option("--hours", help="Video hours: 100 to 4000, in steps of 100.")],
) -> None:
    """Set a contract's plan now (never below the hours already stored); recorded for billing."""
    ctx = _ctx()
    contract_id = _uuid(contract, "contract")
    try:
        previous, new = plan_changes.set_plan(ctx.db, contract_id, hours,
                                              percents=ctx.settings.quota_notice_percents)
    except Problem as e:
        _fail(e.detail)
    emit({"contract_id": str(contract_id), "previous_plan_hours": previous, "plan_hours": new})


def onboard_plan(contract: Annotated[str, _contract_opt()]) -> None:
    """Set the plan to the hours already stored, rounded up to the next 100 (at least 100): run after an import."""
    ctx = _ctx()
    contract_id = _uuid(contract, "contract")
    try:
        previous, new = plan_changes.onboard_plan(ctx.db, contract_id, percents=ctx.settings.quota_notice_percents)
    except Problem as e:
        _fail(e.detail)
    with ctx.db.read() as s:
        q = usage.quota_of(s, contract_id)
    emit({"contract_id": str(contract_id), "previous_plan_hours": previous, "plan_hours": new,
          "used_hours": float(q.used_hours)})


def set_contacts(
    contract: Annotated[str, _contract_opt()],
    email: Annotated[list[str] | None, typer.Option("--email", help="An address for notices; repeat for "
                                                    "several. None clears the list.")] = None,
) -> None:
    """Set the addresses that receive the contract's notices by e-mail."""
    contract_id = _uuid(contract, "contract")
    addresses = [a.strip() for a in (email or [])]
    for address in addresses:
        if not _EMAIL.fullmatch(address) or len(address) > 254:
            _fail(f"'{address}' is not an e-mail address such as info@example-dental.jp")
    with _ctx().db.session() as s:
        row = s.get(Contract, contract_id)
        if row is None:
            _fail(f"no contract {contract_id}")
        row.contact_emails = list(dict.fromkeys(addresses))
        emit({"contract_id": str(contract_id), "contact_emails": row.contact_emails})


def cancel(
    contract: Annotated[str, _contract_opt()],
    notice_on: Annotated[str | None, typer.Option("--notice-on", help="The day the cancellation notice was "
                                                  "received, YYYY-MM-DD (Japan).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a notice already recorded with a "
                                          "different date.")] = False,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="Clear the notice: the contract goes on.")] = False,
) -> None:
    """Record a contract's cancellation notice; prints its last day (10-day rule) and its last billed month."""
    contract_id = _uuid(contract, "contract")
    if withdraw == (notice_on is not None):
        _fail("give either --notice-on YYYY-MM-DD (record the notice) or --withdraw (clear it), not "
              + ("both" if withdraw else "neither"))
    if replace and withdraw:
        _fail("--replace goes with --notice-on, not with --withdraw")
    day = _day(notice_on, "the notice date") if notice_on is not None else None
    today = _today()
    with _ctx().db.session() as s:
        row = _contract_row(s, contract_id)
        previous = row.cancellation_notice_on
        if day is None:
            row.cancellation_notice_on = None
            emit({"contract_id": str(row.id), "cancellation_notice_on": None, "ends_on": None,
                  "last_billed_month": None, "withdrawn_notice_on": previous,
                  "note": "notice withdrawn: the contract goes on" if previous else "no notice was recorded"})
            return
        start = japan_day(row.created_at)
        if day < start:
            _fail(f"a notice on {day} is before the service started on {start}: check the date.")
        if day > today:
            _fail(f"a notice on {day} is in the future (today is {today} in Japan): record a notice once it is "
                  "received, with the day it was received.")
        if previous is not None and previous != day and not replace:
            _fail(f"contract {row.id} already has a cancellation notice received on {previous} (it ends the "
                  f"contract on {contract_end_for_notice(previous)}); to record {day} instead, add --replace, "
                  "or clear it with --withdraw.")
        ends_on = contract_end_for_notice(day)
        after = list(s.scalars(select(IssuedInvoice.month).where(
            IssuedInvoice.contract_id == row.id, IssuedInvoice.month > str(Month.of(ends_on)))
            .order_by(IssuedInvoice.month)))
        if after:
            _fail(f"a notice on {day} ends the contract on {ends_on}, but invoices were already issued for "
                  f"{', '.join(after)}, after that: check the date, or settle those invoices first.")
        row.cancellation_notice_on = day
        try:
            facts = contract_billing(s, row)
        except ValueError as e:
            _fail(f"a notice on {day} cannot be recorded: {e}")
        last = facts.last_invoice_month
        emit({"contract_id": str(row.id), "cancellation_notice_on": day, "ends_on": ends_on,
              "last_billed_month": str(last) if last else None,
              "replaced_notice_on": previous if previous not in (None, day) else None,
              "note": "already recorded: nothing changed" if previous == day else
              f"the contract ends on {ends_on}; {last} is its last billed month"})


# --- plan requests ----------------------------------------------------------------------------


def _request_json(r: PlanRequest) -> dict[str, object]:
    return {"id": str(r.id), "contract_id": str(r.contract_id), "hours": r.hours,
            "plan_hours_then": r.plan_hours_then, "requested_by": r.requested_by_name,
            "requested_at": r.requested_at, "status": r.status, "decided_at": r.decided_at,
            "decided_by": r.decided_by, "reason": r.reason}


@plan_request_app.command("list")
def request_list(
    status: Annotated[str | None, typer.Option(help="pending, approved or declined (default: all).")] = "pending",
) -> None:
    """List plan requests, oldest first (by default those waiting for a decision)."""
    with _ctx().db.read() as s:
        q = select(PlanRequest).order_by(PlanRequest.requested_at)
        if status:
            q = q.where(PlanRequest.status == status)
        emit({"items": [_request_json(r) for r in s.scalars(q)]})


def _decide(request: str, approve: bool, reason: str | None) -> None:
    ctx = _ctx()
    try:
        row = plan_changes.decide(ctx.db, _uuid(request, "plan request"), approve=approve, reason=reason,
                                  percents=ctx.settings.quota_notice_percents)
    except Problem as e:
        _fail(e.detail)
    emit(_request_json(row))


@plan_request_app.command("approve")
def request_approve(request: Annotated[str, typer.Argument(help="Plan request id.")]) -> None:
    """Approve a request: the contract's plan changes now, and the change is recorded for billing."""
    _decide(request, True, None)


@plan_request_app.command("decline")
def request_decline(
    request: Annotated[str, typer.Argument(help="Plan request id.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the contract admin.")] = None,
) -> None:
    """Decline a request; the plan stays as it is."""
    _decide(request, False, reason)


# --- quota -----------------------------------------------------------------------------------


@quota_app.command("show")
def quota_show(contract: Annotated[str, _contract_opt()]) -> None:
    """A contract's quota, as stations and viewers see it."""
    ctx = _ctx()
    with ctx.db.read() as s:
        try:
            q = usage.quota_of(s, _uuid(contract, "contract"), window_days=ctx.settings.quota_forecast_days)
        except LookupError as e:
            _fail(str(e))
    emit(q.as_json())


@quota_app.command("verify")
def quota_verify(
    fix: Annotated[bool, typer.Option("--fix", help="Set each drifted counter to its recount.")] = False,
) -> None:
    """Recount every contract's stored video from its rows and report any drift (exit 1 when found, unfixed)."""
    checked, drifts = usage.verify(_ctx().db, fix=fix)
    emit({
        "checked": checked,
        "fixed": fix,
        "drift": [{"contract_id": str(d.contract_id), "name": d.name, "counter_ms": d.counter_ms,
                   "recount_ms": d.recount_ms, "drift_ms": d.drift_ms} for d in drifts],
    })
    if drifts and not fix:
        raise typer.Exit(1)


@notices_app.command("send")
def notices_send() -> None:
    """Send the notice e-mails that are due now (each server process also does this on its own)."""
    ctx = _ctx()
    if not ctx.settings.smtp_host:
        _fail("no SMTP server is configured: set CHAIRSIDE_SMTP_HOST (see docs/settings.md)")
    total = 0
    while (n := notify.drain(ctx)) > 0:
        total += n
    emit({"jobs_run": total})


# --- invoices ----------------------------------------------------------------------------------


class Format(StrEnum):
    json = "json"
    csv = "csv"


def default_due_on(billed: Month) -> date:
    """The due date of a month's invoices unless --due-on says otherwise: the last day of the month after
    the invoice's issue day (invoices are issued on the billed month's last day), 月末締め翌月末払い."""
    return billed.next().last_day


def invoices(
    month: Annotated[str, typer.Option(help="The month billed, as YYYY-MM.")],
    format: Annotated[Format, typer.Option("--format", help="json or csv.")] = Format.json,
    output: Annotated[Path | None, typer.Option(help="Write to this file (CSV in UTF-8 with BOM, for Excel) "
                                                "instead of standard output.")] = None,
    issue: Annotated[bool, typer.Option("--issue", help="Also record these invoices as issued (the ledger that "
                                        "payments and late interest read); a contract's invoice already issued "
                                        "for the month keeps its first record.")] = False,
    due_on: Annotated[str | None, typer.Option("--due-on", help="With --issue: the due date, YYYY-MM-DD "
                                               "(default: the last day of the month after the billed "
                                               "month).")] = None,
) -> None:
    """Every contract's invoice for a month that has ended (invoices are issued on its last day)."""
    billed = _month(month)
    today = _today()
    if today < billed.last_day:
        this = Month.of(today)
        latest = this if today == this.last_day else this.previous()
        _fail(f"{billed} is not over yet: its invoices are issued on {billed.last_day} (today is {today} in "
              f"Japan). The latest month that can be invoiced is {latest}.")
    if due_on is not None and not issue:
        _fail("--due-on is the due date of invoices being issued: use it with --issue")
    issued: list[dict[str, object]] | None = None
    if issue:
        due = _issue_due_on(billed, due_on, today)
        try:
            with _ctx().db.session() as s:
                found, skipped = invoices_in(s, billed)
                issued = _record_issued(s, billed, found, due)
        except IntegrityError:
            _fail(f"invoices for {billed} were being issued by another run at the same time; nothing was "
                  "recorded by this one: run the command again (invoices already issued are kept).")
    else:
        found, skipped = invoices_for_month(_ctx().db, billed)
    for skip in skipped:
        typer.echo(f"warning: contract {skip.contract_id} ({skip.name}) not invoiced: {skip.reason}", err=True)
    for item in issued or []:
        typer.echo(_issued_note(item), err=True)
    if format is Format.csv:
        text = invoices_to_csv(found)
        if output:
            output.write_bytes(text.encode("utf-8-sig"))
        else:
            sys.stdout.write(text)
        return
    doc: dict[str, object] = {
        "month": str(billed), "invoices": [invoice_to_json(i) for i in found],
        "total_yen": sum(i.total_yen for i in found),
        "skipped": [{"contract_id": str(k.contract_id), "name": k.name, "reason": k.reason} for k in skipped]}
    if issued is not None:
        doc["issued"] = issued
    if output:
        output.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    else:
        emit(doc)


def _issue_due_on(billed: Month, due_on: str | None, today: date) -> date | str:
    """The due date of the invoices to record; or, when the default has passed, the refusal to give if there
    is any (re-issuing a month already issued needs no due date)."""
    if due_on is None:
        due = default_due_on(billed)
        if due < today:
            return (f"the default due date of the {billed} invoices, {due} (the last day of the month after "
                    f"them), has already passed (today is {today} in Japan): give the due date written on the "
                    "invoices with --due-on YYYY-MM-DD.")
        return due
    due = _day(due_on, "the due date")
    if due < billed.last_day:
        _fail(f"a due date of {due} is before the {billed} invoices are issued on {billed.last_day}: "
              "check the date.")
    return due


def _record_issued(s: Session, billed: Month, found: list[Invoice], due: date | str) -> list[dict[str, object]]:
    """Record each invoice as issued, unless that contract's invoice for the month already is (kept as it is)."""
    existing = {row.contract_id: row for row in s.scalars(
        select(IssuedInvoice).where(IssuedInvoice.month == str(billed)))}
    report: list[dict[str, object]] = []
    for invoice in found:
        contract_id = uuid.UUID(invoice.contract_id)
        row = existing.get(contract_id)
        status = "already issued"
        if row is None:
            if isinstance(due, str):
                _fail(due)
            row = IssuedInvoice(contract_id=contract_id, month=str(billed), amount_yen=invoice.total_yen,
                                interest_base_yen=invoice.interest_base_yen, issued_on=invoice.issued_on,
                                due_on=due, created_at=utcnow())
            s.add(row)
            s.flush()
            status = "issued"
        report.append({"contract_id": invoice.contract_id, "month": str(billed), "status": status,
                       "invoice_id": str(row.id), "amount_yen": row.amount_yen,
                       "interest_base_yen": row.interest_base_yen, "issued_on": row.issued_on,
                       "due_on": row.due_on, "paid_on": row.paid_on, "computed_total_yen": invoice.total_yen})
    return report


def _issued_note(item: dict[str, object]) -> str:
    head = f"contract {item['contract_id']}, {item['month']}"
    amount = item["amount_yen"]
    if item["status"] == "issued":
        return f"issued: {head}: {amount:,} yen, due {item['due_on']}"
    note = (f"note: {head} was already issued ({amount:,} yen, due {item['due_on']}); the first record is kept")
    if item["computed_total_yen"] != amount:
        note += (f". warning: computed now, it comes to {item['computed_total_yen']:,} yen: the facts changed "
                 "since it was issued (a payment recorded late, a plan or account corrected); settle the "
                 "difference by hand")
    return note


# --- payments ----------------------------------------------------------------------------------


def _issued_row(s: Session, contract_id: uuid.UUID, billed: Month) -> IssuedInvoice:
    row = s.scalar(select(IssuedInvoice).where(IssuedInvoice.contract_id == contract_id,
                                               IssuedInvoice.month == str(billed)))
    if row is None:
        months = list(s.scalars(select(IssuedInvoice.month).where(IssuedInvoice.contract_id == contract_id)
                                .order_by(IssuedInvoice.month)))
        issued = f"its issued invoices are for {', '.join(months)}" if months else "it has no issued invoice"
        _fail(f"no invoice for {billed} was issued to contract {contract_id} ({issued}): a payment is recorded "
              f"against an issued invoice (`invoices --month {billed} --issue` records them).")
    return row


def _payment_json(row: IssuedInvoice, name: str, today: date) -> dict[str, object]:
    """The invoice and its payment; late interest on its charges, `interest_base_yen` (none on interest)."""
    paid = row.paid_on
    counted_to = paid if paid is not None else today
    days = late_interest_days(row.due_on, counted_to) if counted_to > row.due_on else 0
    late = "paid late" if days else "paid"
    status = late if paid is not None else "overdue" if today > row.due_on else "unpaid"
    return {"invoice_id": str(row.id), "contract_id": str(row.contract_id), "name": name, "month": row.month,
            "amount_yen": row.amount_yen, "interest_base_yen": row.interest_base_yen, "issued_on": row.issued_on,
            "due_on": row.due_on, "paid_on": paid, "status": status, "late_days": days,
            "late_interest_yen": late_interest(row.interest_base_yen, row.due_on, counted_to) if days else 0}


@payment_app.command("record")
def payment_record(
    contract: Annotated[str, _contract_opt()],
    month: Annotated[str, typer.Option(help="The month of the invoice paid, as YYYY-MM.")],
    paid_on: Annotated[str, typer.Option("--paid-on", help="The day the payment was received, YYYY-MM-DD.")],
    amount: Annotated[str | None, typer.Option("--amount", help="Yen received, checked against the invoice "
                                               "(payments are recorded in full only).")] = None,
) -> None:
    """Record that an issued invoice was paid; a late payment's interest is billed up to the payment day."""
    contract_id = _uuid(contract, "contract")
    billed = _month(month)
    day = _day(paid_on, "the payment date")
    received = _yen(amount, "the amount") if amount is not None else None
    today = _today()
    if day > today:
        _fail(f"a payment on {day} is in the future (today is {today} in Japan): record a payment once it "
              "is received.")
    with _ctx().db.session() as s:
        name = _contract_row(s, contract_id).name
        row = _issued_row(s, contract_id, billed)
        if row.paid_on is not None:
            _fail(f"the {billed} invoice of contract {contract_id} ({row.amount_yen:,} yen) was already paid on "
                  f"{row.paid_on}: a payment is recorded once.")
        if day < row.issued_on:
            _fail(f"a payment on {day} is before the {billed} invoice was issued on {row.issued_on}: "
                  "check the date.")
        if received is not None and received != row.amount_yen:
            _fail(f"{received:,} yen received, but the {billed} invoice of contract {contract_id} is "
                  f"{row.amount_yen:,} yen: only payments in full are recorded; record it once the invoice is "
                  "paid in full.")
        row.paid_on = day
        result = _payment_json(row, name, today)
        # Invoices issued for the month of the payment or later billed its interest as if still unpaid.
        later = max(s.scalars(select(IssuedInvoice.month).where(
            IssuedInvoice.contract_id == contract_id, IssuedInvoice.month > row.month,
            IssuedInvoice.month >= str(Month.of(day)))), default=None)
    if later is not None and result["late_days"]:
        billed_to = parse_month(later).last_day
        excess = (late_interest(row.interest_base_yen, row.due_on, max(billed_to, row.due_on) + _ONE_DAY)
                  - late_interest(row.interest_base_yen, row.due_on, day))
        if excess > 0:
            typer.echo(f"warning: the invoices already issued up to {later} billed interest on the {billed} "
                       f"invoice as if it were unpaid to {billed_to}: {excess:,} yen more than is owed; "
                       "credit or refund it by hand.", err=True)
    emit(result)


@payment_app.command("list")
def payment_list(
    contract: Annotated[str | None, typer.Option("--contract", help="Only this contract's invoices.")] = None,
    unpaid: Annotated[bool, typer.Option("--unpaid", help="Only invoices not paid yet.")] = False,
) -> None:
    """Issued invoices and their payments, by month; late interest as of the payment, or as of today if unpaid."""
    today = _today()
    with _ctx().db.read() as s:
        q = (select(IssuedInvoice, Contract.name).join(Contract, Contract.id == IssuedInvoice.contract_id)
             .order_by(IssuedInvoice.month, Contract.created_at, Contract.id))
        if contract is not None:
            contract_id = _uuid(contract, "contract")
            _contract_row(s, contract_id)
            q = q.where(IssuedInvoice.contract_id == contract_id)
        if unpaid:
            q = q.where(IssuedInvoice.paid_on.is_(None))
        items = [_payment_json(row, name, today) for row, name in s.execute(q)]
    emit({"as_of": today, "items": items,
          "unpaid_total_yen": sum(int(str(i["amount_yen"])) for i in items if i["paid_on"] is None)})


def register(app: typer.Typer, contract_app: typer.Typer, get_ctx: Callable[[], Context]) -> None:
    """Add these commands to `chairside admin` (called once by cli/admin.py)."""
    global _get_ctx
    _get_ctx = get_ctx
    contract_app.command("set-plan")(set_plan)
    contract_app.command("onboard-plan")(onboard_plan)
    contract_app.command("set-contacts")(set_contacts)
    contract_app.command("cancel")(cancel)
    app.add_typer(plan_request_app, name="plan-request")
    app.add_typer(quota_app, name="quota")
    app.add_typer(notices_app, name="notices")
    app.command("invoices")(invoices)
    app.add_typer(payment_app, name="payment")
