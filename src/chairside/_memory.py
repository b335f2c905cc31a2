"""Keep the server's memory flat: fewer glibc malloc arenas.

glibc gives each thread that allocates under contention an arena of its own (up to eight
per core), and memory freed in one arena is not reused by the others. The server's worker
threads (request bodies, hashing, probing) each touch large buffers, so every one of them
left its own high-water mark: bench/rss.py measured a 5 GiB upload peaking at 158 MB with
the default, 147 MB with two arenas. Call this first thing, before any thread starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (unless MALLOC_ARENA_MAX is set); answer whether it took effect."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
