"""Heavy media work (probe, decode, thumbnails, display copies) a bounded number at a time per process.

Each piece runs in a worker thread (never on the event loop: the callers hand it to `anyio.to_thread`),
and holds one of `heavy_work_parallel` slots of a process-wide semaphore while it decodes: a burst of
uploads finishing at once, or of display copies asked for at once, waits its turn instead of adding the
memory of one more decode each. A thread semaphore, not an anyio limiter, because the work is reached from
several event loops (a server's, a test's) and from plain threads (the command line).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None
_size = 0


def _semaphore(parallel: int) -> threading.BoundedSemaphore:
    global _slots, _size
    with _lock:
        if _slots is None or _size != parallel:  # the setting, read once per process (tests may change it)
            _slots, _size = threading.BoundedSemaphore(max(1, parallel)), parallel
        return _slots


@contextmanager
def slot(parallel: int) -> Iterator[None]:
    """Hold one of `parallel` slots of heavy work for the duration (blocks the calling worker thread)."""
    semaphore = _semaphore(parallel)
    with semaphore:
        yield
