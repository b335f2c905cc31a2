"""`chairside admin keys`: the master key of encryption at rest (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chairside.cli.common import emit, fail
from chairside.db import migrate
from chairside.db.engine import Database
from chairside.keys import MasterKey, MasterKeyError
from chairside.keys.database import encrypt_database, key_file_master_id, opening_key
from chairside.keys.keyring import count_keys, rotate
from chairside.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The master key of encryption at rest (create, rotate).")


def register(admin: typer.Typer) -> None:
    admin.add_typer(app, name="keys")


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    if not isinstance(settings, Settings):
        settings = Settings.load()
    return settings


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


@app.command("create")
def create(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="File to write the new key to (never overwritten); keep it "
                                      "outside the data folder.")],
) -> None:
    """Write a new random master key (mode 0600) and print its id."""
    settings = _settings(ctx)
    if _inside(out, settings.data_dir):
        fail(f"マスターキーをデータフォルダ {settings.data_dir} の中に置くことはできません / the master key must not "
             f"be stored in the data folder {settings.data_dir}: whoever copies the folder would have the key too")
    try:
        key = MasterKey.create(out)
    except MasterKeyError as exc:
        fail(str(exc))
    emit({"key_id": key.key_id, "file": str(out.resolve()),
          "next": f"export CHAIRSIDE_MASTER_KEY_FILE={out.resolve()}  # back this file up apart from the data: "
                  "without it the encrypted media cannot be read"})


@app.command("rotate")
def rotate_cmd(
    ctx: typer.Context,
    old: Annotated[Path, typer.Option("--old", help="The master key the data keys are wrapped with now.")],
    new: Annotated[Path, typer.Option("--new", help="The new master key (from `keys create`).")],
) -> None:
    """Re-wrap every data key from OLD to NEW in one transaction; no media is re-encrypted."""
    settings = _settings(ctx)
    try:
        old_key, new_key = MasterKey.load(old), MasterKey.load(new)
    except MasterKeyError as exc:
        fail(str(exc))
    try:
        db = Database(settings.database_url, key=opening_key(settings.database_url, old_key, new_key))
    except MasterKeyError as exc:
        fail(str(exc))
    try:
        migrate.upgrade(db.engine)
        moved = rotate(db, old_key, new_key)
        total = count_keys(db)  # `rotate` re-wrapped the SQLite database's own key file too (keys/database.py)
    except MasterKeyError as exc:
        fail(str(exc))
    finally:
        db.dispose()
    emit({"rewrapped": moved, "data_keys": total, "database_key": key_file_master_id(settings.database_url),
          "old_key_id": old_key.key_id, "new_key_id": new_key.key_id,
          "next": f"set CHAIRSIDE_MASTER_KEY_FILE={new.resolve()} and restart the servers; keep the old key while "
                  "backups made under it are kept"})


@app.command("encrypt-database")
def encrypt_database_cmd(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option("--data", help="The data folder (default: `admin --data`).")] = None,
    master_key: Annotated[Path | None, typer.Option("--master-key", help="The master key (default: the "
                                                    "master_key_file setting).")] = None,
) -> None:
    """Encrypt a SQLite database kept in the clear with SQLCipher (stop the server first; run again to resume)."""
    settings = _settings(ctx) if data is None else Settings.load(data_dir=data)
    path = master_key or settings.master_key_file
    if path is None:
        fail("マスターキーが設定されていません。--master-key か CHAIRSIDE_MASTER_KEY_FILE を指定してください / "
             "no master key is configured: give --master-key or set CHAIRSIDE_MASTER_KEY_FILE")
    try:
        emit(encrypt_database(settings.database_url, MasterKey.load(path)))
    except MasterKeyError as exc:
        fail(str(exc))
