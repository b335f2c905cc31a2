"""From the database to `domain.billing`: each contract's facts, then its invoice for a month.

`domain.billing` holds every rule and is pure; this module only reads rows and turns
timestamps into Japanese calendar days (the domain refuses datetimes for that reason):

- service start: the day the contract was created;
- clinics: each clinic with the day it was created (its setup fee's day);
- plan history: `plan_changes`; several changes on one day count as that day's last;
  a contract whose history starts after its creation (made before plan history was kept)
  starts on the previous plan of its first change;
- viewer accounts: each account from the day it was created to the day it was disabled;
- no cancellation notice and no overdue invoices yet (no payment ledger is kept).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from chairside.db.engine import Database
from chairside.db.models import Account, Clinic, Contract, PlanChange
from chairside.domain.billing import (
    ClinicBilling,
    ContractBilling,
    Invoice,
    Month,
    ViewerAccountPeriod,
    invoice_for,
)
from chairside.domain.billing import (
    PlanChange as DomainPlanChange,
)
from chairside.quota import japan_day


@dataclass(frozen=True)
class Skipped:
    contract_id: uuid.UUID
    name: str
    reason: str


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


def contract_billing(s: Session, contract: Contract) -> ContractBilling:
    """The billing facts of one contract, read from its rows."""
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
    )


def invoices_for_month(db: Database, month: Month) -> tuple[list[Invoice], list[Skipped]]:
    """Every contract's invoice for `month` (contracts with nothing to bill that month have none),
    and the contracts whose facts cannot be billed, with the reason."""
    invoices: list[Invoice] = []
    skipped: list[Skipped] = []
    with db.read() as s:
        for contract in s.scalars(select(Contract).order_by(Contract.created_at, Contract.id)):
            try:
                facts = contract_billing(s, contract)
            except ValueError as e:
                skipped.append(Skipped(contract.id, contract.name, str(e)))
                continue
            invoice = invoice_for(facts, month)
            if invoice is not None:
                invoices.append(invoice)
    return invoices, skipped
