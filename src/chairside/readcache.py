"""A short-lived, per-process cache of what every media request reads: who the caller is, and the item.

A player seeking through a video makes a stream of range requests; without this, each
one costs two database transactions and three thread hops before the first byte
(docs/benchmarks.md, serving). Entries live `TTL_S` at most and are dropped at once when
this process commits any write (`Database.writes` moves), so a revocation, a trash or a
purge made through this server takes effect on the next request. One made by another
process (the admin CLI, another worker of `serve --workers N`) takes effect within `TTL_S`.

Only capture stations' and relays' tokens are cached: a viewer session is touched on use
and ends when another device signs in, so it is always read from the database.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from threading import Lock
from typing import Any

TTL_S = 1.0
SIZE = 10_000


class ReadCache:
    def __init__(self, ttl: float = TTL_S, size: int = SIZE) -> None:
        self._ttl, self._size = ttl, size
        self._rows: OrderedDict[tuple[Any, ...], tuple[float, int, Any]] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[Any, ...], generation: int) -> Any | None:
        with self._lock:
            hit = self._rows.get(key)
            if hit is None:
                return None
            at, gen, value = hit
            if gen != generation or time.monotonic() - at >= self._ttl:
                del self._rows[key]
                return None
            return value

    def put(self, key: tuple[Any, ...], generation: int, value: Any) -> None:
        with self._lock:
            self._rows[key] = (time.monotonic(), generation, value)
            self._rows.move_to_end(key)
            while len(self._rows) > self._size:
                self._rows.popitem(last=False)
