"""Encryption at rest: AES-256-GCM in fixed 64 KiB chunks, as a stream format and as a blob store wrapper.

The format (the design of age's STREAM and rclone crypt, with `cryptography`'s AESGCM; no cipher of our own)::

    header  (64 bytes)  magic b"\\x89CSENC1\\n" | key id length (1) | key id (ASCII, zero-padded to 39) | salt (16)
    chunk i (<= 64 KiB + 16)  AES-256-GCM(file key, nonce_i, plaintext chunk i, aad = header || associated)

- The file key is HKDF-SHA256(data key, salt, "chairside blob v1"): a fresh random salt makes every
  encrypted file use its own key, so nonces never repeat across files under one data key.
- ``nonce_i`` is the chunk index (11 bytes, big endian) and a last-chunk flag (1 byte): a chunk moved
  to another place, a chunk dropped from the end (the new last one was not sealed as last) or a
  chunk from another file (another file key) each fail authentication.
- ``associated`` binds the bytes to their name: the blob store passes the blob's SHA-256, so an
  encrypted file copied under another key is refused too.
- Every chunk holds exactly 64 KiB except the last (1 byte to 64 KiB; an empty plaintext is one
  empty last chunk), so the plaintext size follows from the stored size and a Range read decrypts
  only the chunks it touches.

:class:`EncryptedBlobStore` wraps any :class:`BlobStore`: blob identity stays the plaintext SHA-256
(dedupe and end-to-end checks keep working); what is stored under that name is the encrypted file.
Blobs written before encryption was turned on (no magic) are still read as they are.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
from .filesystem import FilesystemBlobStore

__all__ = [
    "CHUNK",
    "HEADER_SIZE",
    "MAGIC",
    "TAG",
    "BlobDecryptError",
    "EncryptedBlobStore",
    "KeyLookup",
    "ciphertext_size",
    "decrypt_stream",
    "encrypt_stream",
    "is_encrypted",
    "parse_header",
    "plaintext_size",
]

MAGIC = b"\x89CSENC1\n"
CHUNK = 64 * 1024
TAG = 16
SEALED = CHUNK + TAG
HEADER_SIZE = 64
_KEY_ID_MAX = HEADER_SIZE - len(MAGIC) - 1 - 16  # 39
_INFO = b"chairside blob v1"

KeyLookup = Callable[[str], bytes]
"""Give the 32-byte data key named by a key id (raise when it is unknown)."""


class BlobDecryptError(Exception):
    """Encrypted bytes failed authentication: truncated, altered, reordered, or under the wrong key."""


# -- the format --------------------------------------------------------------


def _header(key_id: str, salt: bytes) -> bytes:
    raw_id = key_id.encode("ascii")
    if not 0 < len(raw_id) <= _KEY_ID_MAX:
        raise ValueError(f"key id must be 1..{_KEY_ID_MAX} ASCII characters: {key_id!r}")
    return MAGIC + bytes([len(raw_id)]) + raw_id.ljust(_KEY_ID_MAX, b"\0") + salt


def is_encrypted(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts with this format's magic."""
    return head[: len(MAGIC)] == MAGIC


def parse_header(header: bytes) -> tuple[str, bytes]:
    """The (key id, salt) of a 64-byte header; BlobDecryptError when it is not one."""
    if len(header) < HEADER_SIZE or not is_encrypted(header):
        raise BlobDecryptError("暗号化ヘッダーがありません / not an encrypted file (no Chairside header)")
    n = header[len(MAGIC)]
    if not 0 < n <= _KEY_ID_MAX:
        raise BlobDecryptError("暗号化ヘッダーが壊れています / the encryption header is damaged")
    start = len(MAGIC) + 1
    try:
        key_id = header[start : start + n].decode("ascii")
    except UnicodeDecodeError:
        raise BlobDecryptError("暗号化ヘッダーが壊れています / the encryption header is damaged") from None
    return key_id, header[HEADER_SIZE - 16 : HEADER_SIZE]


def ciphertext_size(plain: int) -> int:
    chunks = max(1, -(-plain // CHUNK))
    return HEADER_SIZE + plain + TAG * chunks


def plaintext_size(stored: int) -> int:
    """The plaintext size of an encrypted file of ``stored`` bytes; BlobDecryptError when no file has that size."""
    body = stored - HEADER_SIZE
    if body < TAG:
        raise BlobDecryptError(f"暗号化ファイルが途中で切れています / the encrypted file is truncated ({stored} bytes)")
    chunks = -(-body // SEALED)
    last = body - (chunks - 1) * SEALED
    if last < TAG or (last == TAG and chunks > 1):
        raise BlobDecryptError(f"暗号化ファイルが途中で切れています / the encrypted file is truncated ({stored} bytes)")
    return body - TAG * chunks


def _file_aead(data_key: bytes, salt: bytes) -> AESGCM:
    if len(data_key) != 32:
        raise ValueError("a data key is 32 bytes (AES-256)")
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(data_key))


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Pieces of exactly ``size`` bytes (the last may be shorter), whatever the input's pieces."""
    buf = bytearray()
    for piece in chunks:
        if not buf and len(piece) == size:
            yield bytes(piece)
            continue
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def encrypt_stream(key: bytes, key_id: str, chunks: Iterable[bytes], *, associated: bytes = b"") -> Iterator[bytes]:
    """Encrypt the bytes of ``chunks`` under the data key ``key`` (named ``key_id`` in the header).

    Yields the header, then one sealed chunk per 64 KiB of input. Memory stays at two chunks.
    ``associated`` (optional) must be given again to decrypt: it binds the file to a name.
    """
    salt = secrets.token_bytes(16)
    header = _header(key_id, salt)
    aead = _file_aead(key, salt)
    aad = header + associated
    yield header
    index = 0
    pending: bytes | None = None
    for piece in _rechunk(chunks, CHUNK):
        if pending is not None:
            yield aead.encrypt(_nonce(index, False), pending, aad)
            index += 1
        pending = piece
    yield aead.encrypt(_nonce(index, True), pending or b"", aad)


def decrypt_stream(lookup_key: KeyLookup, chunks: Iterable[bytes], *, associated: bytes = b"") -> Iterator[bytes]:
    """Decrypt what :func:`encrypt_stream` made; the key is found by the header's key id.

    Raises :class:`BlobDecryptError` on the first chunk that fails authentication, and at the end
    when the stream stops before its last chunk (a truncated file), so what was yielded before
    may be used only once the iterator ends without an error.
    """
    yield from _decrypt_pieces(lookup_key, _rechunk_with_header(chunks), associated)


def _rechunk_with_header(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The header (64 bytes) first, then pieces of one sealed chunk each."""
    it = iter(chunks)
    buf = bytearray()
    for piece in it:
        buf += piece
        if len(buf) >= HEADER_SIZE:
            break
    if len(buf) < HEADER_SIZE:
        raise BlobDecryptError("暗号化ファイルが途中で切れています / the encrypted file is truncated (no header)")
    yield bytes(buf[:HEADER_SIZE])
    rest = bytes(buf[HEADER_SIZE:])

    def tail() -> Iterator[bytes]:
        if rest:
            yield rest
        yield from it

    yield from _rechunk(tail(), SEALED)


def _decrypt_pieces(lookup_key: KeyLookup, pieces: Iterator[bytes], associated: bytes) -> Iterator[bytes]:
    header = next(pieces)
    key_id, salt = parse_header(header)
    aead = _file_aead(lookup_key(key_id), salt)
    aad = header + associated
    index = 0
    current = next(pieces, None)
    if current is None:
        raise BlobDecryptError("暗号化ファイルが途中で切れています / the encrypted file is truncated (no chunk)")
    while current is not None:
        following = next(pieces, None)
        last = following is None
        if len(current) < TAG or (not last and len(current) != SEALED):
            raise BlobDecryptError(f"暗号化ファイルが途中で切れています / truncated at chunk {index}")
        try:
            yield aead.decrypt(_nonce(index, last), current, aad)
        except InvalidTag:
            raise BlobDecryptError(
                f"暗号化データの検証に失敗しました（改ざん・欠落・鍵違い）/ chunk {index} failed authentication "
                "(altered, truncated, reordered or the wrong key)"
            ) from None
        index += 1
        current = following


# -- the blob store wrapper --------------------------------------------------


class EncryptedBlobStore(BlobStore):
    """Any blob store, with every blob it writes encrypted and every blob it reads decrypted.

    ``current_key()`` gives the (key id, data key) new blobs are written with; ``lookup_key(id)`` the
    data key a stored blob names. With ``encrypt=False`` new blobs are written in the clear (the
    operator turned ``encrypt_at_rest`` off) while encrypted ones stay readable.

    Writes go to a temp file first (encrypting on the way, memory flat), which the backend then
    adopts without hashing it (its name is the plaintext's SHA-256, checked here): the filesystem
    backend renames it into place, the S3 backend streams it up.
    """

    def __init__(
        self,
        backend: BlobStore,
        current_key: Callable[[], tuple[str, bytes]],
        lookup_key: KeyLookup,
        *,
        encrypt: bool = True,
        temp_dir: Path | None = None,
    ) -> None:
        self.backend = backend
        self._current_key = current_key
        self._lookup_key = lookup_key
        self.encrypt = encrypt
        if temp_dir is None and isinstance(backend, FilesystemBlobStore):
            temp_dir = backend.temp_dir  # same filesystem: the encrypted file is renamed into place
        self._temp_dir = temp_dir
        self._aeads: dict[bytes, AESGCM] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EncryptedBlobStore({self.backend!r}, encrypt={self.encrypt})"

    # -- writing -------------------------------------------------------------

    def put_stream(self, sha256: str, chunks: Iterable[bytes]) -> BlobInfo:
        validate_key(sha256)
        existing = self.stat(sha256)
        if existing is not None:
            return existing
        if not self.encrypt:
            return self.backend.put_stream(sha256, chunks)
        return self._put_encrypted(sha256, chunks, verify=True)

    def put_file(self, sha256: str, path: Path, *, verified: bool = False) -> BlobInfo:
        validate_key(sha256)
        existing = self.stat(sha256)
        if existing is not None:
            return existing
        if not self.encrypt:
            return self.backend.put_file(sha256, path, verified=verified)
        return self._put_encrypted(sha256, iter_file(Path(path)), verify=not verified)

    def _put_encrypted(self, sha256: str, chunks: Iterable[bytes], *, verify: bool) -> BlobInfo:
        key_id, key = self._current_key()
        hasher = hashlib.sha256()
        size = 0

        def plain() -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                if verify:
                    hasher.update(chunk)
                size += len(chunk)
                yield chunk

        fd, name = tempfile.mkstemp(dir=self._temp_dir, prefix=f"{sha256[:16]}.", suffix=".enc.tmp")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for sealed in encrypt_stream(key, key_id, plain(), associated=sha256.encode("ascii")):
                    out.write(sealed)
                out.flush()
                os.fsync(out.fileno())
            if verify and (actual := hasher.hexdigest()) != sha256:
                raise BlobHashMismatch(sha256, actual, size)
            _adopt_raw(self.backend, sha256, temp)
        finally:
            with suppress(FileNotFoundError):
                temp.unlink()
        return BlobInfo(sha256, size)

    # -- reading -------------------------------------------------------------

    def _open_local(self, sha256: str) -> int | None:
        """An open descriptor of the stored file when the backend is a folder (the fast path), else None."""
        if not isinstance(self.backend, FilesystemBlobStore):
            return None
        try:
            return os.open(self.backend._path(sha256), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(sha256) from None

    def _head(self, sha256: str) -> bytes | None:
        """The stored file's first HEADER_SIZE bytes, or None when the blob is missing."""
        try:
            with self.backend.open_range(sha256, 0, HEADER_SIZE, chunk_size=HEADER_SIZE) as reader:
                return b"".join(reader)
        except BlobNotFound:
            return None

    def _aead(self, sha256: str, head: bytes) -> AESGCM:
        """The file key's AEAD for this header; kept for the next read of the same blob (a player's many ranges)."""
        cache_key = sha256.encode("ascii") + head
        aead = self._aeads.get(cache_key)
        if aead is None:
            key_id, salt = parse_header(head)
            aead = _file_aead(self._lookup_key(key_id), salt)
            with self._lock:
                if len(self._aeads) >= 256:
                    self._aeads.pop(next(iter(self._aeads)))
                self._aeads[cache_key] = aead
        return aead

    def stat(self, sha256: str) -> BlobInfo | None:
        validate_key(sha256)
        try:
            fd = self._open_local(sha256)
        except BlobNotFound:
            return None
        if fd is not None:
            try:
                stored, head = os.fstat(fd).st_size, os.pread(fd, len(MAGIC), 0)
            finally:
                os.close(fd)
        else:
            info = self.backend.stat(sha256)
            if info is None:
                return None
            stored, head = info.size, self._head(sha256) or b""
        return BlobInfo(sha256, plaintext_size(stored) if is_encrypted(head) else stored)

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
        fd = self._open_local(sha256)
        try:
            if fd is not None:
                stored, head = os.fstat(fd).st_size, os.pread(fd, HEADER_SIZE, 0)
            else:
                found = self._head(sha256)
                info = self.backend.stat(sha256)
                if found is None or info is None:
                    raise BlobNotFound(sha256)
                stored, head = info.size, found
            if not is_encrypted(head):
                if fd is not None:
                    os.close(fd)
                    fd = None
                return self.backend.open_range(sha256, start, length, chunk_size=chunk_size)
            total = plaintext_size(stored)
            end = total if length is None else min(total, start + length)
            if start >= end:
                return BlobReader.empty()
            aead = self._aead(sha256, head)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        aad = head + sha256.encode("ascii")
        chunks = max(1, -(-total // CHUNK))
        first, last = start // CHUNK, (end - 1) // CHUNK
        stored_start = HEADER_SIZE + first * SEALED
        stored_end = min(stored, HEADER_SIZE + (last + 1) * SEALED)
        # One sealed chunk per read and per decryption: every buffer stays small (below malloc's mmap threshold,
        # so it is reused, never faulted in afresh); the pieces are joined once into each answer.
        if fd is not None:
            reader: BlobReader = BlobReader(_pread_sealed(fd, stored_start, stored_end), on_close=_closer(fd))
            sealed_chunks: Iterator[bytes] = reader
        else:
            reader = self.backend.open_range(sha256, stored_start, stored_end - stored_start, chunk_size=16 * SEALED)
            sealed_chunks = _rechunk(reader, SEALED)

        def plain() -> Iterator[bytes]:
            index = first
            pending: list[bytes] = []
            size = 0
            for sealed in sealed_chunks:
                try:
                    piece = aead.decrypt(_nonce(index, index == chunks - 1), sealed, aad)
                except InvalidTag:
                    raise BlobDecryptError(
                        f"暗号化データの検証に失敗しました: {sha256} の第{index}チャンク / "
                        f"blob {sha256}: chunk {index} failed authentication "
                        "(altered, truncated, reordered or the wrong key)"
                    ) from None
                lo, hi = max(start - index * CHUNK, 0), min(end - index * CHUNK, len(piece))
                if (lo, hi) != (0, len(piece)):
                    piece = piece[lo:hi]
                index += 1
                if size + len(piece) > chunk_size and pending:
                    yield pending[0] if len(pending) == 1 else b"".join(pending)
                    pending, size = [], 0
                if len(piece) > chunk_size:
                    for at in range(0, len(piece), chunk_size):
                        yield piece[at:at + chunk_size]
                    continue
                pending.append(piece)
                size += len(piece)
            if index != last + 1:
                raise BlobDecryptError(
                    f"暗号化ファイルが途中で切れています / blob {sha256} is truncated at chunk {index}"
                )
            if pending:
                yield pending[0] if len(pending) == 1 else b"".join(pending)

        return BlobReader(plain(), on_close=reader.close)

    # -- the rest ------------------------------------------------------------

    def delete(self, sha256: str) -> None:
        self.backend.delete(sha256)

    def iter_hashes(self) -> Iterator[str]:
        return self.backend.iter_hashes()

    def local_path(self, sha256: str) -> Path | None:
        """A path only for a blob stored in the clear: an encrypted file must never be served as it is."""
        path = self.backend.local_path(sha256)
        if path is None:
            return None
        head = self._head(sha256)
        return path if head is not None and not is_encrypted(head) else None

    def close(self) -> None:
        self.backend.close()


def _closer(fd: int) -> Callable[[], None]:
    return lambda: os.close(fd)


def _pread_sealed(fd: int, start: int, end: int) -> Iterator[bytes]:
    """The sealed chunks in [start, end) of ``fd``, one read each."""
    position = start
    while position < end:
        want = min(SEALED, end - position)
        data = os.pread(fd, want, position)
        if len(data) != want:
            raise BlobDecryptError(
                f"暗号化ファイルが途中で切れています / the encrypted file ended at byte {position + len(data)}"
            )
        position += want
        yield data


def _adopt_raw(backend: BlobStore, sha256: str, temp: Path) -> None:
    """Store the complete file ``temp`` under ``sha256`` without the backend hashing it."""
    if isinstance(backend, FilesystemBlobStore):
        backend.put_file(sha256, temp, verified=True)  # a rename on the same filesystem, else a copy
        return
    from .s3 import S3BlobStore, _Upload  # the S3 backend's own streaming upload, without its hash check

    if isinstance(backend, S3BlobStore):
        upload = _Upload(backend._client, backend.bucket, backend._key(sha256), sha256, backend._part_size)
        try:
            for chunk in iter_file(temp, 1 << 20):
                upload.write(chunk)
            upload.complete()
        except BaseException:
            upload.abort()
            raise
        return
    raise TypeError(f"cannot store encrypted blobs in {backend!r}")
