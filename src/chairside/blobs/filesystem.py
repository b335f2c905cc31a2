"""Blobs as files under one root, written the Litestream way.

Layout: ``root/ab/cd/abcd…`` (two levels of fan-out) and ``root/tmp/`` for files
being written. A blob reaches its final name only through ``os.replace`` of a
complete, fsynced temp file on the same filesystem, followed by an fsync of the
destination directory; a crash at any moment leaves at most a stray temp file,
which :meth:`FilesystemBlobStore.sweep_temp` removes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat as stat_
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path

from .base import (
    DEFAULT_CHUNK_SIZE,
    BlobHashMismatch,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    check_range,
    iter_file,
    validate_key,
)

__all__ = ["FilesystemBlobStore"]

_FAN_OUT = re.compile(r"[0-9a-f]{2}")
_KEY = re.compile(r"[0-9a-f]{64}")
_TEMP_SUFFIX = ".tmp"


class FilesystemBlobStore(BlobStore):
    """Blobs stored as read-only files under ``root``.

    ``file_mode`` is applied to every stored file (blobs are immutable, so no
    write bit); widen the group bits if a web server serves the files directly.
    """

    def __init__(self, root: Path, *, file_mode: int = 0o440) -> None:
        self._root = Path(root).absolute()
        self._tmp = self._root / "tmp"
        self._file_mode = file_mode
        _makedirs_durable(self._tmp)
        self._device = os.stat(self._tmp).st_dev

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        return self._root

    @property
    def temp_dir(self) -> Path:
        return self._tmp

    def _path(self, sha256: str) -> Path:
        return self._root / sha256[:2] / sha256[2:4] / sha256

    # -- writing -------------------------------------------------------------

    def put_stream(self, sha256: str, chunks: Iterable[bytes]) -> BlobInfo:
        validate_key(sha256)
        existing = self.stat(sha256)
        if existing is not None:
            return existing
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix=f"{sha256[:16]}.", suffix=_TEMP_SUFFIX)
        temp = Path(name)
        try:
            hasher = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fchmod(out.fileno(), self._file_mode)
                os.fsync(out.fileno())
            actual = hasher.hexdigest()
            if actual != sha256:
                raise BlobHashMismatch(sha256, actual, size)
            self._install(temp, sha256)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return BlobInfo(sha256, size)

    def put_file(self, sha256: str, path: Path, *, verified: bool = False) -> BlobInfo:
        validate_key(sha256)
        existing = self.stat(sha256)
        if existing is not None:
            return existing
        path = Path(path)
        if verified and self._can_adopt(path):
            try:
                return self._adopt(sha256, path)
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # same device, different mount: copy
                    raise
        return self.put_stream(sha256, iter_file(path))

    def _can_adopt(self, path: Path) -> bool:
        """Whether ``path`` can be renamed into the store rather than copied.

        Only a plain file with a single link on our filesystem: renaming a symlink
        would store the link, and another hard link could later change the blob.
        """
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        return stat_.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_dev == self._device

    def _adopt(self, sha256: str, path: Path) -> BlobInfo:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            os.fchmod(fd, self._file_mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._install(path, sha256)
        source_dir = path.absolute().parent
        if source_dir != self._path(sha256).parent:
            _fsync_dir(source_dir)
        return BlobInfo(sha256, size)

    def _install(self, complete: Path, sha256: str) -> None:
        """Atomically give the complete, fsynced file ``complete`` its final name."""
        final = self._path(sha256)
        _makedirs_durable(final.parent)
        os.replace(complete, final)
        _fsync_dir(final.parent)

    def sweep_temp(self, older_than_s: float) -> int:
        """Remove temp files not modified for ``older_than_s`` seconds; return how many.

        Temp files are left behind only by a crash or a writer that stalled; a
        writer whose temp file is swept fails instead of storing anything.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed

    # -- reading -------------------------------------------------------------

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        length: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> BlobReader:
        validate_key(sha256)
        check_range(start, length, chunk_size)
        try:
            fd = os.open(self._path(sha256), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(sha256) from None
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        end = size if length is None else min(size, start + length)
        if start >= end:
            os.close(fd)
            return BlobReader.empty()
        # The open descriptor pins the file: a delete during the read does not cut it.
        return BlobReader(_pread_chunks(fd, start, end, chunk_size), on_close=lambda: os.close(fd))

    def stat(self, sha256: str) -> BlobInfo | None:
        validate_key(sha256)
        try:
            st = os.stat(self._path(sha256))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return BlobInfo(sha256, st.st_size)

    def local_path(self, sha256: str) -> Path | None:
        validate_key(sha256)
        path = self._path(sha256)
        return path if path.is_file() else None

    def delete(self, sha256: str) -> None:
        validate_key(sha256)
        path = self._path(sha256)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        _fsync_dir(path.parent)

    def iter_hashes(self) -> Iterator[str]:
        # Fan-out directories are never removed, so listing them is bounded
        # (256 + 65536 names); only one leaf directory is held at a time.
        for first in _sorted_names(self._root, _FAN_OUT, want_dirs=True):
            for second in _sorted_names(self._root / first, _FAN_OUT, want_dirs=True):
                leaf = self._root / first / second
                for name in _sorted_names(leaf, _KEY, want_dirs=False):
                    if name[:2] == first and name[2:4] == second:
                        yield name


def _sorted_names(directory: Path, pattern: re.Pattern[str], *, want_dirs: bool) -> list[str]:
    names: list[str] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if pattern.fullmatch(entry.name) is None:
                    continue
                try:
                    is_wanted = (
                        entry.is_dir(follow_symlinks=False)
                        if want_dirs
                        else entry.is_file(follow_symlinks=False)
                    )
                except FileNotFoundError:
                    continue
                if is_wanted:
                    names.append(entry.name)
    except FileNotFoundError:
        return []
    names.sort()
    return names


def _pread_chunks(fd: int, start: int, end: int, chunk_size: int) -> Iterator[bytes]:
    position = start
    while position < end:
        data = os.pread(fd, min(chunk_size, end - position), position)
        if not data:
            raise OSError(errno.EIO, f"blob file ended at byte {position}, expected {end}")
        position += len(data)
        yield data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """Create ``path`` and its missing parents, fsyncing each parent's new entry."""
    if path.is_dir():
        return
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        # A concurrent writer may have just made it without fsyncing yet: fsync anyway.
        with suppress(FileExistsError):
            os.mkdir(directory)
        _fsync_dir(directory.parent)
