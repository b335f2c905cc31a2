"""The encrypting blob store over the filesystem: what lands on disk, Range reads, tampering, old plaintext."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chairside.blobs import FilesystemBlobStore
from chairside.blobs.crypt import CHUNK, HEADER_SIZE, SEALED, BlobDecryptError, EncryptedBlobStore, ciphertext_size

KEYS = {"k1": os.urandom(32), "k2": os.urandom(32)}
SIZE = 3 * CHUNK + 1234
DATA = os.urandom(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()


def store_at(root: Path, key_id: str = "k1", *, encrypt: bool = True) -> EncryptedBlobStore:
    return EncryptedBlobStore(FilesystemBlobStore(root), lambda: (key_id, KEYS[key_id]), KEYS.__getitem__,
                              encrypt=encrypt)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> EncryptedBlobStore:
    store = store_at(tmp_path_factory.mktemp("enc"))
    store.put_stream(SHA, [DATA[i:i + 10_000] for i in range(0, SIZE, 10_000)])
    return store


def stored_file(store: EncryptedBlobStore, sha: str = SHA) -> Path:
    path = store.backend.local_path(sha)
    assert path is not None
    return path


def test_the_file_on_disk_is_ciphertext_and_the_store_gives_the_plaintext(stored: EncryptedBlobStore) -> None:
    raw = stored_file(stored).read_bytes()
    assert len(raw) == ciphertext_size(SIZE)
    for at in (0, CHUNK - 8, SIZE // 2, SIZE - 40):
        assert DATA[at:at + 32] not in raw
    info = stored.stat(SHA)
    assert info is not None and info.size == SIZE
    assert b"".join(stored.open_range(SHA)) == DATA
    assert stored.local_path(SHA) is None  # an encrypted file is never served as it is (zero-copy paths)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, SIZE + 10), length=st.none() | st.integers(0, 3 * CHUNK),
       chunk_size=st.sampled_from([1, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 1 << 20]))
def test_any_range_equals_the_slice(stored: EncryptedBlobStore, start: int, length: int | None,
                                    chunk_size: int) -> None:
    if chunk_size == 1 and (length is None or length > 5000):
        length = 5000  # one-byte chunks: keep the example quick
    end = SIZE if length is None else start + length
    pieces = list(stored.open_range(SHA, start, length, chunk_size=chunk_size))
    assert b"".join(pieces) == DATA[start:end]
    assert all(0 < len(p) <= chunk_size for p in pieces)


@pytest.mark.parametrize(("start", "length"), [(CHUNK - 1, 2), (CHUNK, 1), (2 * CHUNK - 5, CHUNK + 10), (0, SIZE)])
def test_ranges_across_chunk_boundaries(stored: EncryptedBlobStore, start: int, length: int) -> None:
    assert b"".join(stored.open_range(SHA, start, length, chunk_size=4096)) == DATA[start:start + length]


def copy_store(stored: EncryptedBlobStore, tmp_path: Path) -> tuple[EncryptedBlobStore, Path]:
    store = store_at(tmp_path / "blobs")
    store.backend.put_file(SHA, _copy(stored_file(stored), tmp_path / "copy"), verified=True)
    return store, stored_file(store)


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_an_altered_chunk_fails_the_read_that_touches_it_and_only_that(stored: EncryptedBlobStore,
                                                                      tmp_path: Path) -> None:
    store, path = copy_store(stored, tmp_path)
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 2 * SEALED + 100] ^= 0x40  # inside the third chunk
    os.chmod(path, 0o640)
    path.write_bytes(bytes(raw))
    assert b"".join(store.open_range(SHA, 0, 2 * CHUNK)) == DATA[: 2 * CHUNK]  # untouched chunks still read
    with pytest.raises(BlobDecryptError, match="chunk 2"):
        b"".join(store.open_range(SHA, 2 * CHUNK + 10, 10))
    with pytest.raises(BlobDecryptError):
        b"".join(store.open_range(SHA))


def test_a_file_cut_at_a_chunk_boundary_is_detected(stored: EncryptedBlobStore, tmp_path: Path) -> None:
    store, path = copy_store(stored, tmp_path)
    os.chmod(path, 0o640)
    os.truncate(path, HEADER_SIZE + 2 * SEALED)  # two whole chunks: looks like a 128 KiB file
    info = store.stat(SHA)
    assert info is not None and info.size == 2 * CHUNK
    with pytest.raises(BlobDecryptError, match="chunk 1"):
        b"".join(store.open_range(SHA, CHUNK, 10))


def test_a_file_cut_inside_a_chunk_is_detected(stored: EncryptedBlobStore, tmp_path: Path) -> None:
    store, path = copy_store(stored, tmp_path)
    os.chmod(path, 0o640)
    os.truncate(path, HEADER_SIZE + SEALED + 5)
    with pytest.raises(BlobDecryptError, match="truncated"):
        store.stat(SHA)


def test_a_file_moved_under_another_blob_name_is_refused(stored: EncryptedBlobStore, tmp_path: Path) -> None:
    store = store_at(tmp_path / "blobs")
    other = hashlib.sha256(b"another blob").hexdigest()
    store.backend.put_file(other, _copy(stored_file(stored), tmp_path / "copy"), verified=True)
    with pytest.raises(BlobDecryptError):
        b"".join(store.open_range(other, 0, 10))


def test_the_wrong_data_key_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path / "blobs")
    store.put_stream(SHA, [DATA])
    liar = EncryptedBlobStore(store.backend, lambda: ("k1", KEYS["k1"]), lambda _id: KEYS["k2"])
    with pytest.raises(BlobDecryptError):
        b"".join(liar.open_range(SHA, 0, 10))


def test_a_wrong_hash_stores_nothing(tmp_path: Path) -> None:
    from chairside.blobs import BlobHashMismatch

    store = store_at(tmp_path / "blobs")
    with pytest.raises(BlobHashMismatch):
        store.put_stream(hashlib.sha256(b"x").hexdigest(), [DATA])
    assert list(store.iter_hashes()) == []
    assert isinstance(store.backend, FilesystemBlobStore)
    assert list(store.backend.temp_dir.iterdir()) == []


def test_blobs_stored_in_the_clear_stay_readable_and_off_writes_in_the_clear(tmp_path: Path) -> None:
    plain = FilesystemBlobStore(tmp_path / "blobs")
    old = b"written before encryption was turned on" * 100
    old_sha = hashlib.sha256(old).hexdigest()
    plain.put_stream(old_sha, [old])
    store = store_at(tmp_path / "blobs")
    assert b"".join(store.open_range(old_sha, 5, 20)) == old[5:25]
    assert store.local_path(old_sha) == plain.local_path(old_sha)  # still served zero-copy
    store.put_stream(SHA, [DATA])
    off = store_at(tmp_path / "blobs", encrypt=False)
    new = b"written with encrypt_at_rest=false" * 10
    new_sha = hashlib.sha256(new).hexdigest()
    off.put_stream(new_sha, [new])
    assert stored_file(off, new_sha).read_bytes() == new
    assert b"".join(off.open_range(SHA)) == DATA  # encrypted ones stay readable


def test_put_file_adopts_without_leaving_a_plaintext_copy(tmp_path: Path) -> None:
    store = store_at(tmp_path / "blobs")
    source = tmp_path / "upload.part"
    source.write_bytes(DATA)
    store.put_file(SHA, source, verified=True)
    assert DATA[:64] not in stored_file(store).read_bytes()
    assert isinstance(store.backend, FilesystemBlobStore)
    assert list(store.backend.temp_dir.iterdir()) == []
    assert b"".join(store.open_range(SHA)) == DATA
