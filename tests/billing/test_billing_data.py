"""From the database to domain.billing: invoices computed from contracts, clinics, plan history, accounts,
cancellation notices and the payment ledger."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from chairside.billing.invoices import contract_billing, invoices_for_month, overdue_invoices
from chairside.context import Context
from chairside.db.models import Account, Contract, IssuedInvoice, utcnow
from chairside.domain.billing import Invoice, Month, PlanChange, invoice_for, late_interest, parse_month
from chairside.quota import plan_changes
from tests.factories import make_account, make_clinic, make_contract

JST = ZoneInfo("Asia/Tokyo")


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=JST)


def _contract(ctx: Context, created: datetime, plan: int = 100, clinics: int = 1, name: str = "デモ歯科") -> uuid.UUID:
    contract_id = make_contract(ctx, name, plan, created_at=created)
    for i in range(clinics):
        make_clinic(ctx, contract_id, f"{name} {i + 1}", created_at=created)
    return contract_id


def _account(ctx: Context, contract_id: uuid.UUID, created: datetime, disabled: datetime | None = None) -> None:
    make_account(ctx, contract_id, f"u{uuid.uuid4().hex[:8]}", created_at=created, disabled_at=disabled)


def _invoice(ctx: Context, contract_id: uuid.UUID, month: Month) -> Invoice | None:
    with ctx.db.read() as s:
        contract = s.get(Contract, contract_id)
        assert contract is not None
        return invoice_for(contract_billing(s, contract), month)


def _lines(invoice: Invoice | None) -> list[tuple[str, int, int]]:
    assert invoice is not None
    return [(str(line.code), line.quantity, line.amount_yen) for line in invoice.lines]


def test_a_contracts_invoices_come_from_its_rows(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 3, 10, 9), plan=100)
    make_clinic(ctx, c, "駅前分院", created_at=jst(2026, 5, 20, 14))
    _account(ctx, c, jst(2026, 3, 12, 10))
    _account(ctx, c, jst(2026, 5, 2, 10), disabled=jst(2026, 5, 31, 18))
    request = plan_changes.request_plan(ctx.db, c, 300, account_id=None, name="admin")
    plan_changes.decide(ctx.db, request.id, approve=True, now=jst(2026, 4, 15, 11))

    assert _invoice(ctx, c, Month(2026, 3)) is None  # the month of the start is free
    assert _lines(_invoice(ctx, c, Month(2026, 4))) == [
        ("maintenance", 1, 5_700), ("plan", 1, 2_200), ("viewer_accounts", 1, 1_650), ("setup_fee", 1, 88_000)]
    may = _invoice(ctx, c, Month(2026, 5))
    assert _lines(may) == [  # the plan approved on 15 April is billed from May; the branch's setup fee
        ("maintenance", 1, 5_700), ("plan", 1, 6_400), ("viewer_accounts", 2, 3_300), ("setup_fee", 1, 88_000)]
    assert may is not None and may.total_yen == 103_400
    assert _lines(_invoice(ctx, c, Month(2026, 6))) == [
        ("maintenance", 1, 5_700), ("plan", 1, 6_400), ("viewer_accounts", 1, 1_650)]


def test_days_are_japanese_calendar_days(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 3, 31, 23, 30))  # 14:30 UTC on the 31st: still March in Japan
    make_clinic(ctx, c, "分院", created_at=datetime(2026, 5, 31, 15, 30, tzinfo=ZoneInfo("UTC")))
    with ctx.db.read() as s:
        contract = s.get(Contract, c)
        assert contract is not None
        facts = contract_billing(s, contract)
    assert str(facts.service_start) == "2026-03-31"
    assert [str(cl.setup_on) for cl in facts.clinics] == ["2026-03-31", "2026-06-01"]  # 00:30 on 1 June in Japan
    assert [line.code for line in _invoice(ctx, c, Month(2026, 6)).lines].count("setup_fee") == 1  # type: ignore[union-attr]


def test_several_changes_in_one_day_count_as_that_days_last(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    for hours, hour in ((500, 9), (200, 15)):
        with ctx.db.session() as s:
            plan_changes.apply_plan(s, c, hours, reason="operator", now=jst(2026, 3, 1, hour))
    with ctx.db.read() as s:
        contract = s.get(Contract, c)
        assert contract is not None
        history = contract_billing(s, contract).plan_history
    assert [(str(p.effective_on), p.hours) for p in history] == [("2026-01-05", 100), ("2026-03-01", 200)]
    assert ("plan", 1, 4_300) in _lines(_invoice(ctx, c, Month(2026, 3)))


def test_a_contract_older_than_its_plan_history_starts_on_the_plan_before_the_first_change(ctx: Context) -> None:
    created = jst(2026, 1, 5, 9)
    with ctx.db.session() as s:  # by hand: create_contract records the first plan, and this contract has none
        s.add(Contract(id=(c := uuid.uuid4()), name="古い契約", plan_hours=300, created_at=created))
    make_clinic(ctx, c, "本院", created_at=created)
    assert ("plan", 1, 6_400) in _lines(_invoice(ctx, c, Month(2026, 2)))  # no history at all: the current plan
    with ctx.db.session() as s:
        plan_changes.apply_plan(s, c, 500, reason="operator", now=jst(2026, 3, 10, 9))
    assert ("plan", 1, 6_400) in _lines(_invoice(ctx, c, Month(2026, 3)))
    assert ("plan", 1, 10_600) in _lines(_invoice(ctx, c, Month(2026, 4)))
    with ctx.db.read() as s:
        contract = s.get(Contract, c)
        assert contract is not None
        assert contract_billing(s, contract).plan_history[0] == PlanChange(created.date(), 300)


def test_every_contract_is_invoiced_and_one_that_cannot_be_is_reported(ctx: Context) -> None:
    a = _contract(ctx, jst(2026, 1, 5, 9), name="A 歯科")
    b = _contract(ctx, jst(2026, 1, 20, 9), plan=400, clinics=2, name="B 歯科")
    _contract(ctx, jst(2026, 2, 3, 9), name="C 歯科 (starts in February: nothing to bill)")
    broken = _contract(ctx, jst(2026, 1, 6, 9), clinics=0, name="支店なし")
    invoices, skipped = invoices_for_month(ctx.db, Month(2026, 2))
    assert [i.contract_id for i in invoices] == [str(a), str(b)]
    assert [i.total_yen for i in invoices] == [5_700 + 2_200 + 88_000, 5_700 + 8_500 + 2 * 88_000]
    [s] = skipped
    assert s.contract_id == broken and "no clinic" in s.reason


def test_an_account_disabled_before_a_month_is_not_billed_for_it(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    _account(ctx, c, jst(2026, 1, 6, 9), disabled=jst(2026, 2, 28, 23))
    assert ("viewer_accounts", 1, 1_650) in _lines(_invoice(ctx, c, Month(2026, 2)))
    assert all(code != "viewer_accounts" for code, _, _ in _lines(_invoice(ctx, c, Month(2026, 3))))
    with ctx.db.session() as s:
        s.execute(update(Account).where(Account.contract_id == c).values(disabled_at=None))
    assert ("viewer_accounts", 1, 1_650) in _lines(_invoice(ctx, c, Month.of((utcnow() + timedelta(days=1)).date())))


# --- cancellation notices and the payment ledger -------------------------------------------------


def test_the_cancellation_notice_is_read_and_ends_the_invoices(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    with ctx.db.session() as s:
        s.execute(update(Contract).where(Contract.id == c).values(cancellation_notice_on=date(2026, 3, 22)))
    with ctx.db.read() as s:
        contract = s.get(Contract, c)
        assert contract is not None
        facts = contract_billing(s, contract)
    assert (facts.cancellation_notice_on, facts.ends_on) == (date(2026, 3, 22), date(2026, 4, 30))
    assert _invoice(ctx, c, Month(2026, 4)) is not None and _invoice(ctx, c, Month(2026, 5)) is None
    invoices, _ = invoices_for_month(ctx.db, Month(2026, 5))
    assert str(c) not in [i.contract_id for i in invoices]


def _issue(ctx: Context, contract_id: uuid.UUID, month: str, due_on: date, paid_on: date | None,
           amount_yen: int = 7_900, interest_base_yen: int | None = None) -> None:
    """A ledger row; its interest base is its amount unless given (an invoice that carried no interest)."""
    with ctx.db.session() as s:
        s.add(IssuedInvoice(contract_id=contract_id, month=month, amount_yen=amount_yen,
                            interest_base_yen=amount_yen if interest_base_yen is None else interest_base_yen,
                            issued_on=parse_month(month).last_day, due_on=due_on, paid_on=paid_on))


def test_overdue_invoices_come_from_the_ledger_until_the_month_of_their_payment(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    other = _contract(ctx, jst(2026, 1, 5, 9), name="別の歯科")
    _issue(ctx, c, "2026-02", date(2026, 3, 31), date(2026, 3, 20))  # paid on time: never overdue
    _issue(ctx, c, "2026-03", date(2026, 4, 30), date(2026, 6, 10))  # paid late, in June
    _issue(ctx, c, "2026-04", date(2026, 5, 31), None, amount_yen=10_000)  # never paid
    _issue(ctx, c, "2026-05", date(2026, 6, 30), date(2026, 7, 1))  # the day after: late, but owes nothing
    _issue(ctx, other, "2026-03", date(2026, 4, 30), None)  # another contract's

    def overdue(month: Month | None) -> list[tuple[str, int, date | None]]:
        with ctx.db.read() as s:
            return [(o.invoice_id, o.amount_yen, o.paid_on) for o in overdue_invoices(s, c, month)]

    assert overdue(Month(2026, 4)) == []  # nothing due before 30 April has passed
    assert overdue(Month(2026, 5)) == [("2026-03", 7_900, date(2026, 6, 10))]
    assert overdue(Month(2026, 6)) == [("2026-03", 7_900, date(2026, 6, 10)), ("2026-04", 10_000, None)]
    assert overdue(Month(2026, 7)) == [("2026-04", 10_000, None), ("2026-05", 7_900, date(2026, 7, 1))]
    assert overdue(None) == [("2026-03", 7_900, date(2026, 6, 10)), ("2026-04", 10_000, None),
                             ("2026-05", 7_900, date(2026, 7, 1))]

    def interest(month: Month) -> list[tuple[str, int]]:
        invoice = _invoice(ctx, c, month)
        assert invoice is not None
        return [(line.description.split()[5], line.amount_yen) for line in invoice.lines
                if line.code == "late_interest"]

    assert interest(Month(2026, 4)) == []
    assert interest(Month(2026, 5)) == [("2026-03", 97)]  # 1 to 31 May: 31 days
    # June: 2026-03 to its payment on 10 June (9 more days), 2026-04 for 1 to 30 June (30 days).
    assert interest(Month(2026, 6)) == [
        ("2026-03", late_interest(7_900, date(2026, 4, 30), date(2026, 6, 10)) - 97),
        ("2026-04", 120)]
    assert interest(Month(2026, 7)) == [("2026-04", 244 - 120)]  # 2026-05, paid the day after its due date: none

    # Reading only what matters for a month bills the same as reading the whole ledger.
    with ctx.db.read() as s:
        contract = s.get(Contract, c)
        assert contract is not None
        for month in (Month(2026, m) for m in range(2, 11)):
            assert invoice_for(contract_billing(s, contract, month), month) == invoice_for(
                contract_billing(s, contract), month)


def test_a_contract_with_an_impossible_ledger_row_is_reported_not_billed(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    _issue(ctx, c, "2026-03", date(2026, 4, 30), None, amount_yen=-1)
    invoices, skipped = invoices_for_month(ctx.db, Month(2026, 6))
    assert invoices == []
    [s] = skipped
    assert s.contract_id == c and "amount_yen must not be negative" in s.reason


# Late interest is simple: on an invoice's charges (interest_base_yen), never on the interest it carried.
@pytest.mark.parametrize(("amount", "base", "due_on", "paid_on", "interest", "line"), [
    # Carried no interest: the base is the amount, and the line says nothing more.
    # 7,900 x 0.146 x 30 / 365 = 94.8 -> 94 (1 to 30 July).
    (7_900, 7_900, date(2026, 6, 30), date(2026, 7, 31), 94,
     "(7,900 yen due 2026-06-30): 30 days at 14.6% a year"),
    # 7,994 = 7,900 of charges + 94 of interest it carried. 7,900 x 0.146 x 30 / 365 = 94.8 -> 94;
    # on the whole 7,994 it would be 7,994 x 0.146 x 30 / 365 = 95.9 -> 95.
    (7_994, 7_900, date(2026, 6, 30), date(2026, 7, 31), 94,
     "(7,994 yen due 2026-06-30): 30 days at 14.6% a year on 7,900 yen of charges"),
    # 95,900 of charges (a setup fee month) + 1,200 of interest, 60 days late (1 April to 30 May):
    # 95,900 x 0.146 x 60 / 365 = 840,084,000 / 365,000 = 2,301.6 -> 2,301;
    # on the whole 97,100 it would be 850,596,000 / 365,000 = 2,330.4 -> 2,330.
    (97_100, 95_900, date(2026, 3, 31), date(2026, 5, 31), 2_301,
     "(97,100 yen due 2026-03-31): 30 days at 14.6% a year on 95,900 yen of charges"),
])
def test_late_interest_accrues_on_the_charges_not_on_the_interest_an_invoice_carried(
    ctx: Context, amount: int, base: int, due_on: date, paid_on: date, interest: int, line: str
) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    month = str(Month.of(due_on).previous())
    _issue(ctx, c, month, due_on, paid_on, amount_yen=amount, interest_base_yen=base)
    with ctx.db.read() as s:
        [overdue] = overdue_invoices(s, c)
    assert (overdue.amount_yen, overdue.base_yen) == (amount, base)
    assert late_interest(base, due_on, paid_on) == interest

    lines = []  # the interest on it, on every invoice from its due month to the month of its payment
    m = Month.of(due_on)
    while m <= Month.of(paid_on):
        invoice = _invoice(ctx, c, m)
        assert invoice is not None
        lines += [(ln.amount_yen, ln.description) for ln in invoice.lines if ln.code == "late_interest"]
        m = m.next()
    assert sum(yen for yen, _ in lines) == interest
    assert lines[0][1] == f"Late payment interest on invoice {month} {line}"


def test_an_invoice_records_its_charges_as_its_interest_base(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    _issue(ctx, c, "2026-03", date(2026, 4, 30), None)
    may = _invoice(ctx, c, Month(2026, 5))
    assert may is not None and _lines(may)[-1] == ("late_interest", 1, 97)
    assert (may.total_yen, may.interest_base_yen) == (7_900 + 97, 7_900)
    april = _invoice(ctx, c, Month(2026, 4))
    assert april is not None and april.interest_base_yen == april.total_yen == 7_900


def test_a_ledger_row_whose_interest_base_is_more_than_its_amount_is_reported_not_billed(ctx: Context) -> None:
    c = _contract(ctx, jst(2026, 1, 5, 9))
    _issue(ctx, c, "2026-03", date(2026, 4, 30), None, amount_yen=7_900, interest_base_yen=7_901)
    invoices, skipped = invoices_for_month(ctx.db, Month(2026, 6))
    assert invoices == []
    [s] = skipped
    assert s.contract_id == c and "interest_base_yen 7901 is more than its amount 7900" in s.reason
