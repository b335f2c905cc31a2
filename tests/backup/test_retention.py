"""Retention: 7 daily, 4 weekly, 12 monthly by default (Japan time), never fewer than 3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chairside.backup.retention import Policy, to_keep


def _daily(days: int, start: datetime = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)) -> list[tuple[str, datetime]]:
    """One generation a night (03:00 in Japan), newest first."""
    return [(f"g{i:04d}", start - timedelta(days=i)) for i in range(days)]


def test_a_year_of_nightly_generations_keeps_7_daily_4_weekly_12_monthly() -> None:
    gens = _daily(400)
    kept = to_keep(gens, Policy())
    newest_7 = {g for g, _ in gens[:7]}
    assert newest_7 <= kept
    assert 12 <= len(kept) <= 7 + 4 + 12
    months = {when.astimezone().strftime("%Y-%m") for g, when in gens if g in kept}
    assert len(months) >= 12
    assert "g0399" not in kept  # older than 12 months


def test_a_burst_of_generations_in_one_day_keeps_at_least_three() -> None:
    start = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    gens = [(f"g{i}", start + timedelta(minutes=i)) for i in range(10)]
    kept = to_keep(gens, Policy(daily=1, weekly=0, monthly=0))
    assert kept == {"g9", "g8", "g7"}


def test_days_follow_japan_time() -> None:
    # 14:59 UTC is 23:59 on the 6th in Japan; 15:01 UTC and later are the 7th.
    gens = [("late", datetime(2026, 12, 6, 14, 59, tzinfo=UTC))]
    gens += [(f"next{m}", datetime(2026, 12, 6, 15, m, tzinfo=UTC)) for m in (1, 20, 40, 50)]
    gens += [("old", datetime(2026, 11, 1, tzinfo=UTC))]
    kept = to_keep(gens, Policy(daily=2, weekly=0, monthly=0))
    assert kept == {"next50", "next40", "next20", "late"}  # 3 newest + the newest of the 6th (JST); by UTC days
    # "late" would share its day with the others and "old" would be kept instead


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Policy(daily=-1)
