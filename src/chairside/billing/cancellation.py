"""Cancellation notices: recording the day a contract's notice was received, replacing it, withdrawing it.

The notice is `contracts.cancellation_notice_on`; `domain.billing` turns it into the contract's last
day (the 10-day rule, docs/billing.md rule 4) and no invoice is made after that day's month. A notice
is refused, and nothing is written, when it is:

- before the service started, or later than `today` (a notice is recorded once received);
- a different day from the notice already recorded, unless `replace` is given;
- one that would end the contract before a month whose invoice was already issued;
- one the contract's facts cannot take (a clinic set up after the contract would end).

Refusals are `Problem`s whose `detail` is the operator's message (the CLI prints it after `error:`).
`today` is the caller's day in Japan (`domain.calendar.japan_day`), passed in so any day can be tested.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from chairside.billing.invoices import contract_billing, contract_row
from chairside.context import Context
from chairside.db.models import IssuedInvoice
from chairside.domain.billing import Month, contract_end_for_notice
from chairside.domain.calendar import japan_day
from chairside.errors import Problem


@dataclass(frozen=True)
class NoticeRecorded:
    """A notice as recorded: the contract's last day and last billed month, and the notice it replaced."""

    contract_id: uuid.UUID
    notice_on: date
    ends_on: date
    last_billed_month: Month | None
    previous_notice_on: date | None

    @property
    def unchanged(self) -> bool:
        """The same notice was already recorded: nothing changed."""
        return self.previous_notice_on == self.notice_on

    @property
    def replaced_notice_on(self) -> date | None:
        """The different notice this one replaced (with `replace`), if any."""
        return None if self.unchanged else self.previous_notice_on


@dataclass(frozen=True)
class NoticeWithdrawn:
    contract_id: uuid.UUID
    withdrawn_notice_on: date | None  # None: there was no notice to withdraw


def record_notice(ctx: Context, contract_id: uuid.UUID, notice_on: date, *, today: date,
                  replace: bool = False) -> NoticeRecorded:
    """Record the cancellation notice received on `notice_on`; the same notice again changes nothing."""
    with ctx.db.session() as s:
        row = contract_row(s, contract_id)
        previous = row.cancellation_notice_on
        start = japan_day(row.created_at)
        if notice_on < start:
            raise Problem(422, f"a notice on {notice_on} is before the service started on {start}: check the date.",
                          code="notice-before-start")
        if notice_on > today:
            raise Problem(422, f"a notice on {notice_on} is in the future (today is {today} in Japan): record a "
                          "notice once it is received, with the day it was received.", code="notice-in-future")
        if previous is not None and previous != notice_on and not replace:
            raise Problem(409, f"contract {row.id} already has a cancellation notice received on {previous} (it "
                          f"ends the contract on {contract_end_for_notice(previous)}); to record {notice_on} "
                          "instead, add --replace, or clear it with --withdraw.", code="notice-already-recorded")
        ends_on = contract_end_for_notice(notice_on)
        after = list(s.scalars(select(IssuedInvoice.month).where(
            IssuedInvoice.contract_id == row.id, IssuedInvoice.month > str(Month.of(ends_on)))
            .order_by(IssuedInvoice.month)))
        if after:
            raise Problem(409, f"a notice on {notice_on} ends the contract on {ends_on}, but invoices were already "
                          f"issued for {', '.join(after)}, after that: check the date, or settle those invoices "
                          "first.", code="notice-before-issued-invoices")
        row.cancellation_notice_on = notice_on
        try:
            facts = contract_billing(s, row)
        except ValueError as e:
            raise Problem(422, f"a notice on {notice_on} cannot be recorded: {e}", code="notice-conflicts") from None
        return NoticeRecorded(row.id, notice_on, ends_on, facts.last_invoice_month, previous)


def withdraw_notice(ctx: Context, contract_id: uuid.UUID) -> NoticeWithdrawn:
    """Clear the contract's cancellation notice, if any: the contract goes on and is billed again."""
    with ctx.db.session() as s:
        row = contract_row(s, contract_id)
        previous = row.cancellation_notice_on
        row.cancellation_notice_on = None
        return NoticeWithdrawn(row.id, previous)
