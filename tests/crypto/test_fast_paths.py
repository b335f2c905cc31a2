"""The fast paths of encryption at rest (bench/crypto.py), checked against the format.

- Writing (`encrypt_into_file`: 16 chunks per read and per write, buffers reused) makes exactly the format of
  `encrypt_stream`: every size around the chunk and batch boundaries, fed by a file (`readinto`) or by pieces of
  any size, decrypts to the plaintext, has the size the format implies, and its last chunk — and only that
  one — is sealed as last.
- Serving (`EncryptedBlobStore.read_plain`: one read per range, chunks decrypted into place) answers exactly the
  slice `open_range` answers, refuses an altered chunk, and leaves to `open_range` what it does not take."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chairside.blobs import FilesystemBlobStore
from chairside.blobs.crypt import (
    CHUNK,
    HEADER_SIZE,
    SEALED,
    BlobDecryptError,
    EncryptedBlobStore,
    _file_aead,
    _filler,
    _nonce,
    ciphertext_size,
    decrypt_stream,
    encrypt_into_file,
    parse_header,
)

KEY = os.urandom(32)
NAME = b"f" * 64
BATCH = 16 * CHUNK
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, BATCH - 1, BATCH, BATCH + 1, BATCH + CHUNK, 2 * BATCH - CHUNK,
         2 * BATCH + 5]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def write(tmp_path: Path, data: bytes, *, piece: int | None) -> bytes:
    out = tmp_path / "out.enc"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    hasher = hashlib.sha256()
    try:
        if piece is None:
            src = tmp_path / "plain"
            src.write_bytes(data)
            with open(src, "rb", buffering=0) as f:
                size = encrypt_into_file(fd, KEY, "k1", f.readinto, associated=NAME, hasher=hasher)
        else:
            size = encrypt_into_file(fd, KEY, "k1", _filler(pieces(data, piece)), associated=NAME, hasher=hasher)
    finally:
        os.close(fd)
    assert size == len(data)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    return out.read_bytes()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("piece", [None, 1000, CHUNK, 3 * CHUNK + 7], ids=["file", "1000", "chunk", "odd"])
def test_every_size_round_trips_in_the_format(tmp_path: Path, size: int, piece: int | None) -> None:
    data = os.urandom(size)
    stored = write(tmp_path, data, piece=piece)
    assert len(stored) == ciphertext_size(size)
    assert b"".join(decrypt_stream(lambda _id: KEY, [stored], associated=NAME)) == data
    # The last chunk, and no other, is sealed as last: a copy cut after any earlier chunk is refused.
    key_id, salt = parse_header(stored[:HEADER_SIZE])
    assert key_id == "k1"
    aead: AESGCM = _file_aead(KEY, salt)
    aad = stored[:HEADER_SIZE] + NAME
    chunks = [stored[at:at + SEALED] for at in range(HEADER_SIZE, len(stored), SEALED)]
    for i, sealed in enumerate(chunks):
        aead.decrypt(_nonce(i, i == len(chunks) - 1), sealed, aad)
    if len(chunks) > 1:
        with pytest.raises(BlobDecryptError):
            b"".join(decrypt_stream(lambda _id: KEY, [stored[:HEADER_SIZE + SEALED]], associated=NAME))


# -- the byte-serving path's read: `read_plain` ----------------------------------------------------------------

SHAPES = [(0, 1), (0, CHUNK), (1, CHUNK), (CHUNK - 1, 2), (CHUNK, CHUNK), (CHUNK - 3, CHUNK + 6), (5, 3 * CHUNK),
          (2 * CHUNK + 7, 10 * CHUNK), (0, 3 * CHUNK + 5), (3 * CHUNK + 4, 1), (3 * CHUNK + 5, 9)]


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[EncryptedBlobStore, str, bytes]:
    data = os.urandom(3 * CHUNK + 5)
    sha = hashlib.sha256(data).hexdigest()
    store = EncryptedBlobStore(FilesystemBlobStore(tmp_path / "blobs"), lambda: ("k1", KEY), lambda _id: KEY)
    store.put_stream(sha, [data])
    return store, sha, data


@pytest.mark.parametrize(("start", "length"), SHAPES)
def test_read_plain_answers_exactly_the_slice(encrypted: tuple[EncryptedBlobStore, str, bytes], start: int,
                                              length: int) -> None:
    store, sha, data = encrypted
    want = data[start:start + length]
    got = store.read_plain(sha, start, length)
    if not want:
        assert got is None  # nothing to read: the caller's open_range answers the empty range
        return
    assert got is not None and bytes(got) == want
    cached = store.read_plain(sha, start, length, nowait=True)  # None only when the kernel would have to wait
    assert cached is None or bytes(cached) == want
    assert b"".join(store.open_range(sha, start, length)) == want


def test_read_plain_refuses_an_altered_chunk_and_passes_the_rest(encrypted: tuple[EncryptedBlobStore, str, bytes],
                                                                  ) -> None:
    store, sha, data = encrypted
    path = store.backend.local_path(sha)
    assert path is not None
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + SEALED + 100] ^= 1  # chunk 1
    path.chmod(0o640)
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobDecryptError, match="chunk 1"):
        store.read_plain(sha, CHUNK - 10, 20)
    got = store.read_plain(sha, 2 * CHUNK, CHUNK)
    assert got is not None and bytes(got) == data[2 * CHUNK:3 * CHUNK]


def test_read_plain_leaves_what_it_does_not_take_to_open_range(tmp_path: Path) -> None:
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    clear = FilesystemBlobStore(tmp_path / "blobs")
    clear.put_stream(sha, [data])
    store = EncryptedBlobStore(clear, lambda: ("k1", KEY), lambda _id: KEY)
    assert store.read_plain(sha, 0, 10) is None  # stored in the clear: served zero-copy instead
    assert store.read_plain("0" * 64, 0, 10) is None  # missing: open_range raises BlobNotFound
