"""Monthly invoices: each rule of docs/billing.md, with SPEC.md §3's figures."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chairside.domain.billing import (
    CSV_HEADER,
    ClinicBilling,
    ContractBilling,
    Invoice,
    InvoiceLine,
    LineCode,
    Month,
    OverdueInvoice,
    PlanChange,
    ViewerAccountPeriod,
    contract_end_for_notice,
    invoice_for,
    invoice_to_json,
    invoices_through,
    invoices_to_csv,
    late_interest,
    late_interest_days,
    parse_month,
)
from chairside.domain.plans import PLAN_HOURS, PlanError

no_db = settings(database=None)  # keep hypothesis from writing .hypothesis/ into the checkout

START = date(2026, 4, 15)  # a Wednesday in the middle of a 30-day month


def clinic(clinic_id: str = "c1", setup_on: date = START, name: str = "Main") -> ClinicBilling:
    return ClinicBilling(clinic_id, name, setup_on)


def contract(
    *,
    start: date = START,
    clinics: Sequence[ClinicBilling] | None = None,
    plans: Sequence[PlanChange] | None = None,
    accounts: Sequence[ViewerAccountPeriod] = (),
    notice_on: date | None = None,
    overdue: Sequence[OverdueInvoice] = (),
) -> ContractBilling:
    return ContractBilling(
        contract_id="K-1",
        name="Sakura Dental",
        service_start=start,
        clinics=[clinic(setup_on=start)] if clinics is None else clinics,
        plan_history=[PlanChange(start, 100)] if plans is None else plans,
        viewer_accounts=accounts,
        cancellation_notice_on=notice_on,
        overdue=overdue,
    )


def billed(k: ContractBilling, year: int, month: int) -> Invoice:
    invoice = invoice_for(k, Month(year, month))
    assert invoice is not None, f"no invoice for {year}-{month:02d}"
    return invoice


def amounts(invoice: Invoice) -> dict[LineCode, int]:
    totals: dict[LineCode, int] = {}
    for line in invoice.lines:
        totals[line.code] = totals.get(line.code, 0) + line.amount_yen
    return totals


# --- months ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "month"),
    [("2026-04", Month(2026, 4)), ("2026-12", Month(2026, 12)), (" 2027-01 ", Month(2027, 1))],
)
def test_parse_month_reads_yyyy_mm(text: str, month: Month) -> None:
    assert parse_month(text) == month
    assert str(month) == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "2026-13",
            "'2026-13' is not a month: the month must be 01 to 12 "
            "(write it as YYYY-MM, for example 2026-04).",
        ),
        (
            "2026-00",
            "'2026-00' is not a month: the month must be 01 to 12 "
            "(write it as YYYY-MM, for example 2026-04).",
        ),
        ("2026-4", "'2026-4' is not a month: write it as YYYY-MM, for example 2026-04."),
        ("26-04", "'26-04' is not a month: write it as YYYY-MM, for example 2026-04."),
        ("2026/04", "'2026/04' is not a month: write it as YYYY-MM, for example 2026-04."),
        ("", "'' is not a month: write it as YYYY-MM, for example 2026-04."),
        ("0000-01", "'0000-01' is not a month: the year must be 0001 or later."),
    ],
)
def test_parse_month_refuses_a_malformed_month_saying_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="is not a month") as caught:
        parse_month(text)
    assert str(caught.value) == message


def test_months_order_and_step_across_years() -> None:
    assert Month(2026, 12).next() == Month(2027, 1)
    assert Month(2027, 1).previous() == Month(2026, 12)
    assert Month(2026, 12) < Month(2027, 1)
    assert Month(2028, 2).last_day == date(2028, 2, 29)
    assert Month(2026, 2).last_day == date(2026, 2, 28)
    assert Month.of(date(2026, 4, 15)) == Month(2026, 4)


@pytest.mark.parametrize(("year", "month"), [(2026, 13), (2026, 0), (0, 1)])
def test_a_month_out_of_range_cannot_be_made(year: int, month: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        Month(year, month)


# --- monthly charges ----------------------------------------------------------------


def test_smallest_monthly_bill_is_7900_yen() -> None:
    k = contract()
    june = billed(k, 2026, 6)  # May carries the setup fee; June is a plain month
    assert june.total_yen == 7_900
    assert [(line.code, line.quantity, line.unit_yen) for line in june.lines] == [
        (LineCode.MAINTENANCE, 1, 5_700),
        (LineCode.PLAN, 1, 2_200),
    ]


@pytest.mark.parametrize(("accounts", "total"), [(0, 7_900), (1, 9_550), (2, 11_200), (5, 16_150)])
def test_each_viewer_account_adds_1650_yen(accounts: int, total: int) -> None:
    k = contract(accounts=[ViewerAccountPeriod(f"a{i}", START) for i in range(accounts)])
    assert billed(k, 2026, 6).total_yen == total


def test_first_bill_of_three_clinics_has_three_setup_fees_and_a_full_month() -> None:
    k = contract(clinics=[clinic("c1"), clinic("c2", name="Branch B"), clinic("c3")])
    may = billed(k, 2026, 5)
    setup = [line for line in may.lines if line.code is LineCode.SETUP_FEE]
    assert [line.amount_yen for line in setup] == [88_000, 88_000, 88_000]
    assert "Branch B (c2)" in setup[1].description
    assert may.total_yen == 3 * 88_000 + 5_700 + 2_200 == 271_900
    assert billed(k, 2026, 6).total_yen == 7_900  # the setup fee is billed once


# --- the start month is free ------------------------------------------------------


@pytest.mark.parametrize("start", [date(2026, 4, 1), date(2026, 4, 15), date(2026, 4, 30)])
def test_month_of_the_start_is_free_and_the_next_month_is_billed_in_full(start: date) -> None:
    k = contract(start=start, accounts=[ViewerAccountPeriod("a1", start)])
    assert invoice_for(k, Month(2026, 4)) is None
    may = billed(k, 2026, 5)
    assert amounts(may) == {
        LineCode.MAINTENANCE: 5_700,
        LineCode.PLAN: 2_200,
        LineCode.VIEWER_ACCOUNTS: 1_650,
        LineCode.SETUP_FEE: 88_000,  # the setup fee is on the first bill
    }


@pytest.mark.parametrize("month", [Month(2026, 3), Month(2025, 4), Month(2026, 4)])
def test_no_invoice_for_a_month_before_billing_starts(month: Month) -> None:
    assert invoice_for(contract(), month) is None


# --- setup fees -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup_on", "billed_in"),
    [
        (date(2026, 3, 20), Month(2026, 5)),  # relay installed before the start: first bill
        (date(2026, 4, 28), Month(2026, 5)),  # in the start month: first bill
        (date(2026, 5, 1), Month(2026, 5)),  # a later clinic: the bill of its setup month
        (date(2026, 8, 31), Month(2026, 8)),
        (date(2026, 9, 1), Month(2026, 9)),
    ],
)
def test_a_clinics_setup_fee_is_on_the_first_bill_issued_after_it_is_set_up(
    setup_on: date, billed_in: Month
) -> None:
    k = contract(clinics=[clinic("c1"), clinic("c2", setup_on=setup_on)])
    invoices = invoices_through(k, Month(2026, 12))
    setup_months = [
        (inv.month, line.description)
        for inv in invoices
        for line in inv.lines
        if line.code is LineCode.SETUP_FEE and "(c2)" in line.description
    ]
    assert [month for month, _ in setup_months] == [billed_in]
    assert billed(k, billed_in.year, billed_in.month).issued_on >= setup_on


def test_a_contract_ending_in_its_start_month_is_still_billed_its_setup_fees() -> None:
    k = contract(notice_on=date(2026, 4, 16), clinics=[clinic("c1"), clinic("c2")])
    assert k.ends_on == date(2026, 4, 30)
    april = billed(k, 2026, 4)
    assert amounts(april) == {LineCode.SETUP_FEE: 176_000}
    assert invoice_for(k, Month(2026, 5)) is None


# --- cancellation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notice_on", "ends_on"),
    [
        # 31-day month: (31 - day) >= 10 ends this month
        (date(2026, 1, 20), date(2026, 1, 31)),  # 11 days left
        (date(2026, 1, 21), date(2026, 1, 31)),  # exactly 10 days left
        (date(2026, 1, 22), date(2026, 2, 28)),  # 9 days left: a month later
        (date(2026, 1, 1), date(2026, 1, 31)),
        (date(2026, 1, 31), date(2026, 2, 28)),
        # 30-day month
        (date(2026, 4, 20), date(2026, 4, 30)),  # 10 days left
        (date(2026, 4, 21), date(2026, 5, 31)),  # 9 days left
        # February, 28 days
        (date(2026, 2, 18), date(2026, 2, 28)),
        (date(2026, 2, 19), date(2026, 3, 31)),
        # February of a leap year, 29 days
        (date(2028, 2, 19), date(2028, 2, 29)),
        (date(2028, 2, 20), date(2028, 3, 31)),
        # across the year end
        (date(2026, 12, 21), date(2026, 12, 31)),
        (date(2026, 12, 22), date(2027, 1, 31)),
        # a late notice in January ends at the end of February
        (date(2028, 1, 25), date(2028, 2, 29)),
    ],
)
def test_cancellation_notice_ends_the_contract_at_a_month_end(
    notice_on: date, ends_on: date
) -> None:
    assert contract_end_for_notice(notice_on) == ends_on


@pytest.mark.parametrize(
    ("notice_on", "last_billed"),
    [(date(2026, 8, 20), Month(2026, 8)), (date(2026, 8, 22), Month(2026, 9))],
)
def test_the_month_the_contract_ends_is_billed_and_nothing_after(
    notice_on: date, last_billed: Month
) -> None:
    k = contract(notice_on=notice_on)
    assert billed(k, last_billed.year, last_billed.month).total_yen == 7_900
    assert invoice_for(k, last_billed.next()) is None
    assert invoice_for(k, Month(2027, 1)) is None
    assert [inv.month for inv in invoices_through(k, Month(2030, 1))][-1] == last_billed


@pytest.mark.parametrize("notice_on", [datetime(2026, 1, 20, 9, 0), "2026-01-20", None])
def test_contract_end_needs_a_date(notice_on: object) -> None:
    with pytest.raises(TypeError, match=r"datetime\.date"):
        contract_end_for_notice(notice_on)  # type: ignore[arg-type]


# --- plan changes ---------------------------------------------------------------------------


def test_a_plan_raised_mid_month_is_billed_from_the_next_month() -> None:
    k = contract(plans=[PlanChange(START, 300), PlanChange(date(2026, 6, 15), 400)])
    assert amounts(billed(k, 2026, 6))[LineCode.PLAN] == 6_400  # the plan on June 1st
    assert amounts(billed(k, 2026, 7))[LineCode.PLAN] == 8_500
    assert billed(k, 2026, 7).total_yen == 5_700 + 8_500


def test_a_plan_raised_on_the_first_of_a_month_is_billed_for_that_month() -> None:
    k = contract(plans=[PlanChange(START, 300), PlanChange(date(2026, 6, 1), 400)])
    assert amounts(billed(k, 2026, 5))[LineCode.PLAN] == 6_400
    assert amounts(billed(k, 2026, 6))[LineCode.PLAN] == 8_500


def test_a_plan_lowered_mid_month_is_billed_at_the_old_price_that_month() -> None:
    k = contract(plans=[PlanChange(START, 500), PlanChange(date(2026, 6, 30), 300)])
    assert amounts(billed(k, 2026, 6))[LineCode.PLAN] == 10_600
    assert amounts(billed(k, 2026, 7))[LineCode.PLAN] == 6_400


def test_several_raises_in_one_month_count_from_the_next() -> None:
    k = contract(
        plans=[
            PlanChange(date(2026, 6, 20), 500),
            PlanChange(START, 300),  # order of the history does not matter
            PlanChange(date(2026, 6, 10), 400),
        ]
    )
    assert amounts(billed(k, 2026, 6))[LineCode.PLAN] == 6_400
    assert amounts(billed(k, 2026, 7))[LineCode.PLAN] == 10_600
    assert billed(k, 2026, 7).lines[1].description == "Video plan, 500 hours"


def test_a_plan_raised_in_the_start_month_is_billed_on_the_first_bill() -> None:
    k = contract(plans=[PlanChange(START, 300), PlanChange(date(2026, 4, 20), 400)])
    assert amounts(billed(k, 2026, 5))[LineCode.PLAN] == 8_500


# --- viewer accounts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "counted_in_june"),
    [
        (ViewerAccountPeriod("a", date(2026, 5, 1)), True),
        (ViewerAccountPeriod("a", date(2026, 6, 30)), True),  # opened on the last day
        (ViewerAccountPeriod("a", date(2026, 7, 1)), False),
        (ViewerAccountPeriod("a", date(2026, 5, 1), date(2026, 6, 1)), True),  # closed on the 1st
        (ViewerAccountPeriod("a", date(2026, 5, 1), date(2026, 5, 31)), False),
        (ViewerAccountPeriod("a", date(2026, 6, 10), date(2026, 6, 12)), True),
    ],
)
def test_an_account_counts_for_a_month_when_active_on_any_day_of_it(
    period: ViewerAccountPeriod, counted_in_june: bool
) -> None:
    june = billed(contract(accounts=[period]), 2026, 6)
    assert amounts(june).get(LineCode.VIEWER_ACCOUNTS, 0) == (1_650 if counted_in_june else 0)


def test_an_account_closed_and_reopened_in_a_month_counts_once() -> None:
    k = contract(
        accounts=[
            ViewerAccountPeriod("a", date(2026, 5, 1), date(2026, 6, 5)),
            ViewerAccountPeriod("a", date(2026, 6, 20)),
            ViewerAccountPeriod("b", date(2026, 6, 2), date(2026, 6, 3)),
        ]
    )
    line = next(ln for ln in billed(k, 2026, 6).lines if ln.code is LineCode.VIEWER_ACCOUNTS)
    assert (line.quantity, line.unit_yen, line.amount_yen) == (2, 1_650, 3_300)


def test_an_account_period_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before active_from"):
        ViewerAccountPeriod("a", date(2026, 6, 2), date(2026, 6, 1))


# --- late interest ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "due_on", "paid_on", "days", "interest"),
    [
        # days run from the day after the due date to the day before payment
        (10_000, date(2026, 1, 31), date(2026, 3, 3), 30, 120),  # Feb 1 .. Mar 2
        (10_000, date(2026, 1, 31), date(2026, 1, 31), 0, 0),
        (10_000, date(2026, 1, 31), date(2026, 2, 1), 0, 0),
        (10_000, date(2026, 1, 31), date(2026, 2, 2), 1, 4),  # 4.0 yen
        (10_000, date(2026, 1, 31), date(2026, 1, 1), 0, 0),  # paid early
        (7_900, date(2026, 5, 31), date(2026, 6, 11), 10, 31),  # 31.6 rounds down
        (100_000, date(2026, 12, 31), date(2028, 1, 1), 365, 14_600),
        # leap year: still 365 days a year, so 30 days cost what they cost in 2026
        (10_000, date(2028, 1, 31), date(2028, 3, 2), 30, 120),  # Feb 1 .. Mar 1, 2028
        (100_000, date(2027, 12, 31), date(2029, 1, 1), 366, 14_640),
        (0, date(2026, 1, 31), date(2026, 3, 3), 30, 0),
    ],
)
def test_late_interest_is_14_6_percent_a_year_by_the_day_rounded_down(
    amount: int, due_on: date, paid_on: date, days: int, interest: int
) -> None:
    assert late_interest_days(due_on, paid_on) == days
    assert late_interest(amount, due_on, paid_on) == interest


@pytest.mark.parametrize(("amount", "error"), [(-1, ValueError), (10.0, TypeError)])
def test_late_interest_needs_whole_non_negative_yen(amount: object, error: type) -> None:
    with pytest.raises(error):
        late_interest(amount, date(2026, 1, 31), date(2026, 3, 3))  # type: ignore[arg-type]


def test_unpaid_invoice_interest_appears_month_by_month_until_paid() -> None:
    overdue = OverdueInvoice("INV-2026-05", 10_000, due_on=date(2026, 5, 31))
    k = contract(overdue=[overdue])

    june = billed(k, 2026, 6)
    (line,) = [ln for ln in june.lines if ln.code is LineCode.LATE_INTEREST]
    assert line.amount_yen == 120  # June 1..30, 30 days
    assert line.description == (
        "Late payment interest on invoice INV-2026-05 (10,000 yen due 2026-05-31): "
        "30 days at 14.6% a year"
    )
    assert june.total_yen == 7_900 + 120
    assert amounts(billed(k, 2026, 7))[LineCode.LATE_INTEREST] == 244 - 120  # 61 days in all

    paid = contract(
        overdue=[OverdueInvoice("INV-2026-05", 10_000, date(2026, 5, 31), date(2026, 8, 10))]
    )
    per_month = [
        amounts(inv).get(LineCode.LATE_INTEREST, 0)
        for inv in invoices_through(paid, Month(2026, 10))
    ]
    assert per_month == [0, 120, 124, 36, 0, 0]  # May .. October; August: to Aug 9, 70 days
    assert sum(per_month) == late_interest(10_000, date(2026, 5, 31), date(2026, 8, 10)) == 280


def test_interest_accrues_on_the_charges_not_on_interest_an_invoice_carried() -> None:
    k = contract(overdue=[OverdueInvoice("INV-2026-05", 10_000, due_on=date(2026, 5, 31))])
    june = billed(k, 2026, 6)
    assert (june.total_yen, june.interest_base_yen) == (7_900 + 120, 7_900)
    assert billed(contract(), 2026, 6).interest_base_yen == 7_900  # no interest carried: the total

    # The June invoice, 8,020 yen of which 7,900 of charges, due 31 July and paid 31 August: 30 days
    # (1 to 30 August). 7,900 x 0.146 x 30 / 365 = 94.8 -> 94 (on the whole 8,020: 96.2 -> 96).
    late = OverdueInvoice("INV-2026-06", june.total_yen, date(2026, 7, 31), date(2026, 8, 31),
                          interest_base_yen=june.interest_base_yen)
    assert late.base_yen == 7_900
    (line,) = [ln for ln in billed(contract(overdue=[late]), 2026, 8).lines if ln.code is LineCode.LATE_INTEREST]
    assert line.amount_yen == 94 == late_interest(7_900, date(2026, 7, 31), date(2026, 8, 31))
    assert line.description == (
        "Late payment interest on invoice INV-2026-06 (8,020 yen due 2026-07-31): "
        "30 days at 14.6% a year on 7,900 yen of charges"
    )
    assert OverdueInvoice("I", 8_020, date(2026, 7, 31)).base_yen == 8_020  # not given: the amount


@pytest.mark.parametrize(("base", "error"), [
    (8_021, ValueError),  # more than the invoice
    (-1, ValueError),
    (7_900.0, TypeError),
])
def test_an_interest_base_outside_the_invoice_is_refused(base: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        OverdueInvoice("I", 8_020, date(2026, 7, 31), interest_base_yen=base)  # type: ignore[arg-type]


def test_interest_is_not_billed_before_the_due_date_passes() -> None:
    k = contract(overdue=[OverdueInvoice("INV-1", 10_000, due_on=date(2026, 6, 30))])
    assert LineCode.LATE_INTEREST not in amounts(billed(k, 2026, 6))
    assert amounts(billed(k, 2026, 7))[LineCode.LATE_INTEREST] == 124  # 31 days


# --- invoices, CSV, JSON ------------------------------------------------------------------


def test_invoice_total_is_computed_and_lines_must_add_up() -> None:
    invoice = Invoice("K-1", Month(2026, 5), [InvoiceLine(LineCode.PLAN, "p", 2, 100, 200)])
    assert invoice.total_yen == 200
    assert isinstance(invoice.lines, tuple)
    with pytest.raises(ValueError, match="is not 2 x 100 yen"):
        InvoiceLine(LineCode.PLAN, "p", 2, 100, 201)


def test_csv_has_a_header_and_one_row_per_line() -> None:
    k = contract(accounts=[ViewerAccountPeriod("a1", START), ViewerAccountPeriod("a2", START)])
    text = invoices_to_csv(invoices_through(k, Month(2026, 6)))
    may, june = "K-1,2026-05,", "K-1,2026-06,"
    assert text.split("\r\n") == [
        "contract_id,month,code,description,quantity,unit_yen,amount_yen,invoice_total_yen",
        may + "maintenance,Server maintenance,1,5700,5700,99200",
        may + 'plan,"Video plan, 100 hours",1,2200,2200,99200',
        may + "viewer_accounts,Viewer accounts,2,1650,3300,99200",
        may + 'setup_fee,"Setup fee, clinic Main (c1), relay box included",1,88000,88000,99200',
        june + "maintenance,Server maintenance,1,5700,5700,11200",
        june + 'plan,"Video plan, 100 hours",1,2200,2200,11200',
        june + "viewer_accounts,Viewer accounts,2,1650,3300,11200",
        "",  # every row ends with CRLF
    ]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_HEADER
    assert sum(int(r["amount_yen"]) for r in rows if r["month"] == "2026-05") == 99_200


def test_csv_of_no_invoices_is_the_header_alone() -> None:
    assert invoices_to_csv([]) == ",".join(CSV_HEADER) + "\r\n"


def test_csv_defuses_text_a_spreadsheet_would_run_as_a_formula() -> None:
    k = contract(clinics=[clinic("c1", name="=HYPERLINK(1)")])
    line = InvoiceLine(LineCode.SETUP_FEE, "=1+1", 1, 88_000, 88_000)
    text = invoices_to_csv([Invoice("@K", Month(2026, 5), [line]), billed(k, 2026, 5)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["contract_id"] == "'@K"
    assert rows[0]["description"] == "'=1+1"
    assert "clinic =HYPERLINK(1) (c1)" in rows[-1]["description"]  # not at the start: harmless


def test_json_shape() -> None:
    k = contract(accounts=[ViewerAccountPeriod("a1", START)])
    data = invoice_to_json(billed(k, 2026, 6))
    assert data == {
        "contract_id": "K-1",
        "month": "2026-06",
        "currency": "JPY",
        "tax_included": True,
        "lines": [
            {
                "code": "maintenance",
                "description": "Server maintenance",
                "quantity": 1,
                "unit_yen": 5700,
                "amount_yen": 5700,
            },
            {
                "code": "plan",
                "description": "Video plan, 100 hours",
                "quantity": 1,
                "unit_yen": 2200,
                "amount_yen": 2200,
            },
            {
                "code": "viewer_accounts",
                "description": "Viewer accounts",
                "quantity": 1,
                "unit_yen": 1650,
                "amount_yen": 1650,
            },
        ],
        "total_yen": 9550,
    }
    assert json.loads(json.dumps(data)) == data


# --- inconsistent facts are refused up front ------------------------------------------------


def test_bad_plan_hours_in_the_history_are_a_plan_error() -> None:
    with pytest.raises(PlanError, match="150 is not one of them"):
        PlanChange(START, 150)


def test_dates_must_be_dates_not_datetimes() -> None:
    with pytest.raises(TypeError, match="calendar day in Japan time"):
        PlanChange(datetime(2026, 6, 15, 10, 30), 400)
    with pytest.raises(TypeError):
        contract(start=datetime(2026, 4, 15, 9, 0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clinics": []}, "has no clinic"),
        ({"clinics": [clinic("c1"), clinic("c1")]}, "clinic_id c1 appears twice"),
        ({"plans": []}, "has no plan"),
        ({"plans": [PlanChange(date(2026, 4, 16), 100)]}, "a plan must be in force from the start"),
        (
            {"plans": [PlanChange(START, 100), PlanChange(START, 200)]},
            "plan effective_on 2026-04-15 appears twice",
        ),
        ({"notice_on": date(2026, 3, 1)}, "before its service start"),
        (
            {
                "notice_on": date(2026, 6, 1),
                "clinics": [clinic("c1"), clinic("c2", date(2026, 7, 1))],
            },
            "clinic c2 is set up on 2026-07-01, after the contract ends on 2026-06-30",
        ),
        (
            {"overdue": [OverdueInvoice("I", 1, START), OverdueInvoice("I", 2, START)]},
            "overdue invoice_id I appears twice",
        ),
    ],
)
def test_inconsistent_contracts_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        contract(**kwargs)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------

days_2026_2028 = st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31))


@st.composite
def contracts(draw: st.DrawFn) -> ContractBilling:
    start = draw(days_2026_2028)
    changes = draw(
        st.lists(st.tuples(st.integers(1, 900), st.sampled_from(PLAN_HOURS)), max_size=4)
    )
    plans = {start: draw(st.sampled_from(PLAN_HOURS))}
    plans.update({start + timedelta(days=offset): hours for offset, hours in changes})
    accounts = [
        ViewerAccountPeriod(
            f"a{i}",
            start + timedelta(days=begin),
            None if length is None else start + timedelta(days=begin + length),
        )
        for i, (begin, length) in enumerate(
            draw(
                st.lists(
                    st.tuples(st.integers(-30, 600), st.none() | st.integers(0, 400)), max_size=5
                )
            )
        )
    ]
    clinic_days = draw(st.lists(st.integers(-60, 300), min_size=1, max_size=4))
    notice = draw(st.none() | st.integers(0, 900).map(lambda d: start + timedelta(days=d)))
    overdue = [
        OverdueInvoice(f"I{i}", amount, start + timedelta(days=due), paid)
        for i, (amount, due, paid) in enumerate(
            draw(
                st.lists(
                    st.tuples(
                        st.integers(0, 500_000), st.integers(20, 400), st.none() | days_2026_2028
                    ),
                    max_size=3,
                )
            )
        )
    ]
    ends_on = None if notice is None else contract_end_for_notice(notice)
    setups = [start + timedelta(days=d) for d in clinic_days]  # none after the contract ends
    return ContractBilling(
        "K-P",
        "Property Dental",
        start,
        [
            ClinicBilling(f"c{i}", f"Clinic {i}", day if ends_on is None else min(day, ends_on))
            for i, day in enumerate(setups)
        ],
        [PlanChange(day, hours) for day, hours in plans.items()],
        accounts,
        notice,
        overdue,
    )


@no_db
@given(contracts())
def test_every_invoice_totals_its_lines_and_is_at_least_the_minimum(k: ContractBilling) -> None:
    for invoice in invoices_through(k, Month(2030, 12)):
        assert invoice.total_yen == sum(line.amount_yen for line in invoice.lines)
        assert invoice.month > Month.of(k.service_start) or invoice.month == k.first_invoice_month
        if invoice.month > Month.of(k.service_start):
            viewers = sum(
                ln.quantity for ln in invoice.lines if ln.code is LineCode.VIEWER_ACCOUNTS
            )
            assert invoice.total_yen >= 7_900 + 1_650 * viewers


@no_db
@given(contracts())
def test_each_setup_fee_is_billed_exactly_once(k: ContractBilling) -> None:
    fees = [
        line
        for invoice in invoices_through(k, Month(2030, 12))
        for line in invoice.lines
        if line.code is LineCode.SETUP_FEE
    ]
    assert len(fees) == len(k.clinics)


@no_db
@given(
    st.integers(0, 2_000_000),
    days_2026_2028,
    st.integers(0, 800),
)
def test_monthly_interest_lines_add_up_to_the_one_off_interest(
    amount: int, due_on: date, late_by: int
) -> None:
    paid_on = due_on + timedelta(days=late_by)
    k = contract(start=date(2025, 12, 1), overdue=[OverdueInvoice("I", amount, due_on, paid_on)])
    interest = sum(
        amounts(inv).get(LineCode.LATE_INTEREST, 0) for inv in invoices_through(k, Month(2032, 1))
    )
    assert interest == late_interest(amount, due_on, paid_on)


@no_db
@given(st.integers(0, 2_000_000), days_2026_2028, st.integers(0, 800), st.integers(0, 800))
def test_late_interest_grows_with_the_delay(amount: int, due_on: date, a: int, b: int) -> None:
    early, late = sorted((a, b))
    assert late_interest(amount, due_on, due_on + timedelta(days=early)) <= late_interest(
        amount, due_on, due_on + timedelta(days=late)
    )


@no_db
@given(days_2026_2028)
def test_a_notice_always_leaves_at_least_10_days_and_ends_on_a_month_end(notice_on: date) -> None:
    end = contract_end_for_notice(notice_on)
    assert (end - notice_on).days >= 10
    assert end == Month.of(end).last_day
    assert Month.of(end) in (Month.of(notice_on), Month.of(notice_on).next())
