"""Plans and prices: every figure checked against SPEC.md §3."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chairside.domain.plans import (
    LATE_INTEREST_PER_YEAR,
    MAINTENANCE_YEN,
    MAX_PLAN_HOURS,
    MIN_PLAN_HOURS,
    PLAN_HOURS,
    PLAN_PRICES_YEN,
    PLAN_STEP_HOURS,
    SETUP_FEE_PER_CLINIC_YEN,
    VIEWER_ACCOUNT_YEN,
    PlanError,
    next_step,
    onboarding_plan_hours,
    price_for,
    validate_plan_change,
    validate_plan_hours,
)

# Typed out again from the table in SPEC.md §3, row by row as it is printed there
# (four columns of hours | yen), not copied from plans.py.
SPEC_TABLE_ROWS = [
    (100, 2200, 1100, 22700, 2100, 41400, 3100, 58300),
    (200, 4300, 1200, 24700, 2200, 43100, 3200, 59800),
    (300, 6400, 1300, 26600, 2300, 44900, 3300, 61400),
    (400, 8500, 1400, 28500, 2400, 46600, 3400, 63000),
    (500, 10600, 1500, 30400, 2500, 48300, 3500, 64500),
    (600, 12700, 1600, 32300, 2600, 50000, 3600, 66100),
    (700, 14700, 1700, 34100, 2700, 51700, 3700, 67600),
    (800, 16800, 1800, 36000, 2800, 53400, 3800, 69100),
    (900, 18800, 1900, 37800, 2900, 55000, 3900, 70600),
    (1000, 20800, 2000, 39600, 3000, 56600, 4000, 72000),
]
SPEC_PRICES = sorted((row[i], row[i + 1]) for row in SPEC_TABLE_ROWS for i in range(0, len(row), 2))

no_db = settings(database=None)  # keep hypothesis from writing .hypothesis/ into the checkout


@pytest.mark.parametrize(("hours", "yen"), SPEC_PRICES, ids=[f"{h}h" for h, _ in SPEC_PRICES])
def test_price_of_every_plan_is_the_spec_price(hours: int, yen: int) -> None:
    assert price_for(hours) == yen
    assert PLAN_PRICES_YEN[hours] == yen


def test_the_plans_are_exactly_100_to_4000_hours_in_steps_of_100() -> None:
    assert len(SPEC_PRICES) == 40
    assert PLAN_HOURS == tuple(range(100, 4001, 100)) == tuple(h for h, _ in SPEC_PRICES)
    assert (MIN_PLAN_HOURS, MAX_PLAN_HOURS, PLAN_STEP_HOURS) == (100, 4000, 100)


def test_fixed_prices_are_the_spec_prices() -> None:
    assert MAINTENANCE_YEN == 5_700
    assert VIEWER_ACCOUNT_YEN == 1_650
    assert SETUP_FEE_PER_CLINIC_YEN == 88_000
    assert Decimal("0.146") == LATE_INTEREST_PER_YEAR


def test_smallest_monthly_bill_is_7900_yen() -> None:
    assert MAINTENANCE_YEN + price_for(MIN_PLAN_HOURS) == 7_900


@pytest.mark.parametrize(
    ("value", "hours"),
    [
        (100, 100),
        (4000, 4000),
        ("300", 300),
        (" 300 ", 300),
        ("３００", 300),  # full-width digits from a Japanese IME
        ("1,000", 1000),
        ("+200", 200),
        (300.0, 300),
        (Decimal("300"), 300),
        (Decimal("300.00"), 300),
    ],
)
def test_valid_plan_hours_are_accepted(value: object, hours: int) -> None:
    assert validate_plan_hours(value) == hours


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            0,
            "Plans run from 100 to 4000 hours in steps of 100; "
            "0 is not one of them (the smallest is 100).",
        ),
        (
            150,
            "Plans run from 100 to 4000 hours in steps of 100; "
            "150 is not one of them (the nearest are 100 and 200).",
        ),
        (
            4100,
            "Plans run from 100 to 4000 hours in steps of 100; "
            "4100 is not one of them (the largest is 4000).",
        ),
        (
            -100,
            "Plans run from 100 to 4000 hours in steps of 100; "
            "-100 is not one of them (the smallest is 100).",
        ),
        (
            "abc",
            "Enter plan hours as a whole number such as 300 (plans run from 100 to 4000 "
            "hours in steps of 100); 'abc' is not a whole number.",
        ),
        (
            True,
            "Enter plan hours as a whole number such as 300 (plans run from 100 to 4000 "
            "hours in steps of 100); got True, which is a yes/no value.",
        ),
        (
            100.5,
            "Enter plan hours as a whole number such as 300 (plans run from 100 to 4000 "
            "hours in steps of 100); 100.5 is not a whole number.",
        ),
        (
            None,
            "The plan hours are missing. Enter plan hours as a whole number such as 300 "
            "(plans run from 100 to 4000 hours in steps of 100).",
        ),
    ],
)
def test_invalid_plan_hours_are_refused_with_a_message_staff_can_act_on(
    value: object, message: str
) -> None:
    with pytest.raises(PlanError) as caught:
        validate_plan_hours(value)
    assert caught.value.message == message
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "value",
    [
        False,
        "",
        "  ",
        "1,00",
        "300h",
        "3e2",
        "9" * 5000,
        float("nan"),
        float("inf"),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("100.5"),
        [300],
        {"hours": 300},
    ],
)
def test_other_non_plans_are_refused_as_plan_errors(value: object) -> None:
    with pytest.raises(PlanError):
        validate_plan_hours(value)


def test_plan_error_is_a_value_error() -> None:
    assert issubclass(PlanError, ValueError)


@pytest.mark.parametrize(
    ("new", "stored"),
    [(300, 0), (300, 299.99), (300, Decimal("300.00")), (300, 300), (4000, Decimal("4000"))],
)
def test_a_plan_at_or_above_the_stored_hours_is_accepted(new: int, stored: Decimal | float) -> None:
    assert validate_plan_change(new, stored) == new


@pytest.mark.parametrize(
    ("new", "stored", "message"),
    [
        (
            300,
            312.5,
            "A 300-hour plan is smaller than the 312.5 hours of video already stored. "
            "Choose a plan of at least 400 hours, or export and delete videos first.",
        ),
        (
            "300",
            Decimal("300.001"),  # shown rounded up, never as a misleading "300"
            "A 300-hour plan is smaller than the 300.01 hours of video already stored. "
            "Choose a plan of at least 400 hours, or export and delete videos first.",
        ),
        (
            4000,
            Decimal("4250"),
            "A 4000-hour plan is smaller than the 4250 hours of video already stored. "
            "That is more than the largest plan (4000 hours); "
            "export and delete videos to make room.",
        ),
    ],
)
def test_a_plan_below_the_stored_hours_is_refused_stating_both(
    new: object, stored: Decimal | float, message: str
) -> None:
    with pytest.raises(PlanError) as caught:
        validate_plan_change(new, stored)
    assert caught.value.message == message


def test_a_plan_change_to_a_non_plan_is_refused_before_comparing() -> None:
    with pytest.raises(PlanError, match="150 is not one of them"):
        validate_plan_change(150, 10)


@pytest.mark.parametrize(
    ("stored", "plan"),
    [
        (0, 100),
        (Decimal("0.01"), 100),
        (99.9, 100),
        (100, 100),
        (Decimal("100.01"), 200),
        (Decimal("300.00"), 300),
        (300, 300),
        (300.01, 400),
        (Decimal("300.0001"), 400),
        (Decimal("3999.99"), 4000),
        (4000, 4000),
    ],
)
def test_onboarding_plan_is_stored_hours_rounded_up_to_the_next_100(
    stored: Decimal | float, plan: int
) -> None:
    assert onboarding_plan_hours(stored) == plan


def test_onboarding_over_4000_hours_is_refused_saying_so() -> None:
    with pytest.raises(PlanError) as caught:
        onboarding_plan_hours(Decimal("4000.01"))
    assert caught.value.message == (
        "4000.01 hours of video are stored, more than the largest plan (4000 hours). "
        "Export and delete videos down to 4000 hours or less before moving them in."
    )


@pytest.mark.parametrize("stored", [-1, Decimal("-0.01"), float("nan"), Decimal("Infinity")])
def test_impossible_stored_hours_are_a_programming_error_not_a_plan_error(
    stored: Decimal | float,
) -> None:
    with pytest.raises(ValueError, match="stored hours") as caught:
        onboarding_plan_hours(stored)
    assert not isinstance(caught.value, PlanError)


@pytest.mark.parametrize("stored", [True, "300", None])
def test_stored_hours_of_the_wrong_type_are_a_type_error(stored: object) -> None:
    with pytest.raises(TypeError):
        onboarding_plan_hours(stored)  # type: ignore[arg-type]


@pytest.mark.parametrize("hours", [0, 150, 4100])
def test_price_for_a_non_plan_is_refused(hours: int) -> None:
    with pytest.raises(PlanError):
        price_for(hours)


@pytest.mark.parametrize(("hours", "following"), [(100, 200), (1000, 1100), (3900, 4000)])
def test_next_step_is_100_hours_more(hours: int, following: int) -> None:
    assert next_step(hours) == following


def test_there_is_no_step_above_4000_hours() -> None:
    with pytest.raises(PlanError) as caught:
        next_step(4000)
    assert caught.value.message == (
        "4000 hours is the largest plan; there is no larger one. "
        "Export and delete videos to make room."
    )


def test_next_step_of_a_non_plan_is_refused() -> None:
    with pytest.raises(PlanError):
        next_step(150)


@no_db
@given(st.sampled_from(PLAN_HOURS[:-1]))
def test_price_rises_with_every_step(hours: int) -> None:
    assert price_for(next_step(hours)) > price_for(hours)


@no_db
@given(st.decimals(min_value=0, max_value=4000, places=3, allow_nan=False))
def test_onboarding_plan_holds_the_stored_hours_with_less_than_a_step_spare(
    stored: Decimal,
) -> None:
    plan = onboarding_plan_hours(stored)
    assert plan in PLAN_PRICES_YEN
    assert stored <= plan < max(stored + PLAN_STEP_HOURS, Decimal(MIN_PLAN_HOURS) + 1)
    assert validate_plan_change(plan, stored) == plan
    if plan > MIN_PLAN_HOURS:
        with pytest.raises(PlanError):
            validate_plan_change(plan - PLAN_STEP_HOURS, stored)
