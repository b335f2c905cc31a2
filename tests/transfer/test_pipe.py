"""Copying while hashing on two threads: the bytes, the hash, and a failing disk that does not hang the copy."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import pytest

from chairside.transfer.pipe import CHUNK, copy_hashed


def test_copy_is_exact_and_hashed(tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 12345)
    seen: list[int] = []
    with (tmp_path / "copy").open("wb", buffering=0) as out:
        assert copy_hashed(io.BytesIO(data), out, seen.append) == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "copy").read_bytes() == data and sum(seen) == len(data)
    assert copy_hashed(io.BytesIO(data), None, lambda n: None) == hashlib.sha256(data).hexdigest()


class FullDisk(io.BytesIO):
    def write(self, b: object, /) -> int:
        if self.tell() >= 2 * CHUNK:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(b)  # type: ignore[arg-type]

    def fileno(self) -> int:
        raise AssertionError("never reached: the copy fails before its fsync")


def test_a_write_error_surfaces_instead_of_hanging() -> None:
    with pytest.raises(OSError, match="No space left") as failed:
        copy_hashed(io.BytesIO(os.urandom(20 * CHUNK)), FullDisk(), lambda n: None)
    assert failed.value.errno == errno.ENOSPC
