"""billing/issuing.py: a month's invoices once it is over, issued into the ledger once, and their due dates."""

from __future__ import annotations

from datetime import date

import pytest

from chairside.billing import issuing, payments
from chairside.context import Context
from chairside.domain.billing import Month
from chairside.errors import Problem
from chairside.tenancy.service import create_contract
from tests.billing.contracts import STARTED, ledger, small_contract


@pytest.mark.parametrize(("billed", "due"), [
    (Month(2026, 1), date(2026, 2, 28)),
    (Month(2028, 1), date(2028, 2, 29)),  # leap year
    (Month(2026, 10), date(2026, 11, 30)),
    (Month(2026, 12), date(2027, 1, 31)),
])
def test_the_default_due_date_is_the_last_day_of_the_next_month(billed: Month, due: date) -> None:
    assert issuing.default_due_on(billed) == due


def test_a_month_is_invoiced_once_it_is_over() -> None:
    with pytest.raises(Problem) as refused:
        issuing.check_month_is_over(Month(2026, 3), date(2026, 3, 30))
    assert (refused.value.status, refused.value.detail) == (
        422, "2026-03 is not over yet: its invoices are issued on 2026-03-31 (today is 2026-03-30 in Japan). "
        "The latest month that can be invoiced is 2026-02.")
    issuing.check_month_is_over(Month(2026, 3), date(2026, 3, 31))  # its last day: over
    assert issuing.latest_invoiceable_month(date(2026, 3, 31)) == Month(2026, 3)
    assert issuing.latest_invoiceable_month(date(2026, 1, 15)) == Month(2025, 12)


def test_computing_a_month_records_nothing_and_reports_contracts_it_cannot_bill(ctx: Context) -> None:
    c = small_contract(ctx)
    bare = create_contract(ctx, "診療所なし", 100, created_at=STARTED).id  # no clinic
    found = issuing.month_invoices(ctx, Month(2026, 2), today=date(2026, 3, 1))
    [invoice] = found.invoices
    assert (invoice.contract_id, invoice.total_yen, invoice.issued_on) == (str(c), 95_900, date(2026, 2, 28))
    assert [(k.contract_id, k.name) for k in found.skipped] == [(bare, "診療所なし")]
    assert found.issued is None and ledger(ctx, c) == []
    with pytest.raises(Problem, match="2026-03 is not over yet"):
        issuing.month_invoices(ctx, Month(2026, 3), today=date(2026, 3, 1))


def test_issuing_records_each_invoice_with_the_default_due_date(ctx: Context) -> None:
    c = small_contract(ctx)
    found = issuing.issue_month(ctx, Month(2026, 2), today=date(2026, 3, 1))
    [entry] = found.issued or []
    assert (entry.contract_id, entry.month, entry.status, entry.newly_issued) == (c, Month(2026, 2), "issued", True)
    # 5,700 maintenance + 2,200 plan + 88,000 setup fee; no interest carried, so the base is the whole.
    assert (entry.amount_yen, entry.interest_base_yen, entry.computed_total_yen) == (95_900, 95_900, 95_900)
    assert (entry.issued_on, entry.due_on, entry.paid_on, entry.differs) == (
        date(2026, 2, 28), date(2026, 3, 31), None, False)
    assert ledger(ctx, c) == [("2026-02", 95_900, 95_900, date(2026, 2, 28), date(2026, 3, 31), None)]
    assert [i.total_yen for i in found.invoices] == [95_900]


def test_a_month_issued_again_keeps_its_first_record(ctx: Context) -> None:
    a = small_contract(ctx)
    issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 4, 1), due_on=date(2026, 4, 15))
    b = small_contract(ctx, name="後から")  # a contract recorded since: issued now, with this run's due date
    again = issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 4, 2), due_on=date(2026, 4, 30))
    by_contract = {e.contract_id: e for e in again.issued or []}
    assert (by_contract[a].status, by_contract[a].due_on) == ("already issued", date(2026, 4, 15))
    assert (by_contract[b].status, by_contract[b].due_on) == ("issued", date(2026, 4, 30))
    assert ledger(ctx, a) == [("2026-03", 7_900, 7_900, date(2026, 3, 31), date(2026, 4, 15), None)]


def test_the_default_due_date_once_passed_is_refused_unless_nothing_is_left_to_issue(ctx: Context) -> None:
    c = small_contract(ctx)
    # Due by default on 30 April: still the due date on 30 April itself.
    with pytest.raises(Problem) as refused:
        issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 5, 1))
    assert (refused.value.status, refused.value.detail) == (
        422, "the default due date of the 2026-03 invoices, 2026-04-30 (the last day of the month after them), "
        "has already passed (today is 2026-05-01 in Japan): give the due date written on the invoices with "
        "--due-on YYYY-MM-DD.")
    assert ledger(ctx, c) == []
    issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 4, 30))
    assert [row[4] for row in ledger(ctx, c)] == [date(2026, 4, 30)]
    # Issued already: issuing the month again later needs no due date.
    [entry] = issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 5, 1)).issued or []
    assert (entry.status, entry.due_on) == ("already issued", date(2026, 4, 30))


def test_a_due_date_before_the_issue_day_is_refused(ctx: Context) -> None:
    c = small_contract(ctx)
    with pytest.raises(Problem) as refused:
        issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 4, 1), due_on=date(2026, 3, 30))
    assert (refused.value.status, refused.value.detail) == (
        422, "a due date of 2026-03-30 is before the 2026-03 invoices are issued on 2026-03-31: check the date.")
    assert ledger(ctx, c) == []
    issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 4, 1), due_on=date(2026, 3, 31))  # the issue day
    assert [row[4] for row in ledger(ctx, c)] == [date(2026, 3, 31)]


def test_an_issued_invoice_that_would_come_to_another_amount_now_says_so(ctx: Context) -> None:
    c = small_contract(ctx)
    issuing.issue_month(ctx, Month(2026, 3), today=date(2026, 4, 1), due_on=date(2026, 4, 30))
    # May, issued with March unpaid: interest on 7,900 yen from 1 to 31 May, 31 days:
    # floor(7,900 x 0.146 x 31 / 365) = floor(97.96) = 97.
    [may] = issuing.issue_month(ctx, Month(2026, 5), today=date(2026, 6, 1), due_on=date(2026, 6, 30)).issued or []
    assert (may.amount_yen, may.interest_base_yen) == (7_997, 7_900)
    # March paid on 20 May after all: 19 days (1 to 19 May), floor(7,900 x 0.146 x 19 / 365) = floor(60.04) = 60.
    payments.record_payment(ctx, c, Month(2026, 3), date(2026, 5, 20), today=date(2026, 6, 1))
    [again] = issuing.issue_month(ctx, Month(2026, 5), today=date(2026, 6, 2)).issued or []
    assert (again.status, again.amount_yen, again.computed_total_yen, again.differs) == (
        "already issued", 7_997, 7_960, True)
    assert ledger(ctx, c)[1] == ("2026-05", 7_997, 7_900, date(2026, 5, 31), date(2026, 6, 30), None)
