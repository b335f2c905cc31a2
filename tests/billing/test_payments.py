"""billing/payments.py: recording a payment once, in full, and each invoice's standing with its late interest.

Late interest is floor(base x 0.146 x days / 365), the days running from the day after the due date to the
day before the payment (docs/billing.md rule 7); the figures below are worked out by hand.
"""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from chairside.billing import issuing, payments
from chairside.context import Context
from chairside.domain.billing import Month
from chairside.errors import Problem
from tests.billing.contracts import jst, ledger, small_contract

MARCH, MAY = Month(2026, 3), Month(2026, 5)


def _march_issued(ctx: Context, name: str = "小さな歯科", created_day: int = 20) -> uuid.UUID:
    """A contract whose March invoice, 7,900 yen, was issued on 31 March, due 30 April."""
    c = small_contract(ctx, jst(2026, 1, created_day, 10), name=name)
    issuing.issue_month(ctx, MARCH, today=date(2026, 4, 1), due_on=date(2026, 4, 30))
    return c


def test_a_payment_30_days_late_owes_94_yen(ctx: Context) -> None:
    c = _march_issued(ctx)
    recorded = payments.record_payment(ctx, c, MARCH, date(2026, 5, 31), today=date(2026, 6, 1), amount_yen=7_900)
    p = recorded.payment
    assert (p.contract_id, p.name, p.month, p.amount_yen, p.interest_base_yen) == (c, "小さな歯科", MARCH, 7_900, 7_900)
    assert (p.issued_on, p.due_on, p.paid_on) == (date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 31))
    # 1 to 30 May, 30 days: floor(7,900 x 0.146 x 30 / 365) = floor(94.8) = 94.
    assert (p.status, p.late_days, p.late_interest_yen) == ("paid late", 30, 94)
    assert recorded.overbilled is None
    assert ledger(ctx, c)[0][5] == date(2026, 5, 31)


@pytest.mark.parametrize("paid_on", [date(2026, 4, 15), date(2026, 4, 30), date(2026, 5, 1)])
def test_a_payment_by_the_day_after_the_due_date_owes_nothing(ctx: Context, paid_on: date) -> None:
    c = _march_issued(ctx)
    p = payments.record_payment(ctx, c, MARCH, paid_on, today=date(2026, 5, 1)).payment
    assert (p.status, p.late_days, p.late_interest_yen) == ("paid", 0, 0)


def test_refused_payments_record_nothing(ctx: Context) -> None:
    c = _march_issued(ctx)
    other = small_contract(ctx, name="よその歯科")  # recorded after March was issued: nothing issued to it
    missing = uuid.uuid4()
    today = date(2026, 5, 10)
    for args, amount, status, says in [
        ((c, MARCH, date(2026, 5, 11)), None, 422,
         "a payment on 2026-05-11 is in the future (today is 2026-05-10 in Japan): record a payment once it is "
         "received."),
        ((missing, MARCH, date(2026, 5, 11)), None, 422, "a payment on 2026-05-11 is in the future"),  # first
        ((missing, MARCH, date(2026, 5, 10)), None, 404, f"There is no contract {missing}."),
        ((c, Month(2026, 4), date(2026, 5, 10)), None, 404,
         f"no invoice for 2026-04 was issued to contract {c} (its issued invoices are for 2026-03): a payment is "
         "recorded against an issued invoice (`invoices --month 2026-04 --issue` records them)."),
        ((other, MARCH, date(2026, 5, 10)), None, 404,
         f"no invoice for 2026-03 was issued to contract {other} (it has no issued invoice)"),
        ((c, MARCH, date(2026, 3, 30)), None, 422,
         "a payment on 2026-03-30 is before the 2026-03 invoice was issued on 2026-03-31: check the date."),
        ((c, MARCH, date(2026, 5, 10)), 7_000, 422,
         f"7,000 yen received, but the 2026-03 invoice of contract {c} is 7,900 yen: only payments in full are "
         "recorded; record it once the invoice is paid in full."),
    ]:
        with pytest.raises(Problem) as refused:
            payments.record_payment(ctx, *args, today=today, amount_yen=amount)
        assert refused.value.status == status and refused.value.detail.startswith(says), refused.value.detail
    assert ledger(ctx, c)[0][5] is None

    payments.record_payment(ctx, c, MARCH, date(2026, 5, 10), today=today)
    with pytest.raises(Problem) as twice:
        payments.record_payment(ctx, c, MARCH, date(2026, 5, 10), today=today)
    assert (twice.value.status, twice.value.detail) == (
        409, f"the 2026-03 invoice of contract {c} (7,900 yen) was already paid on 2026-05-10: a payment is "
        "recorded once.")
    assert ledger(ctx, c)[0][5] == date(2026, 5, 10)


def test_a_late_payment_recorded_after_a_later_invoice_billed_its_interest_reports_the_excess(ctx: Context) -> None:
    c = _march_issued(ctx)
    issuing.issue_month(ctx, MAY, today=date(2026, 6, 1), due_on=date(2026, 6, 30))
    # May billed interest on March as unpaid to 31 May: 1 to 31 May, 31 days, floor(97.96) = 97.
    # Paid on 20 May: 1 to 19 May, 19 days, floor(7,900 x 0.146 x 19 / 365) = floor(60.04) = 60; 37 too many.
    recorded = payments.record_payment(ctx, c, MARCH, date(2026, 5, 20), today=date(2026, 6, 1))
    assert (recorded.payment.late_days, recorded.payment.late_interest_yen) == (19, 60)
    assert recorded.overbilled == payments.OverbilledInterest(MARCH, MAY, date(2026, 5, 31), 37)


def test_a_payment_in_a_month_not_issued_yet_leaves_its_interest_to_that_months_invoice(ctx: Context) -> None:
    c = _march_issued(ctx)
    issuing.issue_month(ctx, MAY, today=date(2026, 6, 1), due_on=date(2026, 6, 30))
    # Paid on 10 June: 1 May to 9 June, 40 days, floor(7,900 x 0.146 x 40 / 365) = floor(126.4) = 126; May
    # billed 97 of it and June's invoice will bill the other 29: nothing was billed in excess.
    recorded = payments.record_payment(ctx, c, MARCH, date(2026, 6, 10), today=date(2026, 6, 10))
    assert (recorded.payment.late_days, recorded.payment.late_interest_yen, recorded.overbilled) == (40, 126, None)


def test_an_invoice_that_carried_interest_accrues_interest_on_its_charges_only(ctx: Context) -> None:
    c = _march_issued(ctx)
    issuing.issue_month(ctx, MAY, today=date(2026, 6, 1), due_on=date(2026, 6, 30))  # 7,900 + 97 on March
    with pytest.raises(Problem, match="only payments in full are recorded"):
        payments.record_payment(ctx, c, MAY, date(2026, 7, 31), today=date(2026, 8, 1), amount_yen=7_900)
    # Paid 31 July: 1 to 30 July, 30 days on the 7,900 yen of charges: floor(94.8) = 94 (on 7,997: 95).
    p = payments.record_payment(ctx, c, MAY, date(2026, 7, 31), today=date(2026, 8, 1), amount_yen=7_997).payment
    assert (p.amount_yen, p.interest_base_yen, p.late_days, p.late_interest_yen) == (7_997, 7_900, 30, 94)


@pytest.mark.parametrize(("today", "status", "days", "interest"), [
    (date(2026, 4, 30), "unpaid", 0, 0),  # due today
    (date(2026, 5, 1), "overdue", 0, 0),  # overdue, but paid today it would owe nothing yet
    (date(2026, 5, 2), "overdue", 1, 3),  # 1 May: floor(7,900 x 0.146 / 365) = floor(3.16) = 3
    (date(2026, 8, 1), "overdue", 92, 290),  # 1 May to 31 July: floor(7,900 x 0.146 x 92 / 365) = floor(290.7)
])
def test_an_unpaid_invoice_stands_as_if_paid_today(
    ctx: Context, today: date, status: str, days: int, interest: int
) -> None:
    c = _march_issued(ctx)
    [p] = payments.list_payments(ctx, today=today, contract_id=c)
    assert (p.month, p.paid_on, p.status, p.late_days, p.late_interest_yen) == (MARCH, None, status, days, interest)


def test_the_list_is_by_month_then_contract_and_filters_the_unpaid(ctx: Context) -> None:
    a = _march_issued(ctx, "一番目", created_day=20)
    b = small_contract(ctx, jst(2026, 1, 25, 10), name="二番目")
    issuing.issue_month(ctx, MARCH, today=date(2026, 4, 1), due_on=date(2026, 4, 30))  # b's; a's is kept
    issuing.issue_month(ctx, Month(2026, 4), today=date(2026, 5, 1), due_on=date(2026, 5, 31))
    payments.record_payment(ctx, b, MARCH, date(2026, 4, 20), today=date(2026, 5, 1))
    today = date(2026, 5, 10)
    listed = payments.list_payments(ctx, today=today)
    assert [(p.month, p.contract_id, p.status) for p in listed] == [
        (MARCH, a, "overdue"), (MARCH, b, "paid"), (Month(2026, 4), a, "unpaid"), (Month(2026, 4), b, "unpaid")]
    unpaid = payments.list_payments(ctx, today=today, unpaid_only=True)
    assert [(p.month, p.contract_id) for p in unpaid] == [(MARCH, a), (Month(2026, 4), a), (Month(2026, 4), b)]
    assert payments.unpaid_total_yen(listed) == payments.unpaid_total_yen(unpaid) == 3 * 7_900
    assert [p.contract_id for p in payments.list_payments(ctx, today=today, contract_id=b)] == [b, b]
    missing = uuid.uuid4()
    with pytest.raises(Problem) as refused:
        payments.list_payments(ctx, today=today, contract_id=missing)
    assert (refused.value.status, refused.value.detail) == (404, f"There is no contract {missing}.")
