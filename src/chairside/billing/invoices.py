"""From the database to `domain.billing`: each contract's facts, then its invoice for a month.

`domain.billing` holds every rule and is pure; this module only reads rows and turns
timestamps into Japanese calendar days (the domain refuses datetimes for that reason):

- service start: the day the contract was created;
- clinics: each clinic with the day it was created (its setup fee's day);
- plan history: `plan_changes`; several changes on one day count as that day's last;
  a contract whose history starts after its creation (made before plan history was kept)
  starts on the previous plan of its first change;
- viewer accounts: each account from the day it was created to the day it was disabled;
- cancellation: `contracts.cancellation_notice_on`, the day the notice was received (the domain
  applies the 10-day rule to it);
- overdue invoices: the payment ledger `issued_invoices`. For the invoice of month M, every invoice
  issued for a month before M, due before M's last day and not paid by its due date
  (`paid_on` is None, or later than `due_on`), with its `paid_on`; a paid-late one is passed until
  M reaches the month of its payment, so the invoice for that month bills the last days of
  interest (see `OverdueInvoice`). It is named by its month ("2026-03") on the interest line:
  unique per contract, and what the clinic sees on the invoice. Interest is on `interest_base_yen`, the
  invoice's charges (its total less the late interest it carried): simple interest, none on interest.

Writing these facts is `billing.cancellation` (notices), `billing.issuing` (the ledger's invoices)
and `billing.payments` (their payments), called by the operator's CLI; rules in docs/billing.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from chairside.db.engine import Database
from chairside.db.models import Account, Clinic, Contract, IssuedInvoice, PlanChange
from chairside.domain.billing import (
    ClinicBilling,
    ContractBilling,
    Invoice,
    Month,
    OverdueInvoice,
    ViewerAccountPeriod,
    invoice_for,
)
from chairside.domain.billing import (
    PlanChange as DomainPlanChange,
)
from chairside.domain.calendar import japan_day
from chairside.errors import Problem


@dataclass(frozen=True)
class Skipped:
    contract_id: uuid.UUID
    name: str
    reason: str


def contract_row(s: Session, contract_id: uuid.UUID) -> Contract:
    """The contract, or a 404 `Problem` saying there is none."""
    row = s.get(Contract, contract_id)
    if row is None:
        raise Problem(404, f"There is no contract {contract_id}.", code="contract-not-found")
    return row


def plan_history(rows: list[PlanChange], service_start: date, current_hours: int) -> list[DomainPlanChange]:
    """Plan changes as calendar days: the last change of each day, the first in force from the start."""
    by_day: dict[date, int] = {}
    for row in sorted(rows, key=lambda r: (r.effective_at, r.id)):
        by_day[max(japan_day(row.effective_at), service_start)] = row.hours
    if not rows:
        return [DomainPlanChange(service_start, current_hours)]
    first = min(rows, key=lambda r: (r.effective_at, r.id))
    if service_start not in by_day:
        # Made before the history was kept: the plan before the first recorded change was in force.
        by_day[service_start] = first.previous_hours if first.previous_hours is not None else first.hours
    return [DomainPlanChange(day, hours) for day, hours in sorted(by_day.items())]


def overdue_invoices(s: Session, contract_id: uuid.UUID, month: Month | None = None) -> list[OverdueInvoice]:
    """The contract's issued invoices not paid by their due date, as `domain.billing` bills interest on them.

    With `month`, only those that can add interest to that month's invoice: issued for an earlier
    month, due before its last day, and unpaid or paid in it or later (interest paid off in an
    earlier month is on earlier invoices). Without it, every invoice paid late or not yet paid;
    the domain bills each month only the interest accrued in it, so both give the same invoices.
    """
    q = select(IssuedInvoice).where(
        IssuedInvoice.contract_id == contract_id,
        or_(IssuedInvoice.paid_on.is_(None), IssuedInvoice.paid_on > IssuedInvoice.due_on),
    )
    if month is not None:
        q = q.where(
            IssuedInvoice.month < str(month),
            IssuedInvoice.due_on < month.last_day,
            or_(IssuedInvoice.paid_on.is_(None), IssuedInvoice.paid_on >= month.first_day),
        )
    rows = s.scalars(q.order_by(IssuedInvoice.month)).all()
    return [OverdueInvoice(row.month, row.amount_yen, row.due_on, row.paid_on, row.interest_base_yen)
            for row in rows]


def contract_billing(s: Session, contract: Contract, month: Month | None = None) -> ContractBilling:
    """The billing facts of one contract, read from its rows (`month`: only the overdue invoices
    that matter for that month's invoice; see `overdue_invoices`)."""
    start = japan_day(contract.created_at)
    clinics = s.scalars(select(Clinic).where(Clinic.contract_id == contract.id).order_by(Clinic.created_at)).all()
    changes = list(s.scalars(select(PlanChange).where(PlanChange.contract_id == contract.id)))
    accounts = s.scalars(select(Account).where(Account.contract_id == contract.id)).all()
    periods = []
    for account in accounts:
        since = japan_day(account.created_at)
        until = japan_day(account.disabled_at) if account.disabled_at else None
        periods.append(ViewerAccountPeriod(str(account.id), since, max(until, since) if until else None))
    return ContractBilling(
        contract_id=str(contract.id),
        name=contract.name,
        service_start=start,
        clinics=[ClinicBilling(str(c.id), c.name, max(japan_day(c.created_at), start)) for c in clinics],
        plan_history=plan_history(changes, start, contract.plan_hours),
        viewer_accounts=periods,
        cancellation_notice_on=contract.cancellation_notice_on,
        overdue=overdue_invoices(s, contract.id, month),
    )


def invoices_for_month(db: Database, month: Month) -> tuple[list[Invoice], list[Skipped]]:
    """Every contract's invoice for `month` (contracts with nothing to bill that month have none),
    and the contracts whose facts cannot be billed, with the reason."""
    with db.read() as s:
        return invoices_in(s, month)


def invoices_in(s: Session, month: Month) -> tuple[list[Invoice], list[Skipped]]:
    """`invoices_for_month` in the caller's transaction (to record them as issued in the same one)."""
    invoices: list[Invoice] = []
    skipped: list[Skipped] = []
    for contract in s.scalars(select(Contract).order_by(Contract.created_at, Contract.id)):
        try:
            facts = contract_billing(s, contract, month)
        except ValueError as e:
            skipped.append(Skipped(contract.id, contract.name, str(e)))
            continue
        invoice = invoice_for(facts, month)
        if invoice is not None:
            invoices.append(invoice)
    return invoices, skipped
