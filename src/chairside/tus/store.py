"""Partial uploads on disk: one file per upload, a cross-process lock, and the running SHA-256.

The database row's offset is the authority. The file may hold more bytes than the
offset (a PATCH that failed its checksum, or a crash before the row was updated):
the next PATCH cuts them off before writing. Bytes are fdatasync'ed before the row's
offset moves, so the file never holds fewer bytes than the row says.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from threading import Lock

from chairside.errors import Problem


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
        with contextlib.suppress(FileNotFoundError):
            self.path(upload_id).unlink()

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
                            headers={"Retry-After": "1", "Tus-Resumable": "1.0.0"},
                        ) from None
                    await asyncio.sleep(0.02)
            yield fd
        finally:
            os.close(fd)  # releases the flock


def write_all(fd: int, data: bytes | bytearray | memoryview, pos: int, *hashers: hashlib._Hash) -> int:
    """pwrite every byte at `pos` and feed the hashers; runs in a worker thread (hashing drops the GIL)."""
    view = memoryview(data)
    for h in hashers:
        h.update(view)
    done = 0
    try:
        while done < len(view):
            done += os.pwrite(fd, view[done:], pos + done)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Problem(507, "The server's storage is full, so this upload cannot continue. "
                          "Nothing already stored is affected; tell your Chairside operator.",
                          code="storage-full") from e
        raise
    return done
