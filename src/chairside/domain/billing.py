"""Monthly invoices of a contract (SPEC.md §3; the rules and their reasons: docs/billing.md).

Pure rules: no I/O, no clock. Every date is passed in and is a calendar day in
Japan time (``datetime.date``; a ``datetime`` is refused so that nobody bills a
day off by a time zone). Money is integer yen, tax included; no float anywhere.

The invoice for a month is a function of the contract's facts and the month only,
so it can be computed again at any time and gives the same answer.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final, TypedDict

from chairside.domain.plans import (
    LATE_INTEREST_PER_YEAR,
    MAINTENANCE_YEN,
    SETUP_FEE_PER_CLINIC_YEN,
    VIEWER_ACCOUNT_YEN,
    price_for,
    validate_plan_hours,
)

__all__ = [
    "CANCELLATION_NOTICE_DAYS",
    "CSV_HEADER",
    "INTEREST_DAYS_PER_YEAR",
    "ClinicBilling",
    "ContractBilling",
    "Invoice",
    "InvoiceJSON",
    "InvoiceLine",
    "InvoiceLineJSON",
    "LineCode",
    "Month",
    "OverdueInvoice",
    "PlanChange",
    "ViewerAccountPeriod",
    "contract_end_for_notice",
    "invoice_for",
    "invoice_to_json",
    "invoices_through",
    "invoices_to_csv",
    "late_interest",
    "late_interest_days",
    "parse_month",
]

#: A notice leaving at least this many days to the end of its month ends the
#: contract at that month's end; a later one, at the end of the following month.
CANCELLATION_NOTICE_DAYS: Final[int] = 10
#: Late interest is per year of 365 days, leap years included (Japanese practice).
INTEREST_DAYS_PER_YEAR: Final[int] = 365

_INTEREST_PERCENT: Final[str] = str((LATE_INTEREST_PER_YEAR * 100).normalize())  # "14.6"


# --- months -------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month, the unit of billing. ``str(Month(2026, 4)) == "2026-04"``."""

    year: int
    month: int

    def __post_init__(self) -> None:
        for name, value in (("year", self.year), ("month", self.month)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Month.{name} must be an int, not {value!r}")
        if not 1 <= self.year <= 9999:
            raise ValueError(f"year {self.year} is out of range (1 to 9999)")
        if not 1 <= self.month <= 12:
            raise ValueError(f"month {self.month} is out of range (1 to 12)")

    @classmethod
    def of(cls, day: date) -> Month:
        """The month that contains ``day``."""
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


_MONTH_TEXT: Final[re.Pattern[str]] = re.compile(r"(\d{4})-(\d{2})", re.ASCII)


def parse_month(text: str) -> Month:
    """``"2026-04"`` -> ``Month(2026, 4)``; anything else raises ValueError saying why."""
    if not isinstance(text, str):
        raise TypeError(f"a month is text such as '2026-04', not {text!r}")
    found = _MONTH_TEXT.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a month: write it as YYYY-MM, for example 2026-04.")
    year, month = int(found[1]), int(found[2])
    if not 1 <= month <= 12:
        raise ValueError(
            f"{text!r} is not a month: the month must be 01 to 12 "
            "(write it as YYYY-MM, for example 2026-04)."
        )
    if year < 1:
        raise ValueError(f"{text!r} is not a month: the year must be 0001 or later.")
    return Month(year, month)


# --- cancellation and late interest ---------------------------------------------------


def contract_end_for_notice(notice_on: date) -> date:
    """The last day of the contract for a cancellation notice received on ``notice_on``.

    "At least 10 days before the end of a month" means
    ``(last day of the month - notice_on).days >= 10``: in a 31-day month a notice
    on the 21st (10 days left) ends the contract on the 31st, one on the 22nd (9
    days) at the end of the following month. The month the contract ends in is
    billed in full.
    """
    _check_date("notice_on", notice_on)
    month = Month.of(notice_on)
    if (month.last_day - notice_on).days >= CANCELLATION_NOTICE_DAYS:
        return month.last_day
    return month.next().last_day


def late_interest_days(due_on: date, paid_on: date) -> int:
    """Days of late interest: from the day after ``due_on`` to the day before ``paid_on``.

    That is the reference contract's count (支払期日の翌日から支払日の前日までの日数).
    A payment on the due date or the day after it owes nothing.
    """
    _check_date("due_on", due_on)
    _check_date("paid_on", paid_on)
    return max(0, (paid_on - due_on).days - 1)


def late_interest(amount_yen: int, due_on: date, paid_on: date) -> int:
    """Late interest in yen on ``amount_yen`` due on ``due_on`` and paid on ``paid_on``.

    ``floor(amount x 14.6 % x days / 365)`` with :func:`late_interest_days`; 365 in
    leap years too. For an invoice still unpaid, pass the day as of which to
    count, as if it were paid that day. Exact integer arithmetic.
    """
    _check_yen("amount_yen", amount_yen)
    days = late_interest_days(due_on, paid_on)
    numerator, denominator = LATE_INTEREST_PER_YEAR.as_integer_ratio()
    return (amount_yen * numerator * days) // (denominator * INTEREST_DAYS_PER_YEAR)


# --- what a contract is billed for (inputs) --------------------------------------------


@dataclass(frozen=True)
class ClinicBilling:
    """A clinic of the contract; its setup fee is billed once (see :func:`invoice_for`)."""

    clinic_id: str
    name: str
    setup_on: date

    def __post_init__(self) -> None:
        _check_date("setup_on", self.setup_on)


@dataclass(frozen=True)
class PlanChange:
    """The contract's plan is ``hours`` from ``effective_on`` (the day it was approved)."""

    effective_on: date
    hours: int

    def __post_init__(self) -> None:
        _check_date("effective_on", self.effective_on)
        object.__setattr__(self, "hours", validate_plan_hours(self.hours))


@dataclass(frozen=True)
class ViewerAccountPeriod:
    """A viewer account usable from ``active_from`` to ``active_until``, both included.

    ``active_until`` is None while the account is open. An account closed and
    opened again has one period per stretch, under the same ``account_id``.
    """

    account_id: str
    active_from: date
    active_until: date | None = None

    def __post_init__(self) -> None:
        _check_date("active_from", self.active_from)
        if self.active_until is not None:
            _check_date("active_until", self.active_until)
            if self.active_until < self.active_from:
                raise ValueError(
                    f"viewer account {self.account_id}: active_until {self.active_until} "
                    f"is before active_from {self.active_from}"
                )

    def active_in(self, month: Month) -> bool:
        """True when the account was usable on at least one day of ``month``."""
        return self.active_from <= month.last_day and (
            self.active_until is None or self.active_until >= month.first_day
        )


@dataclass(frozen=True)
class OverdueInvoice:
    """An earlier invoice of the contract not paid by its due date.

    ``paid_on`` is None while it is unpaid; once it is paid late, keep passing it
    with its ``paid_on`` until an invoice for the month of the payment has been
    made, so that the last days of interest are billed too.

    Interest is simple: it accrues on ``interest_base_yen``, the invoice's charges
    (its total minus the late-interest lines it carried, :attr:`Invoice.interest_base_yen`),
    never on interest. None means the whole ``amount_yen`` (an invoice that carried
    no late interest).
    """

    invoice_id: str
    amount_yen: int
    due_on: date
    paid_on: date | None = None
    interest_base_yen: int | None = None

    def __post_init__(self) -> None:
        _check_yen("amount_yen", self.amount_yen)
        _check_date("due_on", self.due_on)
        if self.paid_on is not None:
            _check_date("paid_on", self.paid_on)
        if self.interest_base_yen is not None:
            _check_yen("interest_base_yen", self.interest_base_yen)
            if self.interest_base_yen > self.amount_yen:
                raise ValueError(
                    f"invoice {self.invoice_id}: interest_base_yen {self.interest_base_yen} is more "
                    f"than its amount {self.amount_yen}; the base is the amount less its late interest"
                )

    @property
    def base_yen(self) -> int:
        """The yen interest accrues on: ``interest_base_yen``, or ``amount_yen`` when not given."""
        return self.amount_yen if self.interest_base_yen is None else self.interest_base_yen

    def interest_through(self, day: date) -> int:
        """Interest accrued up to and including ``day`` (or up to the payment)."""
        return late_interest(self.base_yen, self.due_on, self._counted_until(day))

    def interest_days_through(self, day: date) -> int:
        """Days of interest up to and including ``day`` (or up to the payment)."""
        return late_interest_days(self.due_on, self._counted_until(day))

    def _counted_until(self, day: date) -> date:
        """The "payment day" to count to: the day after ``day``, or the real payment."""
        stop = day + timedelta(days=1)
        return stop if self.paid_on is None else min(stop, self.paid_on)


@dataclass(frozen=True)
class ContractBilling:
    """Everything about a contract that its invoices depend on.

    Sequences are stored as tuples. Inconsistent facts raise ValueError here,
    once, rather than producing a wrong invoice later.
    """

    contract_id: str
    name: str
    service_start: date
    clinics: Sequence[ClinicBilling]
    plan_history: Sequence[PlanChange]
    viewer_accounts: Sequence[ViewerAccountPeriod] = ()
    cancellation_notice_on: date | None = None
    overdue: Sequence[OverdueInvoice] = ()

    def __post_init__(self) -> None:
        _check_date("service_start", self.service_start)
        object.__setattr__(self, "clinics", tuple(self.clinics))
        object.__setattr__(
            self, "plan_history", tuple(sorted(self.plan_history, key=lambda c: c.effective_on))
        )
        object.__setattr__(self, "viewer_accounts", tuple(self.viewer_accounts))
        object.__setattr__(self, "overdue", tuple(self.overdue))
        if self.cancellation_notice_on is not None:
            _check_date("cancellation_notice_on", self.cancellation_notice_on)

        where = f"contract {self.contract_id}"
        if not self.clinics:
            raise ValueError(f"{where} has no clinic; a contract has at least one")
        _require_unique(where, "clinic_id", [c.clinic_id for c in self.clinics])
        _require_unique(where, "overdue invoice_id", [o.invoice_id for o in self.overdue])
        if not self.plan_history:
            raise ValueError(f"{where} has no plan; its onboarding plan is needed")
        _require_unique(where, "plan effective_on", [c.effective_on for c in self.plan_history])
        if self.plan_history[0].effective_on > self.service_start:
            raise ValueError(
                f"{where}: the first plan takes effect on {self.plan_history[0].effective_on}, "
                f"after the service start {self.service_start}; a plan must be in force "
                "from the start"
            )
        end = self.ends_on
        if end is not None:
            if end < self.service_start:
                raise ValueError(
                    f"{where}: the cancellation notice of {self.cancellation_notice_on} ends the "
                    f"contract on {end}, before its service start {self.service_start}"
                )
            for clinic in self.clinics:
                if Month.of(clinic.setup_on) > Month.of(end):
                    raise ValueError(
                        f"{where}: clinic {clinic.clinic_id} is set up on {clinic.setup_on}, "
                        f"after the contract ends on {end}"
                    )

    @property
    def ends_on(self) -> date | None:
        """The contract's last day, or None when no notice has been given."""
        if self.cancellation_notice_on is None:
            return None
        return contract_end_for_notice(self.cancellation_notice_on)

    @property
    def first_billed_month(self) -> Month:
        """The month after the service starts: the first month of monthly charges."""
        return Month.of(self.service_start).next()

    @property
    def first_invoice_month(self) -> Month:
        """Normally :attr:`first_billed_month`; the start month itself when the
        contract ends in the month it starts (then that invoice holds only setup fees)."""
        end = self.ends_on
        if end is not None and Month.of(end) < self.first_billed_month:
            return Month.of(end)
        return self.first_billed_month

    @property
    def last_invoice_month(self) -> Month | None:
        """The month the contract ends in (billed in full), or None if it has no end."""
        end = self.ends_on
        return None if end is None else Month.of(end)

    def plan_on(self, day: date) -> int:
        """The plan in hours in force on ``day``."""
        _check_date("day", day)
        hours: int | None = None
        for change in self.plan_history:
            if change.effective_on > day:
                break
            hours = change.hours
        if hours is None:
            raise ValueError(f"contract {self.contract_id} has no plan in force on {day}")
        return hours

    def setup_fee_month(self, clinic: ClinicBilling) -> Month:
        """The month whose invoice carries ``clinic``'s setup fee: the first invoice
        issued on or after its setup day (invoices are issued on the month's last day)."""
        month = max(Month.of(clinic.setup_on), self.first_invoice_month)
        last = self.last_invoice_month
        return month if last is None else min(month, last)


# --- invoices (outputs) -------------------------------------------------------------


class LineCode(StrEnum):
    """What an invoice line is for; stable, for the UI to translate and for reports."""

    MAINTENANCE = "maintenance"
    PLAN = "plan"
    VIEWER_ACCOUNTS = "viewer_accounts"
    SETUP_FEE = "setup_fee"
    LATE_INTEREST = "late_interest"


@dataclass(frozen=True)
class InvoiceLine:
    code: LineCode
    description: str
    quantity: int
    unit_yen: int
    amount_yen: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", LineCode(self.code))
        _check_count("quantity", self.quantity)
        _check_yen("unit_yen", self.unit_yen)
        _check_yen("amount_yen", self.amount_yen)
        if self.amount_yen != self.quantity * self.unit_yen:
            raise ValueError(
                f"line {self.code}: amount {self.amount_yen} yen is not "
                f"{self.quantity} x {self.unit_yen} yen"
            )


@dataclass(frozen=True)
class Invoice:
    """The invoice of one contract for one month; ``total_yen`` is the sum of the lines."""

    contract_id: str
    month: Month
    lines: Sequence[InvoiceLine]
    total_yen: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "total_yen", sum(line.amount_yen for line in self.lines))

    @property
    def issued_on(self) -> date:
        """Invoices are issued on the last day of the month they bill."""
        return self.month.last_day

    @property
    def interest_base_yen(self) -> int:
        """What late interest on this invoice accrues on: its charges, the total less its
        late-interest lines (interest is simple; none is charged on interest)."""
        return self.total_yen - sum(
            line.amount_yen for line in self.lines if line.code == LineCode.LATE_INTEREST
        )


def invoice_for(contract: ContractBilling, month: Month) -> Invoice | None:
    """The invoice of ``contract`` for ``month``, or None when that month is not billed.

    None for the month of the service start and any month before it, and for any
    month after the contract ends. The one exception: a contract that ends in the
    month it starts gets an invoice for that month holding only the setup fees.
    """
    last = contract.last_invoice_month
    if month < contract.first_invoice_month or (last is not None and month > last):
        return None

    lines: list[InvoiceLine] = []
    if month >= contract.first_billed_month:
        lines.extend(_monthly_lines(contract, month))
    lines.extend(
        InvoiceLine(
            LineCode.SETUP_FEE,
            f"Setup fee, clinic {clinic.name} ({clinic.clinic_id}), relay box included",
            1,
            SETUP_FEE_PER_CLINIC_YEN,
            SETUP_FEE_PER_CLINIC_YEN,
        )
        for clinic in contract.clinics
        if contract.setup_fee_month(clinic) == month
    )
    lines.extend(_late_interest_lines(contract, month))
    return Invoice(contract.contract_id, month, lines)


def invoices_through(contract: ContractBilling, last: Month) -> list[Invoice]:
    """Every invoice of ``contract`` from its first one up to ``last`` included."""
    invoices: list[Invoice] = []
    month = contract.first_invoice_month
    while month <= last:
        invoice = invoice_for(contract, month)
        if invoice is None:  # past the contract's end
            break
        invoices.append(invoice)
        month = month.next()
    return invoices


def _monthly_lines(contract: ContractBilling, month: Month) -> list[InvoiceLine]:
    hours = contract.plan_on(month.first_day)
    plan_yen = price_for(hours)
    lines = [
        InvoiceLine(
            LineCode.MAINTENANCE, "Server maintenance", 1, MAINTENANCE_YEN, MAINTENANCE_YEN
        ),
        InvoiceLine(LineCode.PLAN, f"Video plan, {hours} hours", 1, plan_yen, plan_yen),
    ]
    accounts = {p.account_id for p in contract.viewer_accounts if p.active_in(month)}
    if accounts:
        lines.append(
            InvoiceLine(
                LineCode.VIEWER_ACCOUNTS,
                "Viewer accounts",
                len(accounts),
                VIEWER_ACCOUNT_YEN,
                len(accounts) * VIEWER_ACCOUNT_YEN,
            )
        )
    return lines


def _late_interest_lines(contract: ContractBilling, month: Month) -> list[InvoiceLine]:
    """Interest accrued during ``month`` on each overdue invoice (on its charges only).

    Each month's line is the cumulative interest to the month's end minus the
    cumulative interest to the previous month's end, so rounding down never loses
    or adds a yen: the lines of all months add up to :func:`late_interest` for
    the whole delay. The first invoice also carries anything accrued before it.
    """
    lines: list[InvoiceLine] = []
    before = month.first_day - timedelta(days=1)
    is_first = month == contract.first_invoice_month
    for overdue in contract.overdue:
        yen = overdue.interest_through(month.last_day)
        days = overdue.interest_days_through(month.last_day)
        if not is_first:
            yen -= overdue.interest_through(before)
            days -= overdue.interest_days_through(before)
        if yen <= 0:
            continue
        base = overdue.base_yen
        on = "" if base == overdue.amount_yen else f" on {base:,} yen of charges"
        lines.append(
            InvoiceLine(
                LineCode.LATE_INTEREST,
                f"Late payment interest on invoice {overdue.invoice_id} "
                f"({overdue.amount_yen:,} yen due {overdue.due_on}): "
                f"{_days_text(days)} at {_INTEREST_PERCENT}% a year{on}",
                1,
                yen,
                yen,
            )
        )
    return lines


# --- export -------------------------------------------------------------------------

#: Columns of :func:`invoices_to_csv`, one row per invoice line.
CSV_HEADER: Final[tuple[str, ...]] = (
    "contract_id",
    "month",
    "code",
    "description",
    "quantity",
    "unit_yen",
    "amount_yen",
    "invoice_total_yen",
)


def invoices_to_csv(invoices: Iterable[Invoice]) -> str:
    """CSV text (RFC 4180, CRLF line ends), a header and one row per invoice line.

    The invoice total is repeated on each of its rows so any row can be read
    alone. Text cells that a spreadsheet would run as a formula (starting with
    ``= + - @``) are prefixed with an apostrophe. Encode as ``utf-8-sig`` for Excel.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for invoice in invoices:
        for line in invoice.lines:
            writer.writerow(
                (
                    _csv_text(invoice.contract_id),
                    str(invoice.month),
                    line.code.value,
                    _csv_text(line.description),
                    line.quantity,
                    line.unit_yen,
                    line.amount_yen,
                    invoice.total_yen,
                )
            )
    return out.getvalue()


class InvoiceLineJSON(TypedDict):
    code: str
    description: str
    quantity: int
    unit_yen: int
    amount_yen: int


class InvoiceJSON(TypedDict):
    contract_id: str
    month: str
    currency: str
    tax_included: bool
    lines: list[InvoiceLineJSON]
    total_yen: int


def invoice_to_json(invoice: Invoice) -> InvoiceJSON:
    """A JSON-ready dict: ``month`` as ``"YYYY-MM"``, amounts as integer yen."""
    return {
        "contract_id": invoice.contract_id,
        "month": str(invoice.month),
        "currency": "JPY",
        "tax_included": True,
        "lines": [
            {
                "code": line.code.value,
                "description": line.description,
                "quantity": line.quantity,
                "unit_yen": line.unit_yen,
                "amount_yen": line.amount_yen,
            }
            for line in invoice.lines
        ],
        "total_yen": invoice.total_yen,
    }


# --- helpers ------------------------------------------------------------------------


def _check_date(name: str, value: object) -> None:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(
            f"{name} must be a datetime.date (a calendar day in Japan time), not {value!r}"
        )


def _check_yen(name: str, value: object) -> None:
    _check_count(name, value)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _require_unique(where: str, what: str, values: Sequence[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{where}: {what} {value} appears twice")
        seen.add(value)


def _days_text(days: int) -> str:
    return "1 day" if days == 1 else f"{days} days"


def _csv_text(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
