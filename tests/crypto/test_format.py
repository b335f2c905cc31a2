"""The stream format: sizes, round trips, and every way a stored file can be cut, altered or swapped."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chairside.blobs.crypt import (
    CHUNK,
    HEADER_SIZE,
    SEALED,
    BlobDecryptError,
    ciphertext_size,
    decrypt_stream,
    encrypt_stream,
    parse_header,
    plaintext_size,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def seal(data: bytes, *, key: bytes = KEY, associated: bytes = b"") -> bytes:
    return b"".join(encrypt_stream(key, "k1", [data], associated=associated))


def open_(sealed: bytes, *, key: bytes = KEY, associated: bytes = b"", piece: int = 10_000) -> bytes:
    pieces = [sealed[i:i + piece] for i in range(0, len(sealed), piece)]
    return b"".join(decrypt_stream(lambda _id: key, pieces, associated=associated))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17])
def test_round_trip_and_sizes(size: int) -> None:
    data = os.urandom(size)
    sealed = seal(data)
    assert len(sealed) == ciphertext_size(size)
    assert plaintext_size(len(sealed)) == size
    assert open_(sealed) == data
    assert parse_header(sealed[:HEADER_SIZE])[0] == "k1"


def test_the_same_plaintext_encrypts_differently_each_time() -> None:
    data = b"A" * 1000
    assert seal(data) != seal(data)  # a fresh salt, so a fresh file key, per file


def test_input_pieces_of_any_size_give_a_decryptable_file() -> None:
    data = os.urandom(2 * CHUNK + 5)
    pieces = [data[i:i + 333] for i in range(0, len(data), 333)]
    sealed = b"".join(encrypt_stream(KEY, "k1", pieces))
    assert open_(sealed, piece=7) == data


def chunks_of(sealed: bytes) -> list[bytes]:
    return [sealed[i:i + SEALED] for i in range(HEADER_SIZE, len(sealed), SEALED)]


@pytest.mark.parametrize("where", ["header-key-id", "header-salt", "first-chunk", "tag-of-last"])
def test_a_flipped_bit_anywhere_is_refused(where: str) -> None:
    sealed = bytearray(seal(os.urandom(2 * CHUNK + 100)))
    at = {"header-key-id": 10, "header-salt": HEADER_SIZE - 3, "first-chunk": HEADER_SIZE + 500,
          "tag-of-last": len(sealed) - 1}[where]
    sealed[at] ^= 0x01
    with pytest.raises((BlobDecryptError, KeyError)):
        open_(bytes(sealed))


def test_truncation_at_a_chunk_boundary_is_detected() -> None:
    sealed = seal(os.urandom(3 * CHUNK))
    cut = sealed[: HEADER_SIZE + 2 * SEALED]  # two whole chunks: the second was not sealed as the last
    with pytest.raises(BlobDecryptError, match="chunk 1"):
        open_(cut)


def test_truncation_inside_a_chunk_is_detected() -> None:
    sealed = seal(os.urandom(CHUNK + 1000))
    with pytest.raises(BlobDecryptError):
        open_(sealed[:-10])
    with pytest.raises(BlobDecryptError):
        open_(sealed[:HEADER_SIZE])  # the header alone
    with pytest.raises(BlobDecryptError):
        plaintext_size(HEADER_SIZE + 5)


def test_reordered_chunks_are_detected() -> None:
    sealed = seal(os.urandom(3 * CHUNK + 1))
    c = chunks_of(sealed)
    swapped = sealed[:HEADER_SIZE] + c[1] + c[0] + b"".join(c[2:])
    with pytest.raises(BlobDecryptError, match="chunk 0"):
        open_(swapped)


def test_a_chunk_from_another_file_under_the_same_key_is_detected() -> None:
    a, b = seal(os.urandom(2 * CHUNK + 1)), seal(os.urandom(2 * CHUNK + 1))
    mixed = a[:HEADER_SIZE] + chunks_of(b)[0] + b"".join(chunks_of(a)[1:])
    with pytest.raises(BlobDecryptError, match="chunk 0"):
        open_(mixed)


def test_the_wrong_key_or_name_is_refused() -> None:
    sealed = seal(b"patient video", associated=b"name-a")
    with pytest.raises(BlobDecryptError):
        open_(sealed, key=OTHER, associated=b"name-a")
    with pytest.raises(BlobDecryptError):
        open_(sealed, associated=b"name-b")
    assert open_(sealed, associated=b"name-a") == b"patient video"


def test_plain_bytes_are_not_taken_for_an_encrypted_file() -> None:
    with pytest.raises(BlobDecryptError, match="not an encrypted file"):
        open_(b"\x00\x00\x00\x18ftypmp42" + bytes(100))


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 3 * CHUNK + 50), piece=st.integers(1, 2 * SEALED))
def test_any_size_survives_any_read_pattern(size: int, piece: int) -> None:
    data = os.urandom(size)
    assert open_(seal(data), piece=piece) == data
