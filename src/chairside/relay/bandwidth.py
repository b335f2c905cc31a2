"""The relay's upload rate to the cloud: the `relay_bandwidth` setting, and a shared token bucket.

The setting is a rate, or a schedule of rates by day and time of day (clinic time, Asia/Tokyo):

    unlimited                                   no cap
    10M                                         10 Mbit/s (k = kbit/s, M = Mbit/s, G = Gbit/s;
                                                a bare number is bit/s)
    mon-fri 08:00-19:00=10M, *=unlimited        10 Mbit/s on weekday clinic hours, else no cap
    mon-sat 09:00-18:00=5M, sun=20M, *=50M      the first rule that matches wins

A rule is `[days] [HH:MM-HH:MM]=RATE`; days are `mon`…`sun`, a range `mon-fri` (wrapping
`fri-mon` too) or several joined with `+` (`sat+sun`); a time range may wrap midnight
(`22:00-06:00`, the part after midnight belongs to the day it started on); `*` matches
always. When no rule matches, the rate is unlimited.

Everything here but `Throttle.take` is pure, so the rules and the bucket's arithmetic
are tested with tables (tests/relay/test_bandwidth.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from chairside.domain.calendar import CLINIC_TZ

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_RATE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmg]?)(?:bit/s|bps|b/s)?", re.IGNORECASE)
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


class BandwidthError(ValueError):
    """The setting does not parse; the message says what is wrong and shows the form."""


HELP = "write e.g. 'unlimited', '10M' (Mbit/s), '500k' (kbit/s) or 'mon-fri 08:00-19:00=10M, *=unlimited'"


def parse_rate(text: str) -> float | None:
    """Bits per second, or None for unlimited."""
    value = text.strip()
    if value.lower() in ("unlimited", "none", "off"):
        return None
    m = _RATE.fullmatch(value)
    if m is None:
        raise BandwidthError(f"relay_bandwidth: {text.strip()!r} is not a rate; {HELP}")
    rate = float(m["num"]) * _UNITS[m["unit"].lower()]
    if rate < 8_000:
        raise BandwidthError(f"relay_bandwidth: {text.strip()!r} is below 8 kbit/s, too slow to carry "
                             "anything; use 'unlimited' or a higher rate")
    return rate


@dataclass(frozen=True)
class Rule:
    days: frozenset[int]  # 0 = Monday
    start_min: int  # minutes after midnight; start == end == 0 with all_day
    end_min: int
    all_day: bool
    rate_bps: float | None

    def matches(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        if self.all_day:
            return today in self.days
        if self.start_min < self.end_min:
            return today in self.days and self.start_min <= minute < self.end_min
        # wraps midnight: the evening part is on a listed day, the morning part on the day after one
        return (today in self.days and minute >= self.start_min) or (
            (today - 1) % 7 in self.days and minute < self.end_min
        )


_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str, text: str) -> int:
    low = name.strip().lower()
    for i, (short, full) in enumerate(zip(DAYS, _FULL, strict=True)):
        if low in (short, full):
            return i
    raise BandwidthError(f"relay_bandwidth: {name!r} in {text!r} is not a day; use mon, tue, wed, thu, "
                         "fri, sat or sun")


def _days(spec: str, text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in spec.split("+"):
        first, sep, last = part.partition("-")
        a = _day(first, text)
        if not sep:
            out.add(a)
            continue
        b = _day(last, text)
        d = a
        while True:
            out.add(d)
            if d == b:
                break
            d = (d + 1) % 7
    return frozenset(out)


def _minutes(value: str, text: str) -> int:
    m = _TIME.fullmatch(value)
    if m is None or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2]) != 0):
        raise BandwidthError(f"relay_bandwidth: {value!r} in {text!r} is not a time like 08:00")
    return int(m[1]) * 60 + int(m[2])


def _rule(part: str, text: str) -> Rule:
    when, sep, rate_text = part.rpartition("=")
    if not sep:
        raise BandwidthError(f"relay_bandwidth: the rule {part.strip()!r} has no '=RATE'; {HELP}")
    rate = parse_rate(rate_text)
    when = when.strip()
    if when in ("*", ""):
        return Rule(frozenset(range(7)), 0, 0, True, rate)
    days: frozenset[int] = frozenset(range(7))
    span: str | None = None
    for word in when.split():
        if _TIME.match(word):
            if span is not None:
                raise BandwidthError(f"relay_bandwidth: the rule {part.strip()!r} has two time ranges")
            span = word
        elif word == "*":
            continue
        elif word[:1].isdigit():
            raise BandwidthError(f"relay_bandwidth: {word!r} in {text!r} is not a time range like 08:00-19:00")
        else:
            days = _days(word, text)
    if span is None:
        return Rule(days, 0, 0, True, rate)
    start_text, dash, end_text = span.partition("-")
    if not dash:
        raise BandwidthError(f"relay_bandwidth: {span!r} in {text!r} is not a time range like 08:00-19:00")
    start, end = _minutes(start_text, text), _minutes(end_text, text)
    if start == end:
        raise BandwidthError(f"relay_bandwidth: the time range {span!r} is empty")
    return Rule(days, start, end % (24 * 60) if end == 24 * 60 else end, False, rate)


def parse_schedule(text: str) -> tuple[Rule, ...]:
    """The rules of a `relay_bandwidth` value, in order; raises BandwidthError with a useful message."""
    if not text or not text.strip():
        raise BandwidthError(f"relay_bandwidth is empty; {HELP}")
    if "=" not in text:
        return (Rule(frozenset(range(7)), 0, 0, True, parse_rate(text)),)
    return tuple(_rule(part, text) for part in text.split(",") if part.strip())


def rate_at(rules: tuple[Rule, ...], when: datetime) -> float | None:
    """The cap (bit/s) in force at `when` (aware; read in clinic time), None for unlimited."""
    local = when.astimezone(CLINIC_TZ)
    for rule in rules:
        if rule.matches(local):
            return rule.rate_bps
    return None


def describe(rate_bps: float | None) -> str:
    if rate_bps is None:
        return "unlimited"
    for unit, factor in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate_bps >= factor:
            return f"{rate_bps / factor:g} {unit}bit/s"
    return f"{rate_bps:g} bit/s"


# --- the token bucket ---------------------------------------------------------------------------


@dataclass
class Bucket:
    """Bytes may go when tokens are there; tokens flow in at `rate` bytes/s up to `burst`.

    Pure arithmetic on the times it is given: `reserve(n, now)` takes n tokens (going into
    debt if need be) and answers how long the caller must wait before sending them. Debt
    makes several senders sharing one bucket queue fairly: each waits for its own share.
    """

    rate: float | None  # bytes per second; None: unlimited
    burst: float
    tokens: float = 0.0
    stamp: float = 0.0

    def _refill(self, now: float) -> None:
        if self.rate is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def set_rate(self, rate: float | None, now: float) -> None:
        self._refill(now)
        if rate != self.rate:
            self.rate = rate
            self.burst = burst_for(rate)
            self.tokens = min(self.tokens, self.burst)

    def reserve(self, n: int, now: float) -> float:
        """Take n bytes' tokens; answer the seconds to wait before sending them (0: at once)."""
        if self.rate is None:
            self.stamp = max(self.stamp, now)
            return 0.0
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def burst_for(rate: float | None) -> float:
    """A quarter second of the rate, at least 64 KiB: smooth, yet no sleep per small piece."""
    return 0.0 if rate is None else max(64 * 1024.0, rate / 4)


class Throttle:
    """One bucket shared by every transfer of the relay, its rate following the schedule."""

    def __init__(self, setting: str, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.rules = parse_schedule(setting)
        self._clock = clock
        self._wall = wall or (lambda: datetime.now(CLINIC_TZ))
        self._checked = -1e18
        rate = self._bytes_rate()
        self.bucket = Bucket(rate, burst_for(rate), stamp=clock())

    def _bytes_rate(self) -> float | None:
        bits = rate_at(self.rules, self._wall())
        return None if bits is None else bits / 8

    @property
    def rate_bps(self) -> float | None:
        """The cap in force, bit/s."""
        return None if self.bucket.rate is None else self.bucket.rate * 8

    def delay(self, n: int) -> float:
        now = self._clock()
        if now - self._checked >= 1.0:  # the schedule is read at most once a second
            self._checked = now
            self.bucket.set_rate(self._bytes_rate(), now)
        return self.bucket.reserve(n, now)

    async def take(self, n: int) -> None:
        wait = self.delay(n)
        if wait > 0:
            await asyncio.sleep(wait)
