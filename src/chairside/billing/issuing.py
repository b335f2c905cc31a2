"""A month's invoices: computed once the month is over, and issued into the ledger `issued_invoices`.

- A month is invoiced once it is over: its invoices are issued on its last day.
- Issuing records each contract's invoice for the month with its total, its charges (the base of
  late interest on it) and its due date: by default the last day of the month after the billed
  month (月末締め翌月末払い), refused once that has passed (the caller gives the due date printed
  on the invoices); a given due date cannot be before the issue day.
- A contract's invoice already issued for the month keeps its first record (amount and due date);
  the entry says so and carries what the invoice comes to if computed now.

Refusals are `Problem`s whose `detail` is the operator's message (the CLI prints it after `error:`);
nothing is recorded then. `today` is the caller's day in Japan, passed in so any day can be tested.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.billing.invoices import Skipped, invoices_for_month, invoices_in
from chairside.context import Context
from chairside.db.models import IssuedInvoice, utcnow
from chairside.domain.billing import Invoice, Month
from chairside.errors import Problem


@dataclass(frozen=True)
class IssuedEntry:
    """One contract's invoice for the month as the ledger holds it, newly issued or issued before."""

    contract_id: uuid.UUID
    month: Month
    newly_issued: bool
    invoice_id: uuid.UUID
    amount_yen: int
    interest_base_yen: int
    issued_on: date
    due_on: date
    paid_on: date | None
    computed_total_yen: int  # what the invoice comes to computed now (differs if the facts changed since)

    @property
    def status(self) -> str:
        return "issued" if self.newly_issued else "already issued"

    @property
    def differs(self) -> bool:
        """Issued before with another amount than it comes to now: the difference is settled by hand."""
        return self.computed_total_yen != self.amount_yen


@dataclass(frozen=True)
class MonthInvoices:
    """A month's invoices, and the contracts not invoiced (with why); `issued` once recorded in the ledger."""

    month: Month
    invoices: list[Invoice]
    skipped: list[Skipped]
    issued: list[IssuedEntry] | None = None


def default_due_on(billed: Month) -> date:
    """The due date of a month's invoices unless another is given: the last day of the month after the
    invoice's issue day (invoices are issued on the billed month's last day), 月末締め翌月末払い."""
    return billed.next().last_day


def latest_invoiceable_month(today: date) -> Month:
    """The latest month that is over on `today` (this month on its last day, else the previous one)."""
    this = Month.of(today)
    return this if today == this.last_day else this.previous()


def check_month_is_over(billed: Month, today: date) -> None:
    """Refuse a month whose invoices are not issued yet on `today`."""
    if today < billed.last_day:
        raise Problem(422, f"{billed} is not over yet: its invoices are issued on {billed.last_day} (today is "
                      f"{today} in Japan). The latest month that can be invoiced is "
                      f"{latest_invoiceable_month(today)}.", code="month-not-over")


def month_invoices(ctx: Context, billed: Month, *, today: date) -> MonthInvoices:
    """Every contract's invoice for a month that is over, computed now; nothing is recorded."""
    check_month_is_over(billed, today)
    found, skipped = invoices_for_month(ctx.db, billed)
    return MonthInvoices(billed, found, skipped)


def issue_month(ctx: Context, billed: Month, *, today: date, due_on: date | None = None) -> MonthInvoices:
    """Every contract's invoice for a month that is over, recorded as issued (once: a contract's invoice
    already issued for the month keeps its first record). `due_on`: the due date of those newly issued
    (default: `default_due_on`, refused once it has passed, when there is an invoice to record)."""
    check_month_is_over(billed, today)
    late_default: Problem | None = None
    if due_on is None:
        due_on = default_due_on(billed)
        if due_on < today:  # refused only if there is an invoice to record: re-issuing needs no due date
            late_default = Problem(
                422, f"the default due date of the {billed} invoices, {due_on} (the last day of the month after "
                f"them), has already passed (today is {today} in Japan): give the due date written on the "
                "invoices with --due-on YYYY-MM-DD.", code="default-due-date-passed")
    elif due_on < billed.last_day:
        raise Problem(422, f"a due date of {due_on} is before the {billed} invoices are issued on "
                      f"{billed.last_day}: check the date.", code="due-before-issue")
    try:
        with ctx.db.session() as s:
            found, skipped = invoices_in(s, billed)
            issued = _record_issued(s, billed, found, due_on, late_default)
    except IntegrityError:
        raise Problem(409, f"invoices for {billed} were being issued by another run at the same time; nothing "
                      "was recorded by this one: run the command again (invoices already issued are kept).",
                      code="issue-race") from None
    return MonthInvoices(billed, found, skipped, issued)


def _record_issued(s: Session, billed: Month, found: list[Invoice], due_on: date,
                   late_default: Problem | None) -> list[IssuedEntry]:
    """Record each invoice as issued, unless that contract's invoice for the month already is (kept as it is)."""
    existing = {row.contract_id: row for row in s.scalars(
        select(IssuedInvoice).where(IssuedInvoice.month == str(billed)))}
    entries: list[IssuedEntry] = []
    for invoice in found:
        contract_id = uuid.UUID(invoice.contract_id)
        row = existing.get(contract_id)
        newly = row is None
        if row is None:
            if late_default is not None:
                raise late_default
            row = IssuedInvoice(contract_id=contract_id, month=str(billed), amount_yen=invoice.total_yen,
                                interest_base_yen=invoice.interest_base_yen, issued_on=invoice.issued_on,
                                due_on=due_on, created_at=utcnow())
            s.add(row)
            s.flush()
        entries.append(IssuedEntry(contract_id, billed, newly, row.id, row.amount_yen, row.interest_base_yen,
                                   row.issued_on, row.due_on, row.paid_on, invoice.total_yen))
    return entries
