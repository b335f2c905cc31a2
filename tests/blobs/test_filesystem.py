"""Filesystem backend details the contract cannot see: layout, durability, moves."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chairside.blobs import BlobInfo, FilesystemBlobStore

DATA = b"intraoral video frame " * 500


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def final_path(store: FilesystemBlobStore, key: str) -> Path:
    return store.root / key[:2] / key[2:4] / key


def test_blob_lives_under_two_levels_of_fan_out(fs_store: FilesystemBlobStore) -> None:
    key = sha(DATA)

    fs_store.put_stream(key, [DATA])

    assert fs_store.local_path(key) == final_path(fs_store, key)
    assert final_path(fs_store, key).read_bytes() == DATA


def test_stored_files_are_read_only(fs_store: FilesystemBlobStore, tmp_path: Path) -> None:
    streamed = sha(DATA)
    moved_source = tmp_path / "moved"
    moved_source.write_bytes(b"moved")
    moved_source.chmod(0o666)

    fs_store.put_stream(streamed, [DATA])
    fs_store.put_file(sha(b"moved"), moved_source, verified=True)

    for key in (streamed, sha(b"moved")):
        assert stat.S_IMODE(final_path(fs_store, key).stat().st_mode) == 0o440


def test_blobs_survive_reopening_the_store(tmp_path: Path) -> None:
    key = sha(DATA)
    FilesystemBlobStore(tmp_path / "blobs").put_stream(key, [DATA])

    reopened = FilesystemBlobStore(tmp_path / "blobs")

    assert reopened.stat(key) == BlobInfo(key, len(DATA))
    assert list(reopened.iter_hashes()) == [key]


def test_exception_mid_stream_leaves_no_file_under_final_name_and_store_still_works(
    fs_store: FilesystemBlobStore,
) -> None:
    key = sha(DATA)

    def crash_midway() -> Iterator[bytes]:
        yield DATA[:1000]
        raise OSError(errno.EIO, "disk vanished")

    with pytest.raises(OSError, match="disk vanished"):
        fs_store.put_stream(key, crash_midway())

    assert not final_path(fs_store, key).exists()
    assert list(fs_store.temp_dir.iterdir()) == []
    assert fs_store.put_stream(key, [DATA]) == BlobInfo(key, len(DATA))
    assert final_path(fs_store, key).read_bytes() == DATA


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from chairside.blobs import FilesystemBlobStore
    def chunks():
        yield b"x" * 300_000
        os._exit(17)  # the process dies here: no except, no finally, no cleanup

    FilesystemBlobStore(Path(sys.argv[1])).put_stream(sys.argv[2], chunks())
    """
)


def test_process_killed_mid_write_leaves_only_a_temp_file_that_sweep_removes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "blobs"
    key = sha(b"x" * 600_000)

    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(root), key], check=False, timeout=60
    )

    assert crashed.returncode == 17
    store = FilesystemBlobStore(root)
    assert store.stat(key) is None
    assert not final_path(store, key).exists()
    assert list(store.iter_hashes()) == []
    [stray] = store.temp_dir.iterdir()
    an_hour_ago = time.time() - 3600
    os.utime(stray, (an_hour_ago, an_hour_ago))

    assert store.sweep_temp(older_than_s=600) == 1

    assert list(store.temp_dir.iterdir()) == []
    store.put_stream(key, [b"x" * 600_000])
    assert final_path(store, key).stat().st_size == 600_000


def test_sweep_temp_removes_only_stale_temp_files(fs_store: FilesystemBlobStore) -> None:
    stale = fs_store.temp_dir / "aaaa.stale.tmp"
    fresh = fs_store.temp_dir / "bbbb.fresh.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    key = sha(DATA)
    fs_store.put_stream(key, [DATA])

    assert fs_store.sweep_temp(older_than_s=3600) == 1

    assert not stale.exists()
    assert fresh.exists()
    assert fs_store.stat(key) == BlobInfo(key, len(DATA))
    assert fs_store.sweep_temp(older_than_s=0) == 1
    assert list(fs_store.temp_dir.iterdir()) == []


def test_verified_put_file_moves_the_file_keeping_its_inode(
    fs_store: FilesystemBlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(DATA)
    inode = source.stat().st_ino
    key = sha(DATA)

    fs_store.put_file(key, source, verified=True)

    assert not source.exists()
    assert final_path(fs_store, key).stat().st_ino == inode
    assert final_path(fs_store, key).read_bytes() == DATA


def test_unverified_put_file_copies_and_leaves_the_source(
    fs_store: FilesystemBlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(DATA)
    key = sha(DATA)

    fs_store.put_file(key, source)

    assert source.read_bytes() == DATA
    assert final_path(fs_store, key).stat().st_ino != source.stat().st_ino
    assert list(fs_store.temp_dir.iterdir()) == []


def test_verified_put_file_copies_a_hard_linked_source(
    fs_store: FilesystemBlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(DATA)
    other_name = tmp_path / "still-writable-elsewhere"
    os.link(source, other_name)
    key = sha(DATA)

    fs_store.put_file(key, source, verified=True)

    other_name.write_bytes(b"changed through the other link")
    assert final_path(fs_store, key).read_bytes() == DATA


def test_verified_put_file_stores_a_symlinks_target_not_the_link(
    fs_store: FilesystemBlobStore, tmp_path: Path
) -> None:
    target = tmp_path / "upload.bin"
    target.write_bytes(DATA)
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    key = sha(DATA)

    fs_store.put_file(key, link, verified=True)

    stored = final_path(fs_store, key)
    assert not stored.is_symlink()
    assert stored.read_bytes() == DATA


def test_verified_put_file_across_mounts_falls_back_to_copying(
    fs_store: FilesystemBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two mounts of one device pass the st_dev check, yet rename(2) says EXDEV.
    source = tmp_path / "upload.bin"
    source.write_bytes(DATA)
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    key = sha(DATA)

    assert fs_store.put_file(key, source, verified=True) == BlobInfo(key, len(DATA))

    assert final_path(fs_store, key).read_bytes() == DATA
    assert source.exists()


def test_iter_hashes_ignores_temp_and_foreign_files(fs_store: FilesystemBlobStore) -> None:
    key = sha(DATA)
    fs_store.put_stream(key, [DATA])
    other = sha(b"other")
    (fs_store.temp_dir / f"{other}").write_bytes(b"other")  # a temp file named like a blob
    (fs_store.root / "README").write_text("not a blob")
    misplaced = fs_store.root / "00" / "00" / other  # a blob name in the wrong directory
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(b"other")
    (final_path(fs_store, key).parent / "notes.txt").write_text("not a blob")

    assert list(fs_store.iter_hashes()) == [key]


def test_reading_continues_when_the_blob_is_deleted_mid_read(
    fs_store: FilesystemBlobStore,
) -> None:
    key = sha(DATA)
    fs_store.put_stream(key, [DATA])

    with fs_store.open_range(key, chunk_size=1000) as reader:
        first = next(reader)
        fs_store.delete(key)
        rest = b"".join(reader)

    assert first + rest == DATA
    assert fs_store.stat(key) is None


def test_reader_releases_its_file_descriptor(fs_store: FilesystemBlobStore) -> None:
    key = sha(DATA)
    fs_store.put_stream(key, [DATA])
    open_fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    if open_fds is None:
        pytest.skip("needs /proc/self/fd")

    b"".join(fs_store.open_range(key))  # exhausted
    next(fs_store.open_range(key, chunk_size=10))  # abandoned after one chunk, then collected
    fs_store.open_range(key).close()  # closed without reading

    assert len(os.listdir("/proc/self/fd")) == open_fds
