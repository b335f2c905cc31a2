"""A hybrid logical clock: timestamps that follow wall time yet never run backwards.

A timestamp is the string ``f"{wall_ms:013d}-{counter:04d}-{node}"``. Its fixed-width fields
make string order equal to (wall_ms, counter, node) order, so timestamps are compared, stored
and sent as plain strings. Each node ticks its own clock (`Clock.now`) and merges every
timestamp it receives (`Clock.observe`), so that its next tick is newer than anything it has
seen: writes ordered by cause stay ordered even when the nodes' wall clocks disagree.

Pure: no I/O, the wall clock is injected.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

_COUNTER_MAX = 9999
_PATTERN = re.compile(r"^(\d{13})-(\d{4})-([0-9A-Za-z_.]{1,40})$")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ts(wall_ms: int, counter: int, node: str) -> str:
    return f"{wall_ms:013d}-{counter:04d}-{node}"


def parse(ts: str) -> tuple[int, int, str]:
    """(wall_ms, counter, node) of a timestamp; ValueError when it is not one."""
    m = _PATTERN.match(ts) if isinstance(ts, str) else None
    if m is None:
        raise ValueError(f"not a hybrid logical clock timestamp: {ts!r}")
    return int(m.group(1)), int(m.group(2)), m.group(3)


def is_valid(ts: object) -> bool:
    return isinstance(ts, str) and _PATTERN.match(ts) is not None


def newer(a: str | None, b: str | None) -> bool:
    """True when `a` is strictly newer than `b`; None is older than every timestamp."""
    if a is None:
        return False
    if b is None:
        return True
    return a > b


class Clock:
    """One node's clock. Thread-safe."""

    def __init__(self, node: str, now_ms: Callable[[], int] = _wall_ms) -> None:
        if not re.fullmatch(r"[0-9A-Za-z_.]{1,40}", node):
            raise ValueError(f"a clock's node id is 1–40 letters, digits, '_' or '.': {node!r}")
        self.node = node
        self._now_ms = now_ms
        self._wall = 0
        self._counter = 0
        self._lock = threading.Lock()

    def now(self) -> str:
        """A new timestamp, newer than every one this clock made or observed before."""
        with self._lock:
            physical = self._now_ms()
            if physical > self._wall:
                self._wall, self._counter = physical, 0
            elif self._counter < _COUNTER_MAX:
                self._counter += 1
            else:  # 10,000 ticks in one millisecond: borrow the next millisecond
                self._wall, self._counter = self._wall + 1, 0
            return format_ts(self._wall, self._counter, self.node)

    def observe(self, remote: str) -> None:
        """Merge a received timestamp: later ticks of this clock are newer than it."""
        wall, counter, _node = parse(remote)
        with self._lock:
            if (wall, counter) > (self._wall, self._counter):
                self._wall, self._counter = wall, counter

    @property
    def last(self) -> str | None:
        """The latest timestamp made or observed (None before the first)."""
        with self._lock:
            return format_ts(self._wall, self._counter, self.node) if self._wall else None
