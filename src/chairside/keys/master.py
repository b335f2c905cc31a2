"""The master key: a 256-bit AES key in a file kept outside the data folder, which wraps data keys.

The file holds one line, ``chairside-master-key-v1 <key id> <base64 of 32 bytes>``, and is created
with mode 0600 (``O_EXCL``: an existing file is never overwritten). :func:`MasterKey.load` refuses a
file that the group or others may read, as ssh does with a private key.

A wrapped key is ``b"CSW1" || key id (16 ASCII) || nonce (12) || AES-256-GCM(key, data, aad)``,
with the magic and the key id as associated data: unwrapping with another master key fails with a
message that names both keys, never with garbage.

:class:`KeyWrapper` is the interface a KMS can implement later (``key_id``, ``wrap``, ``unwrap``);
nothing else in Chairside touches the master key's bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_BYTES", "KeyWrapper", "MasterKey", "MasterKeyError", "WrongMasterKey", "key_id_of", "wrapped_key_id"]

KEY_BYTES = 32
_HEADER = "chairside-master-key-v1"
_WRAP_MAGIC = b"CSW1"
_ID_LEN = 16
_NONCE = 12


class MasterKeyError(Exception):
    """The master key file is missing, unreadable, malformed or too open (message says which, ja + en)."""


class WrongMasterKey(MasterKeyError):
    """A wrapped key was made by another master key (or was altered)."""


@runtime_checkable
class KeyWrapper(Protocol):
    """What wraps data keys: the master key file today, a KMS (AWS KMS, Cloud KMS, an HSM) later."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, data: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes) -> bytes: ...


def key_id_of(key: bytes) -> str:
    """The public name of a key: 16 hex digits of a SHA-256 over a label and the key (reveals nothing of it)."""
    return hashlib.sha256(b"chairside key id v1\0" + key).hexdigest()[:_ID_LEN]


def wrapped_key_id(wrapped: bytes) -> str | None:
    """The id of the master key that made ``wrapped``, or None when it is not a wrapped key."""
    if len(wrapped) < 4 + _ID_LEN + _NONCE + 16 or not wrapped.startswith(_WRAP_MAGIC):
        return None
    return wrapped[4 : 4 + _ID_LEN].decode("ascii", "replace")


class MasterKey:
    """A 256-bit key that wraps and unwraps data keys with AES-256-GCM (implements :class:`KeyWrapper`)."""

    __slots__ = ("_aead", "_key_id", "_raw", "path")

    def __init__(self, key: bytes, *, path: Path | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"マスターキーは32バイトです / a master key is {KEY_BYTES} bytes, not {len(key)}")
        self._raw = key
        self._aead = AESGCM(key)
        self._key_id = key_id_of(key)
        self.path = path

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self._key_id!r}, path={str(self.path) if self.path else None!r})"

    @property
    def key_id(self) -> str:
        return self._key_id

    # -- files ---------------------------------------------------------------

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def create(cls, path: Path | str) -> MasterKey:
        """Write a new random key to ``path`` (mode 0600, fsynced); refuse to overwrite an existing file."""
        path = Path(path)
        key = cls.generate()
        raw = key._export()
        line = f"{_HEADER} {key.key_id} {base64.b64encode(raw).decode('ascii')}\n".encode("ascii")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise MasterKeyError(
                f"マスターキーのファイルが既にあります（上書きしません）: {path} / "
                f"a master key file already exists and is never overwritten: {path}"
            ) from None
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return cls(raw, path=path)

    @classmethod
    def load(cls, path: Path | str) -> MasterKey:
        """Read the key at ``path``; every problem is a :class:`MasterKeyError` saying what to do."""
        path = Path(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise MasterKeyError(
                f"マスターキーのファイルがありません: {path}（master_key_file の設定を確認してください） / "
                f"the master key file does not exist: {path} (check the master_key_file setting)"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyError(f"マスターキーがファイルではありません: {path} / not a file: {path}")
        if st.st_mode & 0o077:
            raise MasterKeyError(
                f"マスターキーのファイルを他のユーザーが読めます。chmod 600 {path} を実行してください / "
                f"the master key file is readable by others; run chmod 600 {path}"
            )
        text = path.read_text("ascii", errors="replace").strip()
        parts = text.split()
        try:
            if len(parts) != 3 or parts[0] != _HEADER:
                raise ValueError
            raw = base64.b64decode(parts[2], validate=True)
            if len(raw) != KEY_BYTES or key_id_of(raw) != parts[1]:
                raise ValueError
        except ValueError:
            raise MasterKeyError(
                f"マスターキーのファイルが壊れているか、別の形式です: {path} / "
                f"the master key file is damaged or not a Chairside master key: {path}"
            ) from None
        return cls(raw, path=path)

    def _export(self) -> bytes:
        return self._raw

    # -- wrapping ------------------------------------------------------------

    def wrap(self, data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        head = _WRAP_MAGIC + self._key_id.encode("ascii")
        return head + nonce + self._aead.encrypt(nonce, data, head)

    def unwrap(self, wrapped: bytes) -> bytes:
        made_by = wrapped_key_id(wrapped)
        if made_by is None:
            raise WrongMasterKey("包まれた鍵の形式ではありません / not a wrapped key")
        if made_by != self._key_id:
            raise WrongMasterKey(
                f"この鍵はマスターキー {made_by} で包まれています（読み込んだのは {self._key_id}）。"
                f"正しいマスターキーのファイルを指定してください / "
                f"this data key was wrapped by master key {made_by}, but the loaded master key is {self._key_id}: "
                "point master_key_file at the right key"
            )
        head = wrapped[: 4 + _ID_LEN]
        nonce = wrapped[4 + _ID_LEN : 4 + _ID_LEN + _NONCE]
        try:
            return self._aead.decrypt(nonce, wrapped[4 + _ID_LEN + _NONCE :], head)
        except InvalidTag:
            raise WrongMasterKey(
                f"包まれた鍵が改ざんされているか壊れています（マスターキー {made_by}） / "
                f"the wrapped key is damaged or was altered (master key {made_by})"
            ) from None
