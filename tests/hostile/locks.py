"""Handshakes on the upload lock (blobs/parts.py) without sleeping and hoping: wait until a request holds it."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


def is_locked(path: Path) -> bool:
    """Whether some request holds the upload's flock (a shared probe fails against an exclusive holder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def wait_until_locked(path: Path, timeout: float = 30.0) -> None:
    """Return once a request holds the lock of the partial file at `path` (fails the test after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not is_locked(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"no request took the lock of {path} within {timeout:g} s")
        time.sleep(0.005)
