"""The process's keys from its settings: the master key file, and the check that it fits the data."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from chairside.blobs import BlobStore
from chairside.blobs.crypt import EncryptedBlobStore
from chairside.db.engine import Database
from chairside.settings import Settings

from .database import database_key
from .keyring import Keyring, master_key_ids
from .master import KeyWrapper, MasterKey, MasterKeyError

__all__ = ["encrypted_store", "load_master_key", "open_database", "open_keyring"]


def _known_master_keys(db: Database) -> set[str]:
    try:
        return master_key_ids(db)
    except DBAPIError:  # a database not migrated yet (build_context(upgrade=False) on an old schema)
        return set()


def load_master_key(settings: Settings) -> KeyWrapper | None:
    """The master key the settings name (``master_key_file``), or None when none is configured."""
    return None if settings.master_key_file is None else MasterKey.load(settings.master_key_file)


def open_database(settings: Settings, master: KeyWrapper | None) -> Database:
    """The site's database, opened with its SQLCipher key when it has one (keys/database.py decides)."""
    return Database(settings.database_url, key=database_key(settings.database_url, master,
                                                            create=settings.encrypt_at_rest))


def open_keyring(settings: Settings, db: Database, master: KeyWrapper | None = None) -> Keyring | None:
    """The keyring of ``master`` (default: ``settings.master_key_file``), checked against the data keys in ``db``.

    None when no master key is configured and the database holds no data key. A configured key
    that is missing, too open, damaged or not the one that wrapped the data keys, and encrypted
    data without a configured key, each raise :class:`MasterKeyError` before anything is written.
    """
    known = _known_master_keys(db)
    if master is None and settings.master_key_file is None:
        if known:
            raise MasterKeyError(
                "このデータは暗号化されていますが、マスターキーが設定されていません。CHAIRSIDE_MASTER_KEY_FILE に"
                f"マスターキー（{', '.join(sorted(known))}）のファイルを指定してください / this data is encrypted "
                f"but no master key is configured: set CHAIRSIDE_MASTER_KEY_FILE to the file of master key "
                f"{', '.join(sorted(known))}"
            )
        return None
    if master is None:
        assert settings.master_key_file is not None  # checked above
        master = MasterKey.load(settings.master_key_file)
    keyring = Keyring(db, master)
    keyring.check()
    if settings.encrypt_at_rest:
        # The site's data key now, not inside the first blob write: that may run while a caller holds
        # a write transaction (SQLite has one writer: a second transaction would wait on the first).
        keyring.current()
    return keyring


def encrypted_store(blobs: BlobStore, keyring: Keyring | None, settings: Settings) -> BlobStore:
    """``blobs`` wrapped for encryption at rest when there is a keyring, else ``blobs`` itself."""
    if keyring is None:
        return blobs
    return EncryptedBlobStore(blobs, keyring.current, keyring.lookup, encrypt=settings.encrypt_at_rest,
                              owner_key=keyring.current)
