"""Video plans and their prices (SPEC.md §3).

A plan caps the *total duration of all stored videos* of a contract, from 100 to
4000 hours in steps of 100. Stills are unlimited. Every figure here is binding: it
comes from SPEC.md §3, which copies the reference product's published prices.
Money is integer yen, tax included.

Pure rules: no I/O, no clock.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_UP, Decimal
from types import MappingProxyType
from typing import Final

__all__ = [
    "LATE_INTEREST_PER_YEAR",
    "MAINTENANCE_YEN",
    "MAX_PLAN_HOURS",
    "MIN_PLAN_HOURS",
    "PLAN_HOURS",
    "PLAN_PRICES_YEN",
    "PLAN_STEP_HOURS",
    "SETUP_FEE_PER_CLINIC_YEN",
    "VIEWER_ACCOUNT_YEN",
    "PlanError",
    "next_step",
    "onboarding_plan_hours",
    "price_for",
    "validate_plan_change",
    "validate_plan_hours",
]

#: Monthly price of each plan: video hours -> yen, tax included. The one place
#: these figures live; everything else (limits, step, validation) derives from it.
PLAN_PRICES_YEN: Final[Mapping[int, int]] = MappingProxyType(
    {
        100: 2_200,
        200: 4_300,
        300: 6_400,
        400: 8_500,
        500: 10_600,
        600: 12_700,
        700: 14_700,
        800: 16_800,
        900: 18_800,
        1000: 20_800,
        1100: 22_700,
        1200: 24_700,
        1300: 26_600,
        1400: 28_500,
        1500: 30_400,
        1600: 32_300,
        1700: 34_100,
        1800: 36_000,
        1900: 37_800,
        2000: 39_600,
        2100: 41_400,
        2200: 43_100,
        2300: 44_900,
        2400: 46_600,
        2500: 48_300,
        2600: 50_000,
        2700: 51_700,
        2800: 53_400,
        2900: 55_000,
        3000: 56_600,
        3100: 58_300,
        3200: 59_800,
        3300: 61_400,
        3400: 63_000,
        3500: 64_500,
        3600: 66_100,
        3700: 67_600,
        3800: 69_100,
        3900: 70_600,
        4000: 72_000,
    }
)

#: Every plan, smallest first.
PLAN_HOURS: Final[tuple[int, ...]] = tuple(sorted(PLAN_PRICES_YEN))
MIN_PLAN_HOURS: Final[int] = PLAN_HOURS[0]
MAX_PLAN_HOURS: Final[int] = PLAN_HOURS[-1]
PLAN_STEP_HOURS: Final[int] = PLAN_HOURS[1] - PLAN_HOURS[0]

#: Server maintenance, per contract and month.
MAINTENANCE_YEN: Final[int] = 5_700
#: Browser viewer, per viewer account and month (one account = one device at a time).
VIEWER_ACCOUNT_YEN: Final[int] = 1_650
#: One-off, per clinic (its relay box included).
SETUP_FEE_PER_CLINIC_YEN: Final[int] = 88_000
#: Late payment interest, per year, counted by the day.
LATE_INTEREST_PER_YEAR: Final[Decimal] = Decimal("0.146")

#: An optionally signed whole number, with or without thousands separators ("1,000").
#: Bounded in length so int() never meets a pathological string.
_WHOLE_NUMBER: Final[re.Pattern[str]] = re.compile(
    r"[+-]?(?:\d{1,12}|\d{1,3}(?:,\d{3}){1,3})", re.ASCII
)

_RANGE_TEXT: Final[str] = (
    f"Plans run from {MIN_PLAN_HOURS} to {MAX_PLAN_HOURS} hours in steps of {PLAN_STEP_HOURS}"
)


class PlanError(ValueError):
    """A plan request that cannot be accepted.

    ``message`` is written for a clinic's staff: it says what is wrong and what
    to do instead. ``str(error)`` is the same text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def validate_plan_hours(value: object) -> int:
    """Return ``value`` as a plan size in hours, or raise :class:`PlanError`.

    Accepts an ``int``, a whole ``float``/``Decimal`` (``300.0``) or a string of
    digits (``"300"``, as typed in a form). Refuses anything else, including
    ``True``/``False``, with a message that says what a valid plan looks like.
    """
    hours = _whole_number(value)
    if hours not in PLAN_PRICES_YEN:
        raise PlanError(f"{_RANGE_TEXT}; {hours} is not one of them ({_nearest_text(hours)}).")
    return hours


def validate_plan_change(new_hours: object, stored_hours: Decimal | float) -> int:
    """Check a requested plan against the hours of video already stored.

    A plan smaller than what is stored is refused, stating both figures; a plan
    exactly equal to the stored hours is accepted. Returns the plan in hours.
    """
    hours = validate_plan_hours(new_hours)
    stored = _stored_hours(stored_hours)
    if hours < stored:
        shown = _hours_text(stored)
        if stored > MAX_PLAN_HOURS:
            advice = (
                f"That is more than the largest plan ({MAX_PLAN_HOURS} hours); "
                "export and delete videos to make room."
            )
        else:
            advice = (
                f"Choose a plan of at least {_round_up_to_plan(stored)} hours, "
                "or export and delete videos first."
            )
        raise PlanError(
            f"A {hours}-hour plan is smaller than the {shown} hours of video already "
            f"stored. {advice}"
        )
    return hours


def onboarding_plan_hours(stored_hours: Decimal | float) -> int:
    """The plan a contract starts on: the stored hours rounded up to the next 100.

    At least :data:`MIN_PLAN_HOURS`; exactly 300 stays 300, 300.01 becomes 400.
    More than :data:`MAX_PLAN_HOURS` stored raises :class:`PlanError`.
    """
    stored = _stored_hours(stored_hours)
    if stored > MAX_PLAN_HOURS:
        raise PlanError(
            f"{_hours_text(stored)} hours of video are stored, more than the largest plan "
            f"({MAX_PLAN_HOURS} hours). Export and delete videos down to {MAX_PLAN_HOURS} "
            "hours or less before moving them in."
        )
    return _round_up_to_plan(stored)


def price_for(hours: int) -> int:
    """Monthly price in yen (tax included) of the plan of ``hours`` hours."""
    return PLAN_PRICES_YEN[validate_plan_hours(hours)]


def next_step(hours: int) -> int:
    """The plan one step (100 hours) above ``hours``; refused at the largest plan."""
    current = validate_plan_hours(hours)
    if current == MAX_PLAN_HOURS:
        raise PlanError(
            f"{MAX_PLAN_HOURS} hours is the largest plan; there is no larger one. "
            "Export and delete videos to make room."
        )
    return current + PLAN_STEP_HOURS


# --- helpers ---------------------------------------------------------------------


def _whole_number(value: object) -> int:
    """``value`` as an int, or PlanError saying why it is not a number of hours."""
    example = f"Enter plan hours as a whole number such as 300 ({_RANGE_TEXT.lower()})"
    if value is None:
        raise PlanError(f"The plan hours are missing. {example}.")
    if isinstance(value, bool):
        raise PlanError(f"{example}; got {value}, which is a yes/no value.")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        # NFKC turns full-width digits typed through a Japanese IME ("３００") into ASCII.
        text = unicodedata.normalize("NFKC", value).strip()
        if _WHOLE_NUMBER.fullmatch(text):
            return int(text.replace(",", ""))
        raise PlanError(f"{example}; {value!r} is not a whole number.")
    if isinstance(value, float | Decimal):
        number = value if isinstance(value, Decimal) else Decimal(repr(value))
        if number.is_finite() and number == number.to_integral_value():
            return int(number)
        raise PlanError(f"{example}; {value} is not a whole number.")
    raise PlanError(f"{example}; got a {type(value).__name__}.")


def _nearest_text(hours: int) -> str:
    if hours < MIN_PLAN_HOURS:
        return f"the smallest is {MIN_PLAN_HOURS}"
    if hours > MAX_PLAN_HOURS:
        return f"the largest is {MAX_PLAN_HOURS}"
    below = hours - hours % PLAN_STEP_HOURS
    return f"the nearest are {below} and {below + PLAN_STEP_HOURS}"


def _stored_hours(value: Decimal | float) -> Decimal:
    """Stored video hours as a Decimal; a programming error if not a real, >= 0 number."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"stored hours must be a Decimal or a number, not {value!r}")
    # repr() of a float is its shortest round-trip text: 300.01 -> Decimal("300.01").
    stored = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not stored.is_finite() or stored < 0:
        raise ValueError(f"stored hours must be a finite number >= 0, not {value!r}")
    return stored


def _round_up_to_plan(stored: Decimal) -> int:
    """Stored hours rounded up to a multiple of the step, at least the smallest plan."""
    steps = (stored / PLAN_STEP_HOURS).to_integral_value(rounding=ROUND_CEILING)
    return max(MIN_PLAN_HOURS, int(steps) * PLAN_STEP_HOURS)


def _hours_text(stored: Decimal) -> str:
    """Hours for a message: at most two decimals, rounded *up* so 300.001 never reads 300."""
    shown = stored.quantize(Decimal("0.01"), rounding=ROUND_UP)
    return f"{shown:.2f}".rstrip("0").rstrip(".")
