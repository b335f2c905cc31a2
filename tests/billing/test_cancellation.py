"""billing/cancellation.py: recording, replacing and withdrawing a contract's cancellation notice."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from chairside.billing import cancellation, issuing
from chairside.context import Context
from chairside.domain.billing import Month
from chairside.errors import Problem
from chairside.tenancy.service import create_clinic
from tests.billing.contracts import jst, notice_of, small_contract

TODAY = date(2026, 4, 1)


@pytest.mark.parametrize(("notice_on", "ends_on", "last_month"), [
    (date(2026, 3, 21), date(2026, 3, 31), Month(2026, 3)),  # 10 days before the 31st: ends that month
    (date(2026, 3, 22), date(2026, 4, 30), Month(2026, 4)),  # 9 days: the end of the next month
])
def test_a_notice_is_recorded_with_the_contracts_last_day_and_last_billed_month(
    ctx: Context, notice_on: date, ends_on: date, last_month: Month
) -> None:
    c = small_contract(ctx)
    recorded = cancellation.record_notice(ctx, c, notice_on, today=TODAY)
    assert (recorded.contract_id, recorded.notice_on, recorded.ends_on, recorded.last_billed_month) == (
        c, notice_on, ends_on, last_month)
    assert (recorded.previous_notice_on, recorded.replaced_notice_on, recorded.unchanged) == (None, None, False)
    assert notice_of(ctx, c) == notice_on


def test_the_same_notice_twice_changes_nothing_and_another_needs_replace(ctx: Context) -> None:
    c = small_contract(ctx)
    cancellation.record_notice(ctx, c, date(2026, 3, 20), today=TODAY)
    again = cancellation.record_notice(ctx, c, date(2026, 3, 20), today=TODAY)
    assert (again.unchanged, again.replaced_notice_on, again.previous_notice_on) == (True, None, date(2026, 3, 20))

    with pytest.raises(Problem) as refused:
        cancellation.record_notice(ctx, c, date(2026, 3, 22), today=TODAY)
    assert refused.value.status == 409
    assert refused.value.detail == (
        f"contract {c} already has a cancellation notice received on 2026-03-20 (it ends the contract on "
        "2026-03-31); to record 2026-03-22 instead, add --replace, or clear it with --withdraw.")
    assert notice_of(ctx, c) == date(2026, 3, 20)

    replaced = cancellation.record_notice(ctx, c, date(2026, 3, 22), today=TODAY, replace=True)
    assert (replaced.ends_on, replaced.replaced_notice_on, replaced.unchanged) == (
        date(2026, 4, 30), date(2026, 3, 20), False)
    assert notice_of(ctx, c) == date(2026, 3, 22)


def test_a_notice_is_withdrawn_once(ctx: Context) -> None:
    c = small_contract(ctx)
    cancellation.record_notice(ctx, c, date(2026, 3, 22), today=TODAY)
    withdrawn = cancellation.withdraw_notice(ctx, c)
    assert (withdrawn.contract_id, withdrawn.withdrawn_notice_on) == (c, date(2026, 3, 22))
    assert notice_of(ctx, c) is None
    assert cancellation.withdraw_notice(ctx, c).withdrawn_notice_on is None


def test_a_notice_before_the_service_started_is_refused_on_the_japanese_calendar(ctx: Context) -> None:
    # Created at 01:00 in Japan on 20 January, 16:00 UTC on the 19th: the service started on the 20th.
    c = small_contract(ctx, jst(2026, 1, 20, 1))
    with pytest.raises(Problem) as refused:
        cancellation.record_notice(ctx, c, date(2026, 1, 19), today=TODAY)
    assert (refused.value.status, refused.value.detail) == (
        422, "a notice on 2026-01-19 is before the service started on 2026-01-20: check the date.")
    assert notice_of(ctx, c) is None
    # On the first day: it ends in the start month (11 days left), the month of its setup-fee-only invoice.
    first = cancellation.record_notice(ctx, c, date(2026, 1, 20), today=TODAY)
    assert (first.ends_on, first.last_billed_month) == (date(2026, 1, 31), Month(2026, 1))


def test_a_notice_later_than_today_is_refused_and_one_received_today_is_not(ctx: Context) -> None:
    c = small_contract(ctx)
    with pytest.raises(Problem) as refused:
        cancellation.record_notice(ctx, c, date(2026, 4, 2), today=date(2026, 4, 1))
    assert (refused.value.status, refused.value.detail) == (
        422, "a notice on 2026-04-02 is in the future (today is 2026-04-01 in Japan): record a notice once it "
        "is received, with the day it was received.")
    assert notice_of(ctx, c) is None
    assert cancellation.record_notice(ctx, c, date(2026, 4, 2), today=date(2026, 4, 2)).ends_on == date(2026, 4, 30)


def test_a_notice_cannot_end_the_contract_before_a_month_already_issued(ctx: Context) -> None:
    c = small_contract(ctx)
    issuing.issue_month(ctx, Month(2026, 5), today=date(2026, 6, 1), due_on=date(2026, 6, 30))
    with pytest.raises(Problem) as refused:
        cancellation.record_notice(ctx, c, date(2026, 3, 20), today=date(2026, 6, 1))
    assert (refused.value.status, refused.value.detail) == (
        409, "a notice on 2026-03-20 ends the contract on 2026-03-31, but invoices were already issued for 2026-05, "
        "after that: check the date, or settle those invoices first.")
    assert notice_of(ctx, c) is None
    # Ending with the month issued (a notice on 10 May ends it on 31 May) is fine.
    assert cancellation.record_notice(ctx, c, date(2026, 5, 10), today=date(2026, 6, 1)).last_billed_month == Month(
        2026, 5)


def test_a_notice_cannot_end_the_contract_before_a_clinic_is_set_up(ctx: Context) -> None:
    c = small_contract(ctx)
    create_clinic(ctx, c, "分院", created_at=jst(2026, 7, 1, 10))
    with pytest.raises(Problem) as refused:
        cancellation.record_notice(ctx, c, date(2026, 5, 10), today=date(2026, 6, 1))
    assert refused.value.status == 422
    assert refused.value.detail.startswith("a notice on 2026-05-10 cannot be recorded: ")
    assert "is set up on 2026-07-01, after the contract ends on 2026-05-31" in refused.value.detail
    assert notice_of(ctx, c) is None


def test_an_unknown_contract_is_refused(ctx: Context) -> None:
    missing = uuid.uuid4()
    for call in (lambda: cancellation.record_notice(ctx, missing, date(2026, 3, 20), today=TODAY),
                 lambda: cancellation.withdraw_notice(ctx, missing)):
        with pytest.raises(Problem) as refused:
            call()
        assert (refused.value.status, refused.value.detail) == (404, f"There is no contract {missing}.")
