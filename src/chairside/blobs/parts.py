"""Partial uploads on disk: one file per upload, a cross-process lock, and the running SHA-256.

The database row's offset is the authority. The file may hold more bytes than the
offset (a PATCH that failed its checksum, or a crash before the row was updated):
the next PATCH cuts them off before writing. Bytes are fdatasync'ed before the row's
offset moves, so the file never holds fewer bytes than the row says.

Writes are the hot path of an upload (bench/ingest.py). Two things keep them fast:
disk space is reserved ahead of the writes (`fallocate` with KEEP_SIZE, trimmed again
when the PATCH ends), which on ext4 makes `pwrite` several times faster than appending
to delayed-allocation pages while the previous ones are being fdatasync'ed; and each
batch's hashes run on a small thread pool, alongside the `pwrite` (both release the
GIL), instead of one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from threading import Lock

from chairside.errors import Problem

RESERVE_AHEAD = 64 << 20  # disk space reserved ahead of the writes, so pwrite lands in allocated blocks
PARALLEL_MIN = 1 << 20  # below this, hashing in the calling thread is cheaper than handing it over
_FALLOC_FL_KEEP_SIZE = 0x01
_hash_pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="chairside-hash")
# fd → end of the space reserved through it; cleared when `PartStore.locked` closes the fd.
_reserved: dict[int, int] = {}


def _load_fallocate() -> Callable[[int, int, int], None] | None:
    """fallocate(2) with KEEP_SIZE (reserve blocks, leave the file's size alone); None where missing."""
    name = ctypes.util.find_library("c")
    try:
        fallocate = ctypes.CDLL(name, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int

    def reserve(fd: int, offset: int, length: int) -> None:
        # A hint only: when it fails (no space, no support), pwrite tells the real story.
        fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)

    return reserve


_reserve = _load_fallocate()


def reserve_for(fd: int, pos: int, length: int) -> None:
    """Make sure space is reserved for [pos, pos + length), reserving RESERVE_AHEAD more when it is not."""
    if _reserve is None or _reserved.get(fd, -1) >= pos + length:
        return
    _reserve(fd, pos, length + RESERVE_AHEAD)
    _reserved[fd] = pos + length + RESERVE_AHEAD


def trim_reserved(fd: int) -> None:
    """Give back blocks reserved past the end of the file (a same-size ftruncate does that)."""
    _reserved.pop(fd, None)
    st = os.fstat(fd)
    if st.st_blocks * 512 > st.st_size + st.st_blksize:
        os.ftruncate(fd, st.st_size)


class PartStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # upload id → (offset, sha256 of bytes [0, offset)); lost on restart, then rebuilt from the file.
        self._hashes: dict[str, tuple[int, hashlib._Hash]] = {}
        self._hashes_lock = Lock()

    def path(self, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise ValueError("bad upload id")
        return self.root / f"{upload_id}.part"

    def create(self, upload_id: str) -> None:
        fd = os.open(self.path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def remove(self, upload_id: str) -> None:
        with self._hashes_lock:
            self._hashes.pop(upload_id, None)
        part = self.path(upload_id)  # with the names it takes while stored or recovered (uploads/service.py)
        for path in (part, part.with_suffix(".ingest"), part.with_suffix(".copy")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def hasher_at(self, upload_id: str, offset: int) -> hashlib._Hash:
        """The SHA-256 of the first `offset` bytes: cached, or recomputed from the file (after a restart)."""
        with self._hashes_lock:
            cached = self._hashes.get(upload_id)
        if cached is not None and cached[0] == offset:
            return cached[1].copy()
        h = hashlib.sha256()
        remaining = offset
        with self.path(upload_id).open("rb") as f:
            while remaining:
                block = f.read(min(remaining, 1 << 20))
                if not block:
                    raise Problem(500, "A partial upload is shorter than recorded; upload the file again.",
                                  code="upload-lost")
                h.update(block)
                remaining -= len(block)
        return h

    def remember(self, upload_id: str, offset: int, hasher: hashlib._Hash) -> None:
        with self._hashes_lock:
            self._hashes[upload_id] = (offset, hasher)

    def forget(self, upload_id: str) -> None:
        with self._hashes_lock:
            self._hashes.pop(upload_id, None)

    @contextlib.asynccontextmanager
    async def locked(self, upload_id: str, wait_s: float) -> AsyncIterator[int]:
        """An exclusive lock on the upload (across threads and processes) and a write fd.

        Two PATCHes of one upload can never interleave: the second waits up to `wait_s`
        for the first to end, then answers 423.
        """
        try:
            fd = os.open(self.path(upload_id), os.O_WRONLY)
        except FileNotFoundError:
            raise Problem(404, "This upload no longer exists; start the upload again.",
                          code="upload-not-found") from None
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Problem(
                            423,
                            "This upload is busy with another request. Wait a moment and resume.",
                            code="upload-locked",
                            # Connection: close, so a client streaming a large body stops now
                            # rather than send it all before it reads this answer.
                            headers={"Retry-After": "1", "Tus-Resumable": "1.0.0", "Connection": "close"},
                        ) from None
                    await asyncio.sleep(0.02)
            yield fd
        finally:
            try:
                with contextlib.suppress(OSError):
                    trim_reserved(fd)  # never leave reserved blocks behind a finished file
            finally:
                os.close(fd)  # releases the flock


def write_all(fd: int, data: bytes | bytearray | memoryview, pos: int, *hashers: hashlib._Hash) -> int:
    """pwrite every byte at `pos` and feed the hashers; runs in a worker thread.

    The hashers run on the hash pool while this thread writes (hashlib and pwrite drop
    the GIL); every hasher has seen every byte when this returns, even when the write fails.
    """
    view = memoryview(data)
    pending: list[Future[None]] = []
    if len(view) >= PARALLEL_MIN:
        pending = [_hash_pool.submit(h.update, view) for h in hashers]
    else:
        for h in hashers:
            h.update(view)
    done = 0
    try:
        if len(view) >= PARALLEL_MIN:
            reserve_for(fd, pos, len(view))
        while done < len(view):
            done += os.pwrite(fd, view[done:], pos + done)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Problem(507, "The server's storage is full, so this upload cannot continue. "
                          "Nothing already stored is affected; tell your Chairside operator.",
                          code="storage-full") from e
        raise
    finally:
        for future in pending:
            future.result()
    return done
