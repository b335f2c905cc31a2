"""The blob store interface: immutable bytes keyed by their SHA-256.

Every backend implements :class:`BlobStore`; one contract test suite
(``tests/blobs/test_contract.py``) runs against each of them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BlobHashMismatch",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "check_range",
    "iter_file",
    "validate_key",
]

DEFAULT_CHUNK_SIZE = 1 << 20

_KEY = re.compile(r"[0-9a-f]{64}")


def validate_key(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits, else raise ValueError.

    Keys become file names and object keys, so this is a security boundary:
    nothing but ``[0-9a-f]{64}`` gets through (no ``../``, no trailing newline).
    """
    if not isinstance(sha256, str) or _KEY.fullmatch(sha256) is None:
        raise ValueError(f"not a blob key (64 lowercase hex digits): {sha256!r:.80}")
    return sha256


def check_range(start: int, length: int | None, chunk_size: int) -> None:
    """Reject a negative start/length or a non-positive chunk size."""
    if start < 0:
        raise ValueError(f"range start must be >= 0, got {start}")
    if length is not None and length < 0:
        raise ValueError(f"range length must be >= 0, got {length}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")


def iter_file(path: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the content of the file at ``path`` in chunks; the file opens on first use."""
    with open(path, "rb") as source:
        while chunk := source.read(chunk_size):
            yield chunk


class BlobNotFound(Exception):
    """No blob is stored under this key."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"blob {sha256} is not stored")
        self.sha256 = sha256


class BlobHashMismatch(Exception):
    """The bytes written did not hash to the key; nothing was stored."""

    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(
            f"content does not match its key: expected sha256 {expected}, "
            f"got {actual} over {size} bytes; nothing was stored"
        )
        self.expected = expected
        self.actual = actual
        self.size = size


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size: int


class BlobReader(Iterator[bytes]):
    """The chunks of one range read, owning the open file or HTTP body behind them.

    The resource is released when the chunks are exhausted, when iteration fails,
    on :meth:`close` (or leaving a ``with`` block), or at the latest when the
    reader is garbage collected, so a client that disconnects mid-download does
    not leak a file descriptor or a connection.
    """

    __slots__ = ("_chunks", "_closed", "_on_close")

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None] | None = None):
        self._chunks = chunks
        self._on_close = on_close
        self._closed = False

    @classmethod
    def empty(cls) -> BlobReader:
        return cls(iter(()))

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close_chunks = getattr(self._chunks, "close", None)
        try:
            if close_chunks is not None:
                close_chunks()
        finally:
            if self._on_close is not None:
                self._on_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_closed"):
            self.close()


class BlobStore(ABC):
    """Immutable blobs keyed by the lowercase hex SHA-256 of their content.

    Every method validates its key with :func:`validate_key` (ValueError) before
    touching storage. Because a key names its content, writing a key that is
    already stored is a no-op.
    """

    @abstractmethod
    def put_stream(self, sha256: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Store the bytes of ``chunks``, hashing them on the way.

        If the blob is already stored, return its info without consuming
        ``chunks``. If the bytes do not hash to ``sha256``, raise
        :class:`BlobHashMismatch`; if anything fails (including the iterator
        itself), nothing is left under the key.
        """

    @abstractmethod
    def put_file(self, sha256: str, path: Path, *, verified: bool = False) -> BlobInfo:
        """Adopt the complete local file ``path`` as the blob ``sha256``.

        ``verified=True`` promises the file already hashes to ``sha256``, which
        lets a backend skip hashing (the filesystem backend then moves the file
        into place instead of copying it). After success the caller must not rely
        on ``path`` still existing; after a failure ``path`` is left untouched.
        """

    @abstractmethod
    def open_range(
        self,
        sha256: str,
        start: int = 0,
        length: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> BlobReader:
        """Return the bytes ``[start, start + length)`` as chunks of at most ``chunk_size``.

        ``length=None`` means to the end. A range reaching past the end is clamped
        to the end (a start at or past the end yields nothing). Raises
        :class:`BlobNotFound` from this call, before any chunk is produced, when the
        blob is missing. Memory stays bounded by ``chunk_size``.
        """

    @abstractmethod
    def stat(self, sha256: str) -> BlobInfo | None:
        """Return the blob's info, or None when it is not stored."""

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob; removing a blob that is not stored is not an error."""

    @abstractmethod
    def iter_hashes(self) -> Iterator[str]:
        """Yield every stored key, in ascending order, without listing all in memory."""

    @abstractmethod
    def local_path(self, sha256: str) -> Path | None:
        """Return the path of the stored file for zero-copy serving, if there is one.

        None when the blob is not stored or the backend has no local files.
        """

    def close(self) -> None:  # noqa: B027 - deliberately a no-op by default
        """Release connections or other resources held by the store."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
