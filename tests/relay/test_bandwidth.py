"""The relay_bandwidth setting (rates and schedules, in clinic time) and the token bucket's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chairside.relay.bandwidth import BandwidthError, Bucket, Throttle, burst_for, parse_rate, parse_schedule, rate_at

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(("text", "bps"), [
    ("unlimited", None), ("Unlimited", None), ("10M", 10e6), ("10m", 10e6), ("500k", 500e3), ("1.5M", 1.5e6),
    ("2G", 2e9), ("64000", 64e3), ("10Mbit/s", 10e6), ("10 Mbps", 10e6), (" 20M ", 20e6),
])
def test_rates(text: str, bps: float | None) -> None:
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text", ["", "fast", "10 MB", "-5M", "0", "1k", "10M/s/s", "M10"])
def test_bad_rates_are_refused_with_the_form_to_use(text: str) -> None:
    with pytest.raises(BandwidthError) as e:
        parse_schedule(text)
    assert "relay_bandwidth" in str(e.value)


SCHEDULE = "mon-fri 08:00-19:00=10M, sat 09:00-13:00=5M, sun+sat 22:00-06:00=50M, *=unlimited"


@pytest.mark.parametrize(("local", "bps"), [
    (datetime(2026, 11, 23, 8, 0), 10e6),  # Monday 08:00: the weekday rule starts
    (datetime(2026, 11, 23, 7, 59), None),  # Monday just before
    (datetime(2026, 11, 27, 18, 59), 10e6),  # Friday 18:59
    (datetime(2026, 11, 27, 19, 0), None),  # Friday 19:00: the end is exclusive
    (datetime(2026, 11, 28, 9, 30), 5e6),  # Saturday morning
    (datetime(2026, 11, 28, 23, 0), 50e6),  # Saturday night (wraps midnight)
    (datetime(2026, 11, 29, 3, 0), 50e6),  # Sunday 03:00: Saturday's night continues
    (datetime(2026, 11, 30, 3, 0), 50e6),  # Monday 03:00: Sunday's night continues
    (datetime(2026, 11, 30, 6, 0), None),  # Monday 06:00: over
    (datetime(2026, 11, 26, 3, 0), None),  # Thursday 03:00: no night rule
])
def test_schedule_in_clinic_time(local: datetime, bps: float | None) -> None:
    assert rate_at(parse_schedule(SCHEDULE), local.replace(tzinfo=TOKYO)) == bps


def test_schedule_reads_clinic_time_whatever_the_servers_zone() -> None:
    rules = parse_schedule("mon-fri 08:00-19:00=10M, *=unlimited")
    # 23:30 UTC on Sunday is 08:30 on Monday in Tokyo
    assert rate_at(rules, datetime(2026, 11, 22, 23, 30, tzinfo=UTC)) == 10e6
    assert rate_at(rules, datetime(2026, 11, 23, 10, 30, tzinfo=UTC)) is None  # 19:30 in Tokyo


def test_first_matching_rule_wins_and_no_match_is_unlimited() -> None:
    rules = parse_schedule("mon 09:00-10:00=1M, mon=2M")
    monday = datetime(2026, 11, 23, 9, 30, tzinfo=TOKYO)
    assert rate_at(rules, monday) == 1e6
    assert rate_at(rules, monday.replace(hour=11)) == 2e6
    assert rate_at(rules, datetime(2026, 11, 24, 9, 30, tzinfo=TOKYO)) is None
    assert rate_at(parse_schedule("fri-mon=3M"), datetime(2026, 11, 29, 12, tzinfo=TOKYO)) == 3e6  # wraps the week


@pytest.mark.parametrize("text", ["mon-fri 08:00-19:00", "funday 08:00-19:00=1M", "mon 08:00=1M",
                                  "mon 25:00-26:00=1M", "mon 08:00-08:00=1M", "mon 08:00-09:00 10:00-11:00=1M"])
def test_bad_schedules_say_what_is_wrong(text: str) -> None:
    with pytest.raises(BandwidthError):
        parse_schedule(text)


def test_bucket_arithmetic() -> None:
    rate = 1_000_000.0  # bytes/s
    b = Bucket(rate, burst_for(rate), tokens=0.0, stamp=0.0)
    assert b.reserve(250_000, now=0.0) == pytest.approx(0.25)  # no tokens: wait for them
    assert b.reserve(250_000, now=0.0) == pytest.approx(0.5)  # a second sender queues behind the first
    # 1 s refilled 1 MB: the 500 kB owed are paid, and the rest is capped at the burst (250 kB)
    assert b.reserve(100_000, now=1.0) == 0.0
    assert b.reserve(250_000, now=1.0) == pytest.approx(0.1)
    # idle time refills only up to the burst (a quarter second of the rate)
    assert b.reserve(250_000, now=100.0) == 0.0
    assert b.reserve(1, now=100.0) > 0
    unlimited = Bucket(None, 0.0)
    assert unlimited.reserve(10**12, now=5.0) == 0.0


def test_bucket_long_run_rate_is_the_cap() -> None:
    rate = 125_000.0  # 1 Mbit/s
    b = Bucket(rate, burst_for(rate), tokens=0.0, stamp=0.0)
    now, sent = 0.0, 0
    for _ in range(1000):
        now += b.reserve(65_536, now)  # the sender sleeps as told, then sends
        sent += 65_536
    assert sent / now == pytest.approx(rate, rel=0.02)


def test_throttle_follows_the_schedule() -> None:
    clock = [0.0]
    wall = [datetime(2026, 11, 23, 7, 59, 30, tzinfo=TOKYO)]
    t = Throttle("mon-fri 08:00-19:00=8M, *=unlimited", clock=lambda: clock[0], wall=lambda: wall[0])
    assert t.rate_bps is None and t.delay(10**9) == 0.0
    wall[0] = datetime(2026, 11, 23, 8, 0, 30, tzinfo=TOKYO)
    clock[0] = 2.0
    assert t.delay(1_000_000) == pytest.approx(1.0)  # 8 Mbit/s = 1 MB/s, and no credit saved from before
    assert t.rate_bps == 8e6
