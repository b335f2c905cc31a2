"""Hashing and writing at once: the caller hashes each chunk while a thread writes the previous ones.

hashlib and file writes both release the GIL, so on two cores a copy that hashes runs at about the
speed of the slower of the two instead of their sum (bench/transfer.py). At most `depth` chunks
wait: memory stays flat whatever the file's size.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO

#: 1 MiB pieces: a piece stays in the CPU's cache between the read, the hash and the write. With 4 MiB
#: pieces the same copy ran 5x slower on the 2-core benchmark machine (bench/transfer.py, docs/benchmarks.md).
CHUNK = 1 << 20

_DONE = object()


class BackgroundWriter:
    def __init__(self, out: BinaryIO, depth: int = 3, on_written: Callable[[object], None] | None = None) -> None:
        self.out = out
        self.on_written = on_written
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="transfer-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is not None:  # drain: the caller sees the error at its next write or at close
                if self.on_written is not None:
                    self.on_written(item)
                continue
            try:
                view = memoryview(item)  # type: ignore[arg-type]
                done = 0
                while done < len(view):
                    done += self.out.write(view[done:]) or 0
            except BaseException as e:  # handed to the caller's thread
                self._error = e
            finally:
                if self.on_written is not None:
                    self.on_written(item)

    def write(self, data: bytes | memoryview) -> None:
        if self._error is not None:
            self._raise()
        self._queue.put(data)

    def close(self, fsync: bool = True) -> None:
        """Wait for every chunk to be written (and fsync); raise what the writer met."""
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            self._raise()
        if fsync:
            os.fsync(self.out.fileno())

    def abort(self) -> None:
        self._error = self._error or OSError("aborted")
        self._queue.put(_DONE)
        self._thread.join()

    def _raise(self) -> None:
        assert self._error is not None
        raise self._error


def copy_hashed(src: BinaryIO, out: BinaryIO | None, advance: Callable[[int], None], depth: int = 4) -> str:
    """Copy `src` to `out` (None: only hash) in reused 1 MiB buffers, hashing on this thread while a second
    thread writes; answer the SHA-256. Memory: `depth` + 1 buffers, whatever the size."""
    h = hashlib.sha256()
    if out is None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := src.readinto(buf):  # type: ignore[attr-defined]
            h.update(view[:n])
            advance(n)
        return h.hexdigest()
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(depth + 1):
        free.put(bytearray(CHUNK))
    owner: dict[int, bytearray] = {}

    def written(item: object) -> None:
        base = owner.pop(id(item), None)
        if base is not None:
            free.put(base)

    writer = BackgroundWriter(out, depth, on_written=written)
    try:
        while True:
            buf = free.get()
            n = src.readinto(buf)  # type: ignore[attr-defined]
            if not n:
                break
            view = memoryview(buf)[:n]
            h.update(view)
            owner[id(view)] = buf
            writer.write(view)
            advance(n)
    except BaseException:
        writer.abort()
        raise
    writer.close(fsync=True)
    return h.hexdigest()
