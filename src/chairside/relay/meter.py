"""The relay's upload rate meter: the bytes the uploader hands to the cloud, per second, over the
last few seconds (the `upload_rate_bps` of the relay's status)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable


class RateMeter:
    """Bytes per second over the last `window` seconds."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._sum = 0
        self._since: float | None = None

    def add(self, n: int) -> None:
        now = self._clock()
        if self._since is None:
            self._since = now
        self._events.append((now, n))
        self._sum += n
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window:
            self._sum -= self._events.popleft()[1]

    def rate(self) -> float:
        if self._since is None:
            return 0.0
        now = self._clock()
        self._trim(now)
        span = min(self.window, max(now - self._since, 0.5))
        return self._sum / span
