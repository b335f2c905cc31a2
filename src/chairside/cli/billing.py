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

This module only parses what the operator typed (ids, months, days, yen), calls the services and
prints their answers; every refusal, a service's `Problem` included, prints `error: ...` on standard
error and exits with code 2. The rules behind cancellation notices, issued invoices, due dates and
payments are billing/cancellation.py, billing/issuing.py and billing/payments.py (docs/billing.md);
contacts are quota/contacts.py, plans quota/plan_changes.py.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from chairside.billing import cancellation, issuing, payments
from chairside.billing.issuing import IssuedEntry, MonthInvoices
from chairside.billing.payments import Payment
from chairside.cli.common import emit, fail, parse_uuid
from chairside.context import Context
from chairside.db.models import PlanRequest, utcnow
from chairside.domain.billing import Month, invoice_to_json, invoices_to_csv, parse_month
from chairside.domain.calendar import japan_day
from chairside.errors import Problem
from chairside.quota import contacts, notify, plan_changes, usage

_get_ctx: Callable[[], Context] | None = None

plan_request_app = typer.Typer(no_args_is_help=True, help="Requests for a larger plan from contract admins.")
quota_app = typer.Typer(no_args_is_help=True, help="Stored video hours against the plans.")
notices_app = typer.Typer(no_args_is_help=True, help="Notices to contracts and their e-mails.")
payment_app = typer.Typer(no_args_is_help=True, help="Payments of issued invoices (the ledger late interest reads).")


def _ctx() -> Context:
    assert _get_ctx is not None, "register() was not called"
    return _get_ctx()


_fail, _uuid = fail, parse_uuid


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
    try:
        stored = contacts.set_contacts(_ctx(), contract_id, email or [])
    except Problem as e:
        _fail(e.detail)
    emit({"contract_id": str(contract_id), "contact_emails": stored})


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
    if notice_on is None:
        try:
            withdrawn = cancellation.withdraw_notice(_ctx(), contract_id)
        except Problem as e:
            _fail(e.detail)
        previous = withdrawn.withdrawn_notice_on
        emit({"contract_id": str(withdrawn.contract_id), "cancellation_notice_on": None, "ends_on": None,
              "last_billed_month": None, "withdrawn_notice_on": previous,
              "note": "notice withdrawn: the contract goes on" if previous else "no notice was recorded"})
        return
    day = _day(notice_on, "the notice date")
    try:
        recorded = cancellation.record_notice(_ctx(), contract_id, day, today=_today(), replace=replace)
    except Problem as e:
        _fail(e.detail)
    last = recorded.last_billed_month
    emit({"contract_id": str(recorded.contract_id), "cancellation_notice_on": day, "ends_on": recorded.ends_on,
          "last_billed_month": str(last) if last else None, "replaced_notice_on": recorded.replaced_notice_on,
          "note": "already recorded: nothing changed" if recorded.unchanged else
          f"the contract ends on {recorded.ends_on}; {last} is its last billed month"})


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
    try:
        issuing.check_month_is_over(billed, today)  # before the options, as the first thing to fix
    except Problem as e:
        _fail(e.detail)
    if due_on is not None and not issue:
        _fail("--due-on is the due date of invoices being issued: use it with --issue")
    due = _day(due_on, "the due date") if due_on is not None else None
    try:
        if issue:
            found = issuing.issue_month(_ctx(), billed, today=today, due_on=due)
        else:
            found = issuing.month_invoices(_ctx(), billed, today=today)
    except Problem as e:
        _fail(e.detail)
    for skip in found.skipped:
        typer.echo(f"warning: contract {skip.contract_id} ({skip.name}) not invoiced: {skip.reason}", err=True)
    for entry in found.issued or []:
        typer.echo(_issued_note(entry), err=True)
    if format is Format.csv:
        text = invoices_to_csv(found.invoices)
        if output:
            output.write_bytes(text.encode("utf-8-sig"))
        else:
            sys.stdout.write(text)
        return
    doc = _invoices_json(found)
    if output:
        output.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    else:
        emit(doc)


def _invoices_json(found: MonthInvoices) -> dict[str, object]:
    doc: dict[str, object] = {
        "month": str(found.month), "invoices": [invoice_to_json(i) for i in found.invoices],
        "total_yen": sum(i.total_yen for i in found.invoices),
        "skipped": [{"contract_id": str(k.contract_id), "name": k.name, "reason": k.reason} for k in found.skipped]}
    if found.issued is not None:
        doc["issued"] = [_issued_json(entry) for entry in found.issued]
    return doc


def _issued_json(entry: IssuedEntry) -> dict[str, object]:
    return {"contract_id": str(entry.contract_id), "month": str(entry.month), "status": entry.status,
            "invoice_id": str(entry.invoice_id), "amount_yen": entry.amount_yen,
            "interest_base_yen": entry.interest_base_yen, "issued_on": entry.issued_on, "due_on": entry.due_on,
            "paid_on": entry.paid_on, "computed_total_yen": entry.computed_total_yen}


def _issued_note(entry: IssuedEntry) -> str:
    head = f"contract {entry.contract_id}, {entry.month}"
    amount = entry.amount_yen
    if entry.newly_issued:
        return f"issued: {head}: {amount:,} yen, due {entry.due_on}"
    note = (f"note: {head} was already issued ({amount:,} yen, due {entry.due_on}); the first record is kept")
    if entry.differs:
        note += (f". warning: computed now, it comes to {entry.computed_total_yen:,} yen: the facts changed "
                 "since it was issued (a payment recorded late, a plan or account corrected); settle the "
                 "difference by hand")
    return note


# --- payments ----------------------------------------------------------------------------------


def _payment_json(p: Payment) -> dict[str, object]:
    return {"invoice_id": str(p.invoice_id), "contract_id": str(p.contract_id), "name": p.name,
            "month": str(p.month), "amount_yen": p.amount_yen, "interest_base_yen": p.interest_base_yen,
            "issued_on": p.issued_on, "due_on": p.due_on, "paid_on": p.paid_on, "status": p.status,
            "late_days": p.late_days, "late_interest_yen": p.late_interest_yen}


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
    try:
        recorded = payments.record_payment(_ctx(), contract_id, billed, day, today=_today(), amount_yen=received)
    except Problem as e:
        _fail(e.detail)
    over = recorded.overbilled
    if over is not None:
        typer.echo(f"warning: the invoices already issued up to {over.through} billed interest on the "
                   f"{over.month} invoice as if it were unpaid to {over.billed_to}: {over.excess_yen:,} yen more "
                   "than is owed; credit or refund it by hand.", err=True)
    emit(_payment_json(recorded.payment))


@payment_app.command("list")
def payment_list(
    contract: Annotated[str | None, typer.Option("--contract", help="Only this contract's invoices.")] = None,
    unpaid: Annotated[bool, typer.Option("--unpaid", help="Only invoices not paid yet.")] = False,
) -> None:
    """Issued invoices and their payments, by month; late interest as of the payment, or as of today if unpaid."""
    today = _today()
    contract_id = _uuid(contract, "contract") if contract is not None else None
    try:
        found = payments.list_payments(_ctx(), today=today, contract_id=contract_id, unpaid_only=unpaid)
    except Problem as e:
        _fail(e.detail)
    emit({"as_of": today, "items": [_payment_json(p) for p in found],
          "unpaid_total_yen": payments.unpaid_total_yen(found)})


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
