"""Data keys: made at random, stored only wrapped by the master key, unwrapped once per process.

- :class:`Keyring` gives the encrypted blob store the key to write with (the newest of a scope: a
  contract's own, named explicitly by the write path through :func:`contract_blobs`, else the site's)
  and finds any key by the id a blob's header names.
- :func:`rotate` re-wraps every data key from the old master key to the new one in one transaction:
  no blob is touched, and a crash leaves either all keys under the old master key or all under the new.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import func, select

from chairside.blobs import BlobStore
from chairside.blobs.crypt import for_owner
from chairside.db.engine import Database
from chairside.db.models import DataKey

from .database import rotate_database_key
from .master import KEY_BYTES, KeyWrapper, MasterKeyError, WrongMasterKey

__all__ = [
    "SITE",
    "Keyring",
    "UnknownDataKey",
    "contract_blobs",
    "contract_scope",
    "master_key_ids",
    "rotate",
    "scope_of",
]

SITE = "site"

_scope: ContextVar[str] = ContextVar("chairside_key_scope", default=SITE)


class UnknownDataKey(MasterKeyError):
    """A blob names a data key this database does not hold."""


def scope_of(contract_id: uuid.UUID) -> str:
    """The key scope of a contract's blobs (``data_keys.scope``)."""
    return f"contract:{contract_id}"


def contract_blobs(blobs: BlobStore, contract_id: uuid.UUID) -> BlobStore:
    """``blobs``, writing under the contract's own data key (made on its first blob) when it encrypts.

    Every write path that knows whose bytes it stores passes them through here (media ingest, display
    copies, restore). A store that does not encrypt is answered as it is. Reads need no scope: a blob's
    header names its key.
    """
    return for_owner(blobs, scope_of(contract_id))


@contextmanager
def contract_scope(contract_id: uuid.UUID) -> Iterator[None]:
    """Blobs written inside encrypt under the contract's own data key (made on first use).

    Prefer :func:`contract_blobs`, which names the contract where the write happens; this context
    variable is for callers several frames away from the store (none in Chairside today).
    """
    token = _scope.set(scope_of(contract_id))
    try:
        yield
    finally:
        _scope.reset(token)


def master_key_ids(db: Database) -> set[str]:
    """The ids of the master keys that wrapped this database's data keys (empty: no data key yet)."""
    with db.read() as s:
        return set(s.scalars(select(DataKey.master_key_id).distinct()))


class Keyring:
    """The data keys of one database, unwrapped by ``wrapper`` on first use and kept in memory."""

    def __init__(self, db: Database, wrapper: KeyWrapper) -> None:
        self._db = db
        self._wrapper = wrapper
        self._by_id: dict[str, bytes] = {}
        self._current: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def master_key_id(self) -> str:
        return self._wrapper.key_id

    @property
    def wrapper(self) -> KeyWrapper:
        """The master key itself (the cloud wraps relays' release keys with it: keys/release.py)."""
        return self._wrapper

    def check(self) -> None:
        """Refuse (WrongMasterKey, naming both) when any data key was wrapped by another master key."""
        others = master_key_ids(self._db) - {self._wrapper.key_id}
        if others:
            raise WrongMasterKey(
                f"データの鍵はマスターキー {', '.join(sorted(others))} で包まれていますが、読み込んだのは "
                f"{self._wrapper.key_id} です。正しい master_key_file を指定してください（何も変更していません） / "
                f"the data keys are wrapped by master key {', '.join(sorted(others))} but the loaded one is "
                f"{self._wrapper.key_id}: point master_key_file at the right key (nothing was changed)"
            )

    def current(self, scope: str | None = None) -> tuple[str, bytes]:
        """(key id, data key) for new blobs of ``scope`` (default: the current one, see :func:`contract_scope`);
        the scope's first key is made here, in a transaction of its own: call it outside any write transaction
        (SQLite has one writer). Two processes storing a contract's first blob at once may each make one: both
        keys stay readable by id, and the newest encrypts from the next start on."""
        scope = scope if scope is not None else _scope.get()
        with self._lock:
            key_id = self._current.get(scope)
            if key_id is not None:
                return key_id, self._by_id[key_id]
        with self._db.session() as s:
            newest = s.execute(
                select(DataKey.id, DataKey.wrapped)
                .where(DataKey.scope == scope)
                .order_by(DataKey.created_at.desc(), DataKey.id.desc())
                .limit(1)
            ).first()
            if newest is None:
                key = secrets.token_bytes(KEY_BYTES)
                row = DataKey(id=uuid.uuid4().hex, scope=scope, wrapped=self._wrapper.wrap(key),
                              master_key_id=self._wrapper.key_id)
                s.add(row)
                key_id = row.id
            else:
                key_id, key = newest.id, self._wrapper.unwrap(newest.wrapped)
        with self._lock:
            self._by_id[key_id] = key
            self._current[scope] = key_id
        return key_id, key

    def lookup(self, key_id: str) -> bytes:
        """The data key a blob's header names; UnknownDataKey or WrongMasterKey when it cannot be had."""
        with self._lock:
            key = self._by_id.get(key_id)
        if key is not None:
            return key
        with self._db.read() as s:
            wrapped = s.scalar(select(DataKey.wrapped).where(DataKey.id == key_id))
        if wrapped is None:
            raise UnknownDataKey(
                f"データの鍵 {key_id} がデータベースにありません / data key {key_id} is not in this database"
            )
        key = self._wrapper.unwrap(wrapped)
        with self._lock:
            self._by_id[key_id] = key
        return key


def rotate(db: Database, old: KeyWrapper, new: KeyWrapper) -> int:
    """Re-wrap every data key under ``old`` with ``new``, in one transaction; answer how many.

    Keys already under ``new`` are left as they are (a second run is a no-op). A key under any
    third master key, or one that ``old`` cannot unwrap, stops the whole rotation before anything
    is written.
    """
    if old.key_id == new.key_id:
        raise MasterKeyError("新旧のマスターキーが同じです / the old and the new master key are the same key")
    rotate_database_key(db.url, old, new, check_only=True)  # the SQLite file's own key (keys/database.py)
    with db.session() as s:
        rows = list(s.scalars(select(DataKey).order_by(DataKey.id)).all())
        strangers = {r.master_key_id for r in rows} - {old.key_id, new.key_id}
        if strangers:
            raise WrongMasterKey(
                f"マスターキー {', '.join(sorted(strangers))} で包まれた鍵があります。ローテーションを中止しました"
                f"（何も変更していません） / some data keys are wrapped by master key {', '.join(sorted(strangers))}, "
                "neither the old nor the new one: rotation stopped, nothing was changed"
            )
        moved = 0
        for row in rows:
            if row.master_key_id == new.key_id:
                continue
            row.wrapped = new.wrap(old.unwrap(row.wrapped))
            row.master_key_id = new.key_id
            moved += 1
    # Then the database's key file (an atomic rename): a crash in between leaves it under OLD, and running the
    # same rotation again moves it (the data keys are then a no-op).
    rotate_database_key(db.url, old, new)
    return moved


def count_keys(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(DataKey)) or 0)
