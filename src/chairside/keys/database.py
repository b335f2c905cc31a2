"""The database's own encryption: the embedded SQLite file encrypted by SQLCipher under a key wrapped by the master key.

The one place for the rule (docs/security.md, "The database"):

- A SQLite site with a master key gets a random 256-bit **database key**, stored only wrapped by the master
  key (:class:`~chairside.keys.master.KeyWrapper`) in a small file beside the database,
  ``<database file>.key.wrapped`` (one line: ``chairside-database-key-v1 <base64 of the wrapped key>``,
  mode 0600, written to a temporary file, fsynced and renamed). The raw key never touches the disk.
- SQLCipher is given the key in its raw form (``PRAGMA key = "x'…'"``): a 256-bit random key needs no
  password stretching, and the passphrase form would run PBKDF2 (256,000 rounds) on every new connection.
- A new database is made encrypted when a master key is configured and ``encrypt_at_rest`` is on (as blobs
  are). An existing database in the clear stays readable as it is (and the server says so at start) until
  ``chairside admin keys encrypt-database`` converts it; :func:`encrypt_database` is crash-safe (the key
  file first, then a new encrypted copy, fsynced, renamed over the old file).
- Rotating the master key re-wraps the key file (:func:`rotate_database_key`); the database's pages are
  not rewritten.
- PostgreSQL is out of scope: use the storage layer's encryption (an encrypted volume, an encrypted managed
  database). Every function here answers "nothing to do" for a URL that is not a SQLite file.

Nothing here depends on where the master key came from (a file, or released to a relay box at boot):
only on a :class:`KeyWrapper`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .master import KEY_BYTES, KeyWrapper, MasterKeyError, WrongMasterKey, wrapped_key_id

__all__ = [
    "KEY_OBJECT_PREFIX",
    "KEY_SUFFIX",
    "DatabaseKeyError",
    "adopt_key_object",
    "connect",
    "database_key",
    "encrypt_database",
    "file_state",
    "key_file",
    "key_file_master_id",
    "key_object",
    "opening_key",
    "read_key_file",
    "rotate_database_key",
    "sqlite_file",
    "wrapped_key_file",
    "write_key_file",
]

log = logging.getLogger("chairside.keys")

KEY_SUFFIX = ".key.wrapped"
_HEADER = "chairside-database-key-v1"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SHM_DMS = 128  # the wal-index's dead-man-switch lock byte: (22 + 8) * 4 + 8 in SQLite's os_unix.c


class DatabaseKeyError(MasterKeyError):
    """The database cannot be opened with the keys at hand (message says why and what to do, ja + en)."""


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or None (PostgreSQL, an in-memory database)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    if not path or path == ":memory:":
        return None
    return Path(path)


def key_file(db_file: Path) -> Path:
    """Where the database's wrapped key lives: beside it, ``chairside.db`` → ``chairside.db.key.wrapped``."""
    return db_file.with_name(db_file.name + KEY_SUFFIX)


def file_state(db_file: Path) -> str:
    """``new`` (missing or empty), ``plain`` (a SQLite file in the clear) or ``encrypted`` (anything else:
    SQLCipher's first 16 bytes are the random salt)."""
    try:
        with open(db_file, "rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        return "new"
    if not head:
        return "new"
    return "plain" if head == _SQLITE_MAGIC else "encrypted"


# -- the key file ------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wrapped_key_file(path: Path) -> bytes:
    """The wrapped key a key file holds (not unwrapped); DatabaseKeyError for a file that is not one."""
    text = path.read_text("ascii", errors="replace").split()
    try:
        if len(text) != 2 or text[0] != _HEADER:
            raise ValueError
        wrapped = base64.b64decode(text[1], validate=True)
        if wrapped_key_id(wrapped) is None:
            raise ValueError
    except (ValueError, binascii.Error):
        raise DatabaseKeyError(
            f"データベースの鍵のファイルが壊れているか、別の形式です: {path} / the database key file is damaged or "
            f"not a Chairside database key: {path}"
        ) from None
    return wrapped


def write_key_file(path: Path, wrapped: bytes, *, exclusive: bool = False) -> bool:
    """Write a wrapped key atomically: a temporary file (0600), fsynced, renamed into place, folder fsynced.

    ``exclusive``: never replace an existing file (a hard link instead of a rename); False when one was there
    (two processes making a new database at once keep the first one's key)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, f"{_HEADER} {base64.b64encode(wrapped).decode('ascii')}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def read_key_file(path: Path, wrapper: KeyWrapper) -> bytes:
    """The raw database key from its file; WrongMasterKey (naming both keys) when ``wrapper`` did not wrap it."""
    wrapped = wrapped_key_file(path)
    made_by = wrapped_key_id(wrapped)
    if made_by != wrapper.key_id:
        raise WrongMasterKey(
            f"データベースの鍵はマスターキー {made_by} で包まれていますが、読み込んだのは {wrapper.key_id} です。"
            f"正しい master_key_file を指定してください（何も変更していません） / "
            f"the database key is wrapped by master key {made_by} but the loaded one is {wrapper.key_id}: point "
            "master_key_file at the right key (nothing was changed)"
        )
    key = wrapper.unwrap(wrapped)
    if len(key) != KEY_BYTES:
        raise DatabaseKeyError(f"データベースの鍵の長さが不正です: {path} / the database key in {path} is not 32 bytes")
    return key


# -- connections -------------------------------------------------------------------------------------------


def _driver() -> Any:
    from sqlcipher3 import dbapi2  # the SQLCipher build of Python's sqlite3 module (sqlcipher3-binary)

    return dbapi2


def connect(db_file: Path, key: bytes | None, **kwargs: Any) -> Any:
    """A sqlcipher3 connection to ``db_file`` keyed with ``key`` first (None: a file in the clear)."""
    conn = _driver().connect(str(db_file), **kwargs)
    if key is not None:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return conn


def _check_readable(db_file: Path, key: bytes) -> None:
    """Refuse (DatabaseKeyError) when ``key`` does not open ``db_file``: SQLCipher only notices at the first read."""
    driver = _driver()
    try:
        conn = connect(db_file, key, timeout=30)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except driver.DatabaseError:
        raise DatabaseKeyError(
            f"データベース {db_file} をその鍵で読めません（鍵のファイル {key_file(db_file).name} が別のデータベースの"
            f"ものか、ファイルが壊れています）。何も変更していません / "
            f"the database {db_file} cannot be read with its key (the key file {key_file(db_file).name} belongs to "
            "another database, or the file is damaged); nothing was changed"
        ) from None


# -- the rule ----------------------------------------------------------------------------------------------


def database_key(url: str, wrapper: KeyWrapper | None, *, create: bool = True) -> bytes | None:
    """The raw SQLCipher key to open the database at ``url`` with, or None to open it in the clear.

    - not a SQLite file: None (PostgreSQL: the storage layer's encryption).
    - a key file beside it: its key, unwrapped by ``wrapper``; no wrapper, the wrong master key, a key that
      does not open the file, or a file still in the clear (an interrupted ``encrypt-database``) each raise
      :class:`DatabaseKeyError` / :class:`WrongMasterKey` before anything is written.
    - no key file, a new database, a wrapper and ``create``: a new key, its file written before the
      database exists, so an encrypted database never exists without its key file.
    - no key file, an encrypted file: refused (its key file is lost: restore it from a backup).
    - no key file, a database in the clear: None (logged when a master key is configured:
      ``chairside admin keys encrypt-database`` converts it).
    """
    db_file = sqlite_file(url)
    if db_file is None:
        return None
    kfile = key_file(db_file)
    state = file_state(db_file)
    if kfile.exists():
        if wrapper is None:
            made_by = wrapped_key_id(wrapped_key_file(kfile)) or "?"
            raise DatabaseKeyError(
                f"データベース {db_file.name} は暗号化されていますが、マスターキーが設定されていません。"
                f"CHAIRSIDE_MASTER_KEY_FILE にマスターキー（{made_by}）のファイルを指定してください / "
                f"the database {db_file.name} is encrypted but no master key is configured: set "
                f"CHAIRSIDE_MASTER_KEY_FILE to the file of master key {made_by}"
            )
        key = read_key_file(kfile, wrapper)
        if state == "plain":
            raise DatabaseKeyError(
                f"データベース {db_file} の暗号化が途中で止まっています。chairside admin keys encrypt-database を"
                f"もう一度実行してください（データはそのままです） / "
                f"encrypting the database {db_file} was interrupted: run `chairside admin keys encrypt-database` "
                "again (the data is intact)"
            )
        if state == "encrypted":
            _check_readable(db_file, key)
        return key
    if state == "encrypted":
        raise DatabaseKeyError(
            f"データベース {db_file} は暗号化されていますが、鍵のファイル {kfile.name} がありません。バックアップから"
            f"鍵のファイルを戻してください / "
            f"the database {db_file} is encrypted but its key file {kfile.name} is missing: put it back from a backup"
        )
    if wrapper is None:
        return None
    if state == "plain":
        log.warning(
            "データベース %s は暗号化されていません。サーバーを止めて chairside admin keys encrypt-database を実行して"
            "ください / the database %s is not encrypted: stop the server and run `chairside admin keys "
            "encrypt-database`", db_file, db_file,
        )
        return None
    if not create:
        return None
    key = secrets.token_bytes(KEY_BYTES)
    db_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not write_key_file(kfile, wrapper.wrap(key), exclusive=True):
        return read_key_file(kfile, wrapper)  # another process made the database's key a moment ago
    return key


def rotate_database_key(url: str, old: KeyWrapper, new: KeyWrapper, *, check_only: bool = False) -> bool:
    """Re-wrap the database's key file from ``old`` to ``new``; False when there is none or it is under ``new``.

    A key file under a third master key raises WrongMasterKey; ``check_only`` stops there, writing nothing."""
    db_file = sqlite_file(url)
    if db_file is None or not key_file(db_file).exists():
        return False
    kfile = key_file(db_file)
    made_by = wrapped_key_id(wrapped_key_file(kfile))
    if made_by == new.key_id:
        return False
    if made_by != old.key_id:
        raise WrongMasterKey(
            f"データベースの鍵はマスターキー {made_by} で包まれています（新旧のどちらでもありません）。何も変更して"
            f"いません / the database key is wrapped by master key {made_by}, neither the old nor the new one: nothing "
            "was changed"
        )
    if check_only:
        return True
    write_key_file(kfile, new.wrap(read_key_file(kfile, old)))
    return True


def key_file_master_id(url: str) -> str | None:
    """The id of the master key that wraps the database's key file; None when it has none."""
    db_file = sqlite_file(url)
    if db_file is None or not key_file(db_file).exists():
        return None
    return wrapped_key_id(wrapped_key_file(key_file(db_file)))


def opening_key(url: str, *wrappers: KeyWrapper) -> bytes | None:
    """The database key unwrapped by whichever of ``wrappers`` wrapped it (rotation opens with old or new)."""
    db_file = sqlite_file(url)
    if db_file is None or not key_file(db_file).exists():
        return None
    made_by = wrapped_key_id(wrapped_key_file(key_file(db_file)))
    for wrapper in wrappers:
        if wrapper.key_id == made_by:
            return read_key_file(key_file(db_file), wrapper)
    return read_key_file(key_file(db_file), wrappers[0])  # raises WrongMasterKey naming both


def _in_use(db_file: Path) -> bool:
    """Whether another process has the database open in WAL mode: each such connection holds a shared lock on
    the wal-index's "DMS" byte (offset 128 of the -shm file, SQLite's os_unix.c), which SQLite itself tests to
    know whether it is the only connection. (Call it before this process opens the file: POSIX locks are per
    process, and closing any descriptor of the file would drop this process's own.)"""
    shm = db_file.with_name(db_file.name + "-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SHM_DMS)
        return False
    finally:
        os.close(fd)


def encrypt_database(url: str, wrapper: KeyWrapper) -> dict[str, Any]:
    """Convert the SQLite database at ``url`` from the clear to SQLCipher; crash-safe and run again to resume.

    1. the key: the key file's if one exists (a previous run stopped), else a new one, its file written first;
    2. refused, saying so, while another process has the database open (a running server: :func:`_in_use`);
       the database in the clear leaves WAL mode (its log folded in) and holds an exclusive lock while
    3. ``sqlcipher_export`` writes every table, index, trigger and the schema to ``<file>.encrypting``,
       which is fsynced and
    4. renamed over the database (the folder fsynced). A crash before 4 leaves the old file in place and the
       next run starts again; after 4, the new file and its key are both there.
    """
    db_file = sqlite_file(url)
    if db_file is None:
        raise DatabaseKeyError(
            "PostgreSQL のデータベースはこのコマンドでは暗号化しません。ストレージ側の暗号化を使ってください / a "
            "PostgreSQL database is not encrypted by Chairside: use the storage layer's encryption (docs/security.md)"
        )
    state = file_state(db_file)
    kfile = key_file(db_file)
    if state == "encrypted":
        if not kfile.exists():
            database_key(url, wrapper)  # raises: the key file is missing
        _check_readable(db_file, read_key_file(kfile, wrapper))
        return {"database": str(db_file), "encrypted": False, "already": True, "master_key_id": wrapper.key_id}
    if state == "new":
        raise DatabaseKeyError(f"データベースがありません: {db_file} / there is no database at {db_file}")
    in_use = DatabaseKeyError(
        f"データベース {db_file} を使用中のプロセスがあります。サーバーを止めてからもう一度実行してください / "
        f"the database {db_file} is in use by another process: stop the server and run this again"
    )
    if _in_use(db_file):
        raise in_use
    if kfile.exists():
        key = read_key_file(kfile, wrapper)
    else:
        key = secrets.token_bytes(KEY_BYTES)
        write_key_file(kfile, wrapper.wrap(key))
    out = db_file.with_name(db_file.name + ".encrypting")
    out.unlink(missing_ok=True)
    driver = _driver()
    source = connect(db_file, None, timeout=5, isolation_level=None)
    try:
        try:
            mode = source.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except driver.OperationalError:
            mode = "wal"
        if str(mode).lower() != "delete":
            raise in_use
        os.close(os.open(out, os.O_CREAT | os.O_WRONLY, 0o600))
        source.execute(f"ATTACH DATABASE ? AS encrypted KEY \"x'{key.hex()}'\"", (str(out),))
        source.execute("BEGIN EXCLUSIVE")
        try:
            source.execute("SELECT sqlcipher_export('encrypted')")
            version = source.execute("PRAGMA main.user_version").fetchone()[0]
            source.execute(f"PRAGMA encrypted.user_version = {int(version)}")
            source.execute("COMMIT")
        except BaseException:
            source.execute("ROLLBACK")
            raise
        source.execute("DETACH DATABASE encrypted")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    for leftover in (out.with_name(out.name + "-journal"), db_file.with_name(db_file.name + "-wal"),
                     db_file.with_name(db_file.name + "-shm")):
        if leftover.exists() and leftover.stat().st_size > 0 and leftover.name.endswith("-wal"):
            raise DatabaseKeyError(f"WAL が残っています: {leftover} / a write-ahead log is left at {leftover}")
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _check_readable(out, key)
    os.replace(out, db_file)
    _fsync_dir(db_file.parent)
    return {"database": str(db_file), "encrypted": True, "already": False, "master_key_id": wrapper.key_id,
            "key_file": str(kfile)}


# -- backups -----------------------------------------------------------------------------------------------

KEY_OBJECT_PREFIX = "keys/database-"


def key_object(url: str) -> tuple[str, bytes] | None:
    """The database's key file as a backup object (name, bytes): still wrapped by the master key, so it is
    stored as it is, named by a hash of its content (a rotation makes a new one; old generations keep theirs)."""
    db_file = sqlite_file(url)
    if db_file is None or not key_file(db_file).exists():
        return None
    raw = key_file(db_file).read_bytes()
    wrapped_key_file(key_file(db_file))  # refuse a damaged file now, not at the restore
    return KEY_OBJECT_PREFIX + hashlib.sha256(raw).hexdigest()[:16], raw


def adopt_key_object(db_file: Path, candidate: Path, wrapper: KeyWrapper, objects: Iterable[bytes]) -> bool:
    """Restore: put the key file for ``db_file`` in place from the first backed-up key object that ``wrapper``
    unwraps and that opens ``candidate`` (the restored, still scratch, database). False when none does."""
    for raw in objects:
        kfile = key_file(db_file)
        tmp = kfile.with_name(kfile.name + ".restoring")
        tmp.write_bytes(raw)
        try:
            key = read_key_file(tmp, wrapper)
            _check_readable(candidate, key)
        except MasterKeyError:
            continue
        finally:
            tmp.unlink(missing_ok=True)
        db_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_key_file(kfile, wrapper.wrap(key))
        return True
    return False
