"""The one pluggable encryption step: every object is sealed before it leaves the server, opened after it returns.

:class:`KeySealer` uses the encryption at rest of ``chairside.blobs.crypt`` (AES-256-GCM in 64 KiB chunks,
each bound to the object's name) under a backup data key made for each generation, which is stored on the
target wrapped by the master key (``keys/<key id>``): the target alone reveals nothing, and a restore needs
the master key, which is never stored in the data folder nor in the backup. :class:`PlainSealer` is the
step when no master key is configured (the manifest then says ``"scheme": "none"``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chairside.blobs.crypt import CHUNK, HEADER_SIZE, SEALED, decrypt_stream, encrypt_stream
from chairside.keys import KEY_BYTES, KeyWrapper, key_id_of

from .targets import Target, TargetMissing

__all__ = ["SCHEME_AES", "SCHEME_NONE", "KeySealer", "PlainSealer", "SealError", "Sealer"]

SCHEME_NONE = "none"
SCHEME_AES = "aes-256-gcm-64k"
_MANIFEST_INFO = b"chairside backup manifest v1"


class SealError(Exception):
    """The backup cannot be opened: no master key, the wrong one, or a missing data key (ja + en)."""


class Sealer(Protocol):
    scheme: str
    master_key_id: str | None
    #: How sealed objects are best read back: (header bytes, then pieces of this size), see Target.read.
    layout: tuple[int, int]
    #: The piece size that ``seal`` takes without re-chunking.
    plain_piece: int

    def seal(self, chunks: Iterable[bytes], name: str) -> Iterator[bytes]: ...

    def unseal(self, chunks: Iterable[bytes], name: str) -> Iterator[bytes]: ...

    def manifest_key(self, key_id: str | None = None) -> tuple[str, bytes] | None:
        """(key id, MAC key) for signing a manifest (the writing key's: ``key_id`` None) or checking one
        (``key_id`` named by it); None when this step has no key (no master key configured)."""
        ...


class PlainSealer:
    """No encryption (no master key configured)."""

    scheme = SCHEME_NONE
    master_key_id: str | None = None
    layout = (0, 1 << 20)
    plain_piece = 1 << 20

    def seal(self, chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
        return iter(chunks)

    def unseal(self, chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
        return iter(chunks)

    def manifest_key(self, key_id: str | None = None) -> tuple[str, bytes] | None:
        return None


class KeySealer:
    """AES-256-GCM under a backup data key wrapped by the master key and kept on the target."""

    scheme = SCHEME_AES
    layout = (HEADER_SIZE, SEALED)
    plain_piece = CHUNK

    def __init__(self, master: KeyWrapper, target: Target) -> None:
        self._master = master
        self._target = target
        self.master_key_id: str | None = master.key_id
        self._keys: dict[str, bytes] = {}
        self._current: tuple[str, bytes] | None = None

    def _writing_key(self) -> tuple[str, bytes]:
        if self._current is None:
            key = secrets.token_bytes(KEY_BYTES)
            key_id = key_id_of(key)
            self._target.put(f"keys/{key_id}", [self._master.wrap(key)])  # before anything it encrypts
            self._keys[key_id] = key
            self._current = (key_id, key)
        return self._current

    def _lookup(self, key_id: str) -> bytes:
        if key_id in self._keys:
            return self._keys[key_id]
        if not key_id.isalnum():
            raise SealError(f"鍵IDが不正です / malformed key id in an encrypted object: {key_id!r}")
        try:
            wrapped = b"".join(self._target.read(f"keys/{key_id}"))
        except TargetMissing:
            raise SealError(
                f"バックアップの鍵 {key_id} がバックアップ先にありません / the backup data key {key_id} is missing "
                "from the target"
            ) from None
        try:
            key = self._master.unwrap(wrapped)
        except Exception as exc:
            raise SealError(f"バックアップの鍵を開けません / cannot unwrap backup data key {key_id}: {exc}") from exc
        self._keys[key_id] = key
        return key

    def seal(self, chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
        key_id, key = self._writing_key()
        return encrypt_stream(key, key_id, chunks, associated=name.encode())

    def unseal(self, chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
        return decrypt_stream(self._lookup, chunks, associated=name.encode())

    def manifest_key(self, key_id: str | None = None) -> tuple[str, bytes] | None:
        if key_id is None:
            key_id, key = self._writing_key()
        else:
            key = self._lookup(key_id)
        return key_id, _manifest_mac_key(key)


def _manifest_mac_key(data_key: bytes) -> bytes:
    """The manifest's MAC key: its own HKDF output, never the data key itself (one key, one purpose)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MANIFEST_INFO).derive(data_key)
