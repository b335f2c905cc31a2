"""The operator's plan, quota and billing commands, added to `chairside admin` by `register`.

    chairside admin --data DIR contract set-plan --contract ID --hours H
    chairside admin --data DIR contract onboard-plan --contract ID
    chairside admin --data DIR contract set-contacts --contract ID --email a@example.jp [--email ...]
    chairside admin --data DIR plan-request list [--status pending]
    chairside admin --data DIR plan-request approve ID
    chairside admin --data DIR plan-request decline ID [--reason TEXT]
    chairside admin --data DIR invoices --month YYYY-MM [--format json|csv] [--output FILE]
    chairside admin --data DIR quota show --contract ID
    chairside admin --data DIR quota verify [--fix]
    chairside admin --data DIR notices send

Every refusal prints `error: ...` on standard error and exits with code 2.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from chairside import notify, plan_changes, quota
from chairside.api.context import Context
from chairside.billing_data import invoices_for_month
from chairside.cli.common import emit, fail, parse_uuid
from chairside.db.models import Contract, PlanRequest, utcnow
from chairside.domain.billing import Month, invoice_to_json, invoices_to_csv, parse_month
from chairside.errors import Problem

_get_ctx: Callable[[], Context] | None = None

plan_request_app = typer.Typer(no_args_is_help=True, help="Requests for a larger plan from contract admins.")
quota_app = typer.Typer(no_args_is_help=True, help="Stored video hours against the plans.")
notices_app = typer.Typer(no_args_is_help=True, help="Notices to contracts and their e-mails.")

# Deliberately simple: one address, no spaces or line breaks (which could forge e-mail headers).
_EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")


def _ctx() -> Context:
    assert _get_ctx is not None, "register() was not called"
    return _get_ctx()


_fail, _uuid = fail, parse_uuid


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
        q = quota.quota_of(s, contract_id)
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
            q = quota.quota_of(s, _uuid(contract, "contract"), window_days=ctx.settings.quota_forecast_days)
        except LookupError as e:
            _fail(str(e))
    emit(q.as_json())


@quota_app.command("verify")
def quota_verify(
    fix: Annotated[bool, typer.Option("--fix", help="Set each drifted counter to its recount.")] = False,
) -> None:
    """Recount every contract's stored video from its rows and report any drift (exit 1 when found, unfixed)."""
    checked, drifts = quota.verify(_ctx().db, fix=fix)
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
) -> None:
    """Every contract's invoice for a month that has ended (invoices are issued on its last day)."""
    try:
        billed = parse_month(month)
    except ValueError as e:
        _fail(str(e))
    today = quota.japan_day(utcnow())
    if today < billed.last_day:
        this = Month.of(today)
        latest = this if today == this.last_day else this.previous()
        _fail(f"{billed} is not over yet: its invoices are issued on {billed.last_day} (today is {today} in "
              f"Japan). The latest month that can be invoiced is {latest}.")
    found, skipped = invoices_for_month(_ctx().db, billed)
    for s in skipped:
        typer.echo(f"warning: contract {s.contract_id} ({s.name}) not invoiced: {s.reason}", err=True)
    if format is Format.csv:
        text = invoices_to_csv(found)
        if output:
            output.write_bytes(text.encode("utf-8-sig"))
        else:
            sys.stdout.write(text)
        return
    doc = {"month": str(billed), "invoices": [invoice_to_json(i) for i in found],
           "total_yen": sum(i.total_yen for i in found),
           "skipped": [{"contract_id": str(s.contract_id), "name": s.name, "reason": s.reason} for s in skipped]}
    if output:
        output.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    else:
        emit(doc)


def register(app: typer.Typer, contract_app: typer.Typer, get_ctx: Callable[[], Context]) -> None:
    """Add these commands to `chairside admin` (called once by cli/admin.py)."""
    global _get_ctx
    _get_ctx = get_ctx
    contract_app.command("set-plan")(set_plan)
    contract_app.command("onboard-plan")(onboard_plan)
    contract_app.command("set-contacts")(set_contacts)
    app.add_typer(plan_request_app, name="plan-request")
    app.add_typer(quota_app, name="quota")
    app.add_typer(notices_app, name="notices")
    app.command("invoices")(invoices)
