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

import copy
import hashlib
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
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
    "encrypt_into_file",
    "encrypt_stream",
    "for_owner",
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


Fill = Callable[[memoryview], "int | None"]
"""Put the next bytes of a plaintext into the buffer, answering how many (0 at the end): ``RawIOBase.readinto``."""

_BATCH = 16  # chunks sealed per write: one read and one write per MiB, into buffers reused for the whole file
_INTO = hasattr(AESGCM, "encrypt_into")  # recent `cryptography` seals into a buffer; older releases answer bytes
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux: read only what the page cache holds


def encrypt_into_file(fd: int, key: bytes, key_id: str, fill: Fill, *, associated: bytes = b"",
                      hasher: hashlib._Hash | None = None) -> int:
    """Write the encryption of what ``fill`` provides to ``fd`` (the same format as :func:`encrypt_stream`);
    answer the plaintext size. ``hasher`` (optional) sees every plaintext byte.

    The blob store's write path: the plaintext is read into one buffer of 16 chunks and sealed into another, so
    each MiB costs one read, sixteen AES-GCM calls and one write, with no other copy (:func:`encrypt_stream`
    re-chunks through fresh bytes objects and writes per chunk: fine for small objects, 1.5x the CPU per byte).
    The last chunk is sealed as last only once ``fill`` says the plaintext ended, so the buffer always keeps
    the newest full chunk back until more arrives.
    """
    salt = secrets.token_bytes(16)
    header = _header(key_id, salt)
    aead = _file_aead(key, salt)
    aad = header + associated
    _write_all(fd, header)
    plain = bytearray(_BATCH * CHUNK)
    sealed = bytearray(_BATCH * SEALED)
    pv, sv = memoryview(plain), memoryview(sealed)
    have = index = size = 0
    while True:
        ended = False
        while have < len(plain):
            got = fill(pv[have:]) or 0
            if not got:
                ended = True
                break
            if hasher is not None:
                hasher.update(pv[have : have + got])
            have += got
            size += got
        # Seal every chunk when the plaintext ended; else all but the newest (it may turn out to be the last).
        count = max(1, -(-have // CHUNK)) if ended else _BATCH - 1
        out = 0
        for k in range(count):
            piece = pv[k * CHUNK : min((k + 1) * CHUNK, have)]
            nonce = _nonce(index, ended and k == count - 1)
            n = len(piece) + TAG
            if _INTO:
                aead.encrypt_into(nonce, piece, aad, sv[out : out + n])
            else:  # pragma: no cover - cryptography < 45
                sv[out : out + n] = aead.encrypt(nonce, bytes(piece), aad)
            out += n
            index += 1
        _write_all(fd, sv[:out])
        if ended:
            return size
        pv[:CHUNK] = pv[(_BATCH - 1) * CHUNK : _BATCH * CHUNK]
        have = CHUNK


def _filler(chunks: Iterable[bytes]) -> Fill:
    """A :data:`Fill` over pieces of any size (one copy each, into the batch buffer)."""
    it = iter(chunks)
    pending = memoryview(b"")

    def fill(view: memoryview) -> int:
        nonlocal pending
        while not len(pending):
            nxt = next(it, None)
            if nxt is None:
                return 0
            # A view of immutable bytes; anything else is copied now (its owner may reuse or resize it).
            pending = memoryview(nxt if isinstance(nxt, bytes) else bytes(nxt)).cast("B")
        n = min(len(view), len(pending))
        view[:n] = pending[:n]
        pending = pending[n:]
        return n

    return fill


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]


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
    data key a stored blob names; ``owner_key(owner)`` the key of one owner's blobs (a contract's), used by
    the store that :meth:`for_owner` answers. With ``encrypt=False`` new blobs are written in the clear (the
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
        owner_key: Callable[[str], tuple[str, bytes]] | None = None,
    ) -> None:
        self.backend = backend
        self._current_key = current_key
        self._owner_key = owner_key
        self.owner: str | None = None
        self._lookup_key = lookup_key
        self.encrypt = encrypt
        if temp_dir is None and isinstance(backend, FilesystemBlobStore):
            temp_dir = backend.temp_dir  # same filesystem: the encrypted file is renamed into place
        self._temp_dir = temp_dir
        self._aeads: dict[bytes, AESGCM] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        owner = f", owner={self.owner!r}" if self.owner else ""
        return f"EncryptedBlobStore({self.backend!r}, encrypt={self.encrypt}{owner})"

    def for_owner(self, owner: str) -> EncryptedBlobStore:
        """This store, writing new blobs under ``owner``'s data key (reads are unchanged: a header names its key).

        A blob already stored (by any owner) is not written again: identity is the plaintext SHA-256, so bytes
        shared by two owners stay under the key of the first that stored them (docs/security.md says why).
        """
        if self._owner_key is None:
            raise ValueError("this encrypted store has no per-owner keys (owner_key was not given)")
        scoped = copy.copy(self)  # the same backend, key lookup and file-key cache
        owner_key = self._owner_key
        scoped._current_key = lambda: owner_key(owner)
        scoped.owner = owner
        return scoped

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
        with open(path, "rb", buffering=0) as source:  # read straight into the batch buffer: no copy on the way
            return self._put_encrypted(sha256, source.readinto, verify=not verified)

    def _put_encrypted(self, sha256: str, source: Iterable[bytes] | Fill, *, verify: bool) -> BlobInfo:
        key_id, key = self._current_key()
        hasher = hashlib.sha256() if verify else None
        fd, name = tempfile.mkstemp(dir=self._temp_dir, prefix=f"{sha256[:16]}.", suffix=".enc.tmp")
        temp = Path(name)
        try:
            try:
                fill = source if callable(source) else _filler(source)
                size = encrypt_into_file(fd, key, key_id, fill, associated=sha256.encode("ascii"), hasher=hasher)
                os.fsync(fd)
            finally:
                os.close(fd)
            if hasher is not None and (actual := hasher.hexdigest()) != sha256:
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

    def read_plain(self, sha256: str, start: int, length: int, *, nowait: bool = False) -> bytearray | None:
        """The plaintext ``[start, start + length)`` of a blob stored encrypted in a local folder, in one buffer:
        one read of the sealed chunks it touches, each decrypted straight into place (the whole chunks with
        ``decrypt_into``), in the calling thread. The byte-serving path's fast lane (media/ranges.py): one
        read and one answer per MiB, and with ``nowait`` no worker thread at all when the chunks are in the
        page cache (``RWF_NOWAIT``, as for blobs in the clear).

        None when it does not apply — the backend is not a folder, the blob is not encrypted, the range is
        empty, or (``nowait``) a read would wait for the disk — and the caller reads with :meth:`open_range`,
        which also reports a missing or damaged file properly. A chunk that fails authentication raises
        :class:`BlobDecryptError`. Keep ``length`` to a MiB or so: the buffer is the whole range.
        """
        validate_key(sha256)
        if not isinstance(self.backend, FilesystemBlobStore) or length <= 0 or (nowait and _NOWAIT is None):
            return None
        flags = _NOWAIT if nowait and _NOWAIT is not None else 0
        try:
            fd = os.open(self.backend._path(sha256), os.O_RDONLY)
        except OSError:
            return None
        try:
            stored = os.fstat(fd).st_size
            head = bytearray(HEADER_SIZE)
            if os.preadv(fd, [head], 0, flags) != HEADER_SIZE or not is_encrypted(bytes(head)):
                return None
            try:
                total = plaintext_size(stored)
            except BlobDecryptError:  # a truncated file: open_range says so
                return None
            end = min(total, start + length)
            if start >= end:
                return None
            first, last = start // CHUNK, (end - 1) // CHUNK
            stored_start = HEADER_SIZE + first * SEALED
            span = min(stored, HEADER_SIZE + (last + 1) * SEALED) - stored_start
            with _scratch(span) as sv:
                if os.preadv(fd, [sv], stored_start, flags) != span:
                    return None
                # A chunk that fails authentication raises from here (the answer is cut, as with open_range).
                return self._decrypt_into_answer(sha256, bytes(head), sv, total, start, end)
        except OSError:
            return None  # EAGAIN (not in the page cache), or a file that went away: open_range says which
        finally:
            os.close(fd)

    def _decrypt_into_answer(self, sha256: str, header: bytes, sv: memoryview, total: int, start: int,
                             end: int) -> bytearray:
        """Decrypt the sealed chunks in ``sv`` (from the one holding ``start`` on) into a fresh answer buffer."""
        aead = self._aead(sha256, header)
        aad = header + sha256.encode("ascii")
        chunks = max(1, -(-total // CHUNK))
        first, last = start // CHUNK, (end - 1) // CHUNK
        out = bytearray(end - start)  # a fresh buffer: the server may still hold it after this answer is sent
        ov = memoryview(out)
        at = 0
        for index in range(first, last + 1):
            piece = sv[(index - first) * SEALED : min((index - first + 1) * SEALED, len(sv))]
            plain = len(piece) - TAG
            lo, hi = max(start - index * CHUNK, 0), min(end - index * CHUNK, plain)
            nonce = _nonce(index, index == chunks - 1)
            try:
                if _INTO and (lo, hi) == (0, plain):
                    aead.decrypt_into(nonce, piece, aad, ov[at : at + plain])
                else:
                    ov[at : at + hi - lo] = memoryview(aead.decrypt(nonce, piece, aad))[lo:hi]
            except InvalidTag:
                raise BlobDecryptError(
                    f"暗号化データの検証に失敗しました: {sha256} の第{index}チャンク / "
                    f"blob {sha256}: chunk {index} failed authentication "
                    "(altered, truncated, reordered or the wrong key)"
                ) from None
            at += hi - lo
        return out

    # -- the rest ------------------------------------------------------------

    def delete(self, sha256: str) -> None:
        self.backend.delete(sha256)

    def iter_hashes(self) -> Iterator[str]:
        return self.backend.iter_hashes()

    def local_path(self, sha256: str) -> Path | None:
        """A path only for a blob stored in the clear: an encrypted file must never be served as it is."""
        if isinstance(self.backend, FilesystemBlobStore):  # one open and one 8-byte read: asked before every answer
            local = self.backend._path(validate_key(sha256))
            try:
                fd = os.open(local, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
            try:
                head = os.pread(fd, len(MAGIC), 0)
            finally:
                os.close(fd)
            return None if is_encrypted(head) else local
        path = self.backend.local_path(sha256)
        if path is None:
            return None
        found = self._head(sha256)
        return path if found is not None and not is_encrypted(found) else None

    def close(self) -> None:
        self.backend.close()


def for_owner(blobs: BlobStore, owner: str) -> BlobStore:
    """``blobs`` writing under ``owner``'s data key when it is an encrypting store with per-owner keys; else itself."""
    if isinstance(blobs, EncryptedBlobStore) and blobs._owner_key is not None:
        return blobs.for_owner(owner)
    return blobs


_SCRATCH_SIZE = 17 * SEALED  # the sealed chunks of a MiB of plaintext at any offset
_SCRATCH_KEPT = 4
_scratch_pool: list[bytearray] = []
_scratch_lock = threading.Lock()


@contextmanager
def _scratch(size: int) -> Iterator[memoryview]:
    """A read buffer for sealed chunks, ``size`` bytes of it, from a small pool kept between calls: a fresh MiB
    each time would be zeroed and faulted in anew, and two of them alive at once let malloc hand the memory
    back to the kernel after every answer. At most four are kept (the event loop's, and a few worker threads'
    when chunks come from the disk); a larger or an extra one is made for the call and dropped."""
    buf: bytearray | None = None
    if size <= _SCRATCH_SIZE:
        with _scratch_lock:
            buf = _scratch_pool.pop() if _scratch_pool else None
    if buf is None:
        buf = bytearray(max(size, _SCRATCH_SIZE))
    view = memoryview(buf)
    try:
        yield view[:size]
    finally:
        view.release()
        if len(buf) == _SCRATCH_SIZE:
            with _scratch_lock:
                if len(_scratch_pool) < _SCRATCH_KEPT:
                    _scratch_pool.append(buf)


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
