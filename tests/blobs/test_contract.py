"""The blob store contract: one body, run against every backend (see conftest)."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chairside.blobs import (
    BlobHashMismatch,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    FilesystemBlobStore,
)
from chairside.blobs.s3 import PART_SIZE

from .backends import BackendView, SeededStream

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(store: BlobStore, key: str, start: int = 0, length: int | None = None) -> bytes:
    with store.open_range(key, start, length) as reader:
        return b"".join(reader)


def never_read() -> Iterator[bytes]:
    raise AssertionError("the store consumed chunks it did not need")
    yield b""  # pragma: no cover - makes this a generator


SMALL = bytes(range(256)) * 4 + b"tail"  # 1028 bytes


def test_put_then_stat_and_read_return_the_same_bytes(blob_store: BlobStore) -> None:
    key = sha(SMALL)

    info = blob_store.put_stream(key, [SMALL[:100], SMALL[100:]])

    assert info == BlobInfo(key, len(SMALL))
    assert blob_store.stat(key) == info
    assert read_all(blob_store, key) == SMALL


def test_irregular_and_empty_chunks_store_the_concatenation(blob_store: BlobStore) -> None:
    key = sha(SMALL)
    pieces = [b"", SMALL[:1], b"", SMALL[1:500], SMALL[500:1000], SMALL[1000:], b""]

    blob_store.put_stream(key, iter(pieces))

    assert read_all(blob_store, key) == SMALL


def test_empty_blob_round_trips(blob_store: BlobStore) -> None:
    key = sha(b"")

    assert blob_store.put_stream(key, []) == BlobInfo(key, 0)

    assert blob_store.stat(key) == BlobInfo(key, 0)
    assert read_all(blob_store, key) == b""
    assert read_all(blob_store, key, 0, 10) == b""
    assert list(blob_store.iter_hashes()) == [key]


def test_stat_of_a_blob_never_stored_is_none(blob_store: BlobStore) -> None:
    assert blob_store.stat(sha(b"never stored")) is None


@pytest.mark.parametrize(
    ("start", "length", "expected"),
    [
        pytest.param(0, 10, slice(0, 10), id="at-start"),
        pytest.param(400, 100, slice(400, 500), id="in-middle"),
        pytest.param(1018, 10, slice(1018, 1028), id="at-end"),
        pytest.param(500, 0, slice(0, 0), id="zero-length"),
        pytest.param(1000, 100, slice(1000, 1028), id="past-end-is-clamped"),
        pytest.param(0, None, slice(0, 1028), id="whole"),
        pytest.param(250, None, slice(250, 1028), id="open-ended"),
        pytest.param(1028, None, slice(0, 0), id="start-at-end-is-empty"),
        pytest.param(1028, 0, slice(0, 0), id="zero-length-at-end"),
        pytest.param(5000, 10, slice(0, 0), id="start-beyond-end-is-empty"),
    ],
)
def test_range_read_returns_the_requested_bytes_clamped_to_the_end(
    blob_store: BlobStore, start: int, length: int | None, expected: slice
) -> None:
    key = sha(SMALL)
    blob_store.put_stream(key, [SMALL])

    with blob_store.open_range(key, start, length, chunk_size=64) as reader:
        chunks = list(reader)

    assert b"".join(chunks) == SMALL[expected]
    assert all(0 < len(chunk) <= 64 for chunk in chunks)


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    start=st.integers(0, 1100),
    length=st.none() | st.integers(0, 1100),
    chunk_size=st.integers(1, 2000),
)
def test_any_range_read_equals_slicing_the_source(
    blob_store: BlobStore, start: int, length: int | None, chunk_size: int
) -> None:
    key = sha(SMALL)
    blob_store.put_stream(key, [SMALL])  # a no-op after the first example
    end = None if length is None else start + length

    with blob_store.open_range(key, start, length, chunk_size=chunk_size) as reader:
        chunks = list(reader)

    assert b"".join(chunks) == SMALL[start:end]
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)


@pytest.mark.parametrize(
    ("start", "length", "chunk_size"), [(-1, None, 10), (0, -1, 10), (0, None, 0)]
)
def test_range_read_rejects_negative_bounds_and_empty_chunks(
    blob_store: BlobStore, start: int, length: int | None, chunk_size: int
) -> None:
    key = sha(SMALL)
    blob_store.put_stream(key, [SMALL])

    with pytest.raises(ValueError, match=r"must be"):
        blob_store.open_range(key, start, length, chunk_size=chunk_size)


@pytest.mark.parametrize(("start", "length"), [(0, None), (0, 0), (10, 5), (10**9, None)])
def test_range_read_of_a_missing_blob_raises_before_iterating(
    blob_store: BlobStore, start: int, length: int | None
) -> None:
    key = sha(b"missing")

    with pytest.raises(BlobNotFound) as raised:
        blob_store.open_range(key, start, length)  # not iterated: the call itself raises

    assert raised.value.sha256 == key


def test_reader_closed_early_stops_yielding(blob_store: BlobStore) -> None:
    key = sha(SMALL)
    blob_store.put_stream(key, [SMALL])
    reader = blob_store.open_range(key, chunk_size=100)

    assert next(reader) == SMALL[:100]
    reader.close()

    assert list(reader) == []
    reader.close()  # closing twice is harmless


def test_putting_a_stored_key_again_reads_nothing_and_changes_nothing(
    blob_store: BlobStore, blob_backend: BackendView, tmp_path: Path
) -> None:
    key = sha(SMALL)
    first = blob_store.put_stream(key, [SMALL])
    names = blob_backend.stored_names()
    other_file = tmp_path / "same-key-other-bytes"
    other_file.write_bytes(b"not the content")

    assert blob_store.put_stream(key, never_read()) == first
    assert blob_store.put_file(key, other_file) == first
    assert blob_store.put_file(key, other_file, verified=True) == first

    assert blob_backend.stored_names() == names
    assert read_all(blob_store, key) == SMALL
    assert other_file.read_bytes() == b"not the content"


def assert_nothing_left(store: BlobStore, backend: BackendView, key: str) -> None:
    assert store.stat(key) is None
    assert list(store.iter_hashes()) == []
    assert backend.stored_names() == []  # filesystem: no file under any final name
    assert backend.unfinished() == []  # s3: no multipart upload left open
    with pytest.raises(BlobNotFound):
        store.open_range(key)


@pytest.mark.parametrize("size", [len(SMALL), PART_SIZE + 1000], ids=["small", "multipart"])
def test_hash_mismatch_raises_and_leaves_nothing(
    blob_store: BlobStore, blob_backend: BackendView, size: int
) -> None:
    data = (SMALL * (size // len(SMALL) + 1))[:size]
    wrong_key = sha(b"something else")

    with pytest.raises(BlobHashMismatch) as raised:
        blob_store.put_stream(wrong_key, (data[i : i + MiB] for i in range(0, size, MiB)))

    assert (raised.value.expected, raised.value.actual) == (wrong_key, sha(data))
    assert raised.value.size == size
    assert_nothing_left(blob_store, blob_backend, wrong_key)


@pytest.mark.parametrize("sent", [100, PART_SIZE + 100], ids=["small", "multipart"])
def test_failing_source_propagates_its_error_and_leaves_nothing(
    blob_store: BlobStore, blob_backend: BackendView, sent: int
) -> None:
    key = sha(b"the upload that never finished")

    def cut_off() -> Iterator[bytes]:
        yield b"x" * sent
        raise ConnectionResetError("station went away")

    with pytest.raises(ConnectionResetError, match="station went away"):
        blob_store.put_stream(key, cut_off())

    assert_nothing_left(blob_store, blob_backend, key)
    blob_store.put_stream(sha(SMALL), [SMALL])  # and the store still works
    assert list(blob_store.iter_hashes()) == [sha(SMALL)]


@pytest.mark.parametrize("verified", [False, True], ids=["unverified", "verified"])
def test_put_file_stores_the_file_content(
    blob_store: BlobStore, tmp_path: Path, verified: bool
) -> None:
    source = tmp_path / "recording.mp4"
    source.write_bytes(SMALL)
    key = sha(SMALL)

    info = blob_store.put_file(key, source, verified=verified)

    assert info == BlobInfo(key, len(SMALL))
    assert blob_store.stat(key) == info
    assert read_all(blob_store, key) == SMALL


def test_unverified_put_file_with_wrong_content_raises_and_keeps_the_file(
    blob_store: BlobStore, blob_backend: BackendView, tmp_path: Path
) -> None:
    source = tmp_path / "recording.mp4"
    source.write_bytes(SMALL)
    key = sha(b"what the station claimed")

    with pytest.raises(BlobHashMismatch):
        blob_store.put_file(key, source)

    assert source.read_bytes() == SMALL
    assert_nothing_left(blob_store, blob_backend, key)


def test_delete_removes_the_blob_and_is_idempotent(blob_store: BlobStore) -> None:
    key = sha(SMALL)
    blob_store.put_stream(key, [SMALL])

    blob_store.delete(key)
    blob_store.delete(key)
    blob_store.delete(sha(b"never stored"))

    assert blob_store.stat(key) is None
    assert list(blob_store.iter_hashes()) == []
    with pytest.raises(BlobNotFound):
        blob_store.open_range(key)


def test_iter_hashes_lists_exactly_the_stored_keys_in_order(blob_store: BlobStore) -> None:
    contents = [f"blob {i}".encode() for i in range(12)]
    for content in contents:
        blob_store.put_stream(sha(content), [content])
    blob_store.delete(sha(contents[3]))
    expected = sorted(sha(c) for i, c in enumerate(contents) if i != 3)

    assert list(blob_store.iter_hashes()) == expected


def test_iter_hashes_of_an_empty_store_is_empty(blob_store: BlobStore) -> None:
    assert list(blob_store.iter_hashes()) == []


BAD_KEYS = [
    pytest.param("../x", id="dot-dot"),
    pytest.param("../" + "a" * 61, id="dot-dot-64-chars"),
    pytest.param("a" * 31 + "/" + "a" * 32, id="slash"),
    pytest.param("A" * 64, id="uppercase"),
    pytest.param(sha(b"x").upper(), id="uppercase-real-hash"),
    pytest.param("abc123", id="short"),
    pytest.param("a" * 65, id="long"),
    pytest.param("a" * 64 + "\n", id="trailing-newline"),
    pytest.param("g" * 64, id="not-hex"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("bad_key", BAD_KEYS)
def test_invalid_keys_are_rejected_by_every_operation(
    blob_store: BlobStore, blob_backend: BackendView, tmp_path: Path, bad_key: str
) -> None:
    source = tmp_path / "file"
    source.write_bytes(SMALL)
    operations: dict[str, Callable[[], object]] = {
        "put_stream": lambda: blob_store.put_stream(bad_key, never_read()),
        "put_file": lambda: blob_store.put_file(bad_key, source),
        "put_file_verified": lambda: blob_store.put_file(bad_key, source, verified=True),
        "open_range": lambda: blob_store.open_range(bad_key),
        "stat": lambda: blob_store.stat(bad_key),
        "delete": lambda: blob_store.delete(bad_key),
        "local_path": lambda: blob_store.local_path(bad_key),
    }

    for name, operation in operations.items():
        with pytest.raises(ValueError, match="not a blob key"):
            operation()
        assert source.read_bytes() == SMALL, name

    assert blob_backend.stored_names() == []
    assert not (tmp_path / "x").exists()


def test_multipart_sized_blob_streamed_in_pieces_round_trips(blob_store: BlobStore) -> None:
    source = SeededStream(20 * MiB, seed=20240611)

    info = blob_store.put_stream(source.sha256, source.pieces())

    assert info == BlobInfo(source.sha256, 20 * MiB)
    assert blob_store.stat(source.sha256) == info
    hasher = hashlib.sha256()
    with blob_store.open_range(source.sha256) as reader:
        for chunk in reader:
            hasher.update(chunk)
    assert hasher.hexdigest() == source.sha256
    for start, length in [(PART_SIZE - 10, 20), (12_345_678, 3 * MiB), (20 * MiB - 5, 50)]:
        assert read_all(blob_store, source.sha256, start, length) == source.slice(start, length)


def test_storing_and_reading_a_large_blob_keeps_memory_flat(blob_store: BlobStore) -> None:
    source = SeededStream(12 * MiB, seed=7, max_piece=256 * 1024)
    # The S3 backend may hold one part; the filesystem backend about one chunk.
    budget = 3 * PART_SIZE if blob_store.local_path(source.sha256) is None else 4 * MiB

    tracemalloc.start()
    try:
        blob_store.put_stream(source.sha256, source.pieces())
        with blob_store.open_range(source.sha256, chunk_size=MiB) as reader:
            total = sum(len(chunk) for chunk in reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total == source.size
    assert peak < budget, f"peak {peak / MiB:.1f} MiB for a {source.size // MiB} MiB blob"


def test_local_path_is_the_stored_file_or_none(blob_store: BlobStore) -> None:
    key = sha(SMALL)
    assert blob_store.local_path(key) is None

    blob_store.put_stream(key, [SMALL])

    path = blob_store.local_path(key)
    if isinstance(blob_store, FilesystemBlobStore):
        assert path is not None
        assert path.read_bytes() == SMALL
        assert blob_store.root in path.parents
    else:
        assert path is None  # object storage has no local file to hand to sendfile
