"""Payments of issued invoices: recording one, and each invoice's standing with its late interest.

A payment is recorded against an invoice issued to the contract for that month, once, in full
(the ledger keeps one payment day per invoice), on a day neither in the future nor before the
invoice was issued. Late interest (docs/billing.md rule 7) is on the invoice's charges,
`interest_base_yen`, up to the payment day, or as if paid `today` while unpaid.

A late payment recorded after invoices for its month or later were issued: those invoices billed
its interest as if it were still unpaid to their month's end; the excess is reported
(`OverbilledInterest`) to credit or refund by hand.

Refusals are `Problem`s whose `detail` is the operator's message (the CLI prints it after `error:`);
nothing is recorded then. `today` is the caller's day in Japan, passed in so any day can be tested.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chairside.billing.invoices import contract_row
from chairside.context import Context
from chairside.db.models import Contract, IssuedInvoice
from chairside.domain.billing import Month, late_interest, late_interest_days, parse_month
from chairside.errors import Problem

_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Payment:
    """An issued invoice and its payment as of a day: `status` is `paid`, `paid late`, `unpaid` (not due
    yet) or `overdue`; the late days and interest run to the payment day, or to that day while unpaid."""

    invoice_id: uuid.UUID
    contract_id: uuid.UUID
    name: str
    month: Month
    amount_yen: int
    interest_base_yen: int
    issued_on: date
    due_on: date
    paid_on: date | None
    status: str
    late_days: int
    late_interest_yen: int


@dataclass(frozen=True)
class OverbilledInterest:
    """Interest on a late invoice billed by the invoices issued up to `through` as if it were unpaid to
    `billed_to`: `excess_yen` more than is owed."""

    month: Month  # the invoice paid
    through: Month  # the latest invoice issued that billed it
    billed_to: date
    excess_yen: int


@dataclass(frozen=True)
class PaymentRecorded:
    payment: Payment
    overbilled: OverbilledInterest | None


def payment_of(row: IssuedInvoice, name: str, today: date) -> Payment:
    """The invoice and its payment; late interest on its charges, `interest_base_yen` (none on interest)."""
    paid = row.paid_on
    counted_to = paid if paid is not None else today
    days = late_interest_days(row.due_on, counted_to) if counted_to > row.due_on else 0
    late = "paid late" if days else "paid"
    status = late if paid is not None else "overdue" if today > row.due_on else "unpaid"
    return Payment(row.id, row.contract_id, name, parse_month(row.month), row.amount_yen, row.interest_base_yen,
                   row.issued_on, row.due_on, paid, status, days,
                   late_interest(row.interest_base_yen, row.due_on, counted_to) if days else 0)


def unpaid_total_yen(payments: Iterable[Payment]) -> int:
    """What the unpaid invoices among `payments` come to (whole amounts, interest to come not included)."""
    return sum(p.amount_yen for p in payments if p.paid_on is None)


def _issued_row(s: Session, contract_id: uuid.UUID, billed: Month) -> IssuedInvoice:
    row = s.scalar(select(IssuedInvoice).where(IssuedInvoice.contract_id == contract_id,
                                               IssuedInvoice.month == str(billed)).with_for_update())
    if row is None:
        months = list(s.scalars(select(IssuedInvoice.month).where(IssuedInvoice.contract_id == contract_id)
                                .order_by(IssuedInvoice.month)))
        issued = f"its issued invoices are for {', '.join(months)}" if months else "it has no issued invoice"
        raise Problem(404, f"no invoice for {billed} was issued to contract {contract_id} ({issued}): a payment is "
                      f"recorded against an issued invoice (`invoices --month {billed} --issue` records them).",
                      code="invoice-not-issued")
    return row


def record_payment(ctx: Context, contract_id: uuid.UUID, billed: Month, paid_on: date, *, today: date,
                   amount_yen: int | None = None) -> PaymentRecorded:
    """Record that the contract's invoice for `billed` was paid on `paid_on`; `amount_yen`, if given, must
    be the invoice's amount. Answers the invoice as paid, and any interest already over-billed on it."""
    if paid_on > today:
        raise Problem(422, f"a payment on {paid_on} is in the future (today is {today} in Japan): record a "
                      "payment once it is received.", code="payment-in-future")
    with ctx.db.session() as s:
        name = contract_row(s, contract_id).name
        row = _issued_row(s, contract_id, billed)
        if row.paid_on is not None:
            raise Problem(409, f"the {billed} invoice of contract {contract_id} ({row.amount_yen:,} yen) was already "
                          f"paid on {row.paid_on}: a payment is recorded once.", code="invoice-already-paid")
        if paid_on < row.issued_on:
            raise Problem(422, f"a payment on {paid_on} is before the {billed} invoice was issued on "
                          f"{row.issued_on}: check the date.", code="payment-before-issue")
        if amount_yen is not None and amount_yen != row.amount_yen:
            raise Problem(422, f"{amount_yen:,} yen received, but the {billed} invoice of contract {contract_id} is "
                          f"{row.amount_yen:,} yen: only payments in full are recorded; record it once the invoice "
                          "is paid in full.", code="partial-payment")
        row.paid_on = paid_on
        payment = payment_of(row, name, today)
        # Invoices issued for the month of the payment or later billed its interest as if still unpaid.
        later = max(s.scalars(select(IssuedInvoice.month).where(
            IssuedInvoice.contract_id == contract_id, IssuedInvoice.month > row.month,
            IssuedInvoice.month >= str(Month.of(paid_on)))), default=None)
    overbilled = None
    if later is not None and payment.late_days:
        through = parse_month(later)
        billed_to = through.last_day
        base, due = row.interest_base_yen, row.due_on
        excess = late_interest(base, due, max(billed_to, due) + _ONE_DAY) - late_interest(base, due, paid_on)
        if excess > 0:
            overbilled = OverbilledInterest(billed, through, billed_to, excess)
    return PaymentRecorded(payment, overbilled)


def list_payments(ctx: Context, *, today: date, contract_id: uuid.UUID | None = None,
             unpaid_only: bool = False) -> list[Payment]:
    """Issued invoices and their payments by month (then by contract, oldest first), as of `today`."""
    with ctx.db.read() as s:
        q = (select(IssuedInvoice, Contract.name).join(Contract, Contract.id == IssuedInvoice.contract_id)
             .order_by(IssuedInvoice.month, Contract.created_at, Contract.id))
        if contract_id is not None:
            contract_row(s, contract_id)
            q = q.where(IssuedInvoice.contract_id == contract_id)
        if unpaid_only:
            q = q.where(IssuedInvoice.paid_on.is_(None))
        return [payment_of(row, name, today) for row, name in s.execute(q)]
