"""Contracts for the billing services' tests, seeded through tenancy/service.py, and the ledger read back."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import Contract, IssuedInvoice
from chairside.domain.calendar import CLINIC_TZ
from chairside.tenancy.service import create_clinic, create_contract

STARTED = datetime(2026, 1, 20, 10, tzinfo=CLINIC_TZ)


def jst(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=CLINIC_TZ)


def small_contract(ctx: Context, created: datetime = STARTED, name: str = "小さな歯科") -> uuid.UUID:
    """A 100-hour contract with one clinic, both from `created` (20 January 2026 by default): its first bill,
    February's, is 5,700 + 2,200 + 88,000 = 95,900 yen; 7,900 yen a month from March."""
    contract_id = create_contract(ctx, name, 100, created_at=created).id
    create_clinic(ctx, contract_id, "本院", created_at=created)
    return contract_id


def notice_of(ctx: Context, contract_id: uuid.UUID) -> date | None:
    with ctx.db.read() as s:
        return s.scalar(select(Contract.cancellation_notice_on).where(Contract.id == contract_id))


def ledger(ctx: Context, contract_id: uuid.UUID) -> list[tuple[str, int, int, date, date, date | None]]:
    """The contract's issued invoices: (month, amount_yen, interest_base_yen, issued_on, due_on, paid_on)."""
    with ctx.db.read() as s:
        rows = s.scalars(select(IssuedInvoice).where(IssuedInvoice.contract_id == contract_id)
                         .order_by(IssuedInvoice.month)).all()
        return [(r.month, r.amount_yen, r.interest_base_yen, r.issued_on, r.due_on, r.paid_on) for r in rows]
