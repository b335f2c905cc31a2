"""The database's own encryption (SQLCipher, keys/database.py): no page of the SQLite file or its WAL holds a
patient's name, a wrong or missing key stops the start and changes nothing, a database in the clear converts
safely, the master key's rotation re-wraps the database key, and an encrypted database backs up and restores.

SQLite only: a PostgreSQL site uses the storage layer's encryption (docs/security.md).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from chairside.backup.restore import RestoreError, restore, restore_settings
from chairside.backup.run import run_backup
from chairside.backup.seal import KeySealer
from chairside.backup.targets import FolderTarget
from chairside.cli import app as cli
from chairside.context import Context, build_context
from chairside.db.engine import Database
from chairside.db.models import Patient
from chairside.errors import Problem
from chairside.keys import MasterKey, MasterKeyError, WrongMasterKey
from chairside.keys import database as dbkeys
from chairside.mirror.service import create_mirror
from chairside.settings import Settings
from tests.factories import make_patient, make_tenant
from tests.relay.conftest import RelaySetup, cloud_database, make_relay, upcloud  # noqa: F401

NAME = "暗号 確認太郎"
KANA = "アンゴウ カクニンタロウ"
CHART = "MARK-20261207"
MARKERS = [NAME.encode(), CHART.encode(), b"SQLite format 3"]


def _settings(tmp_path: Path, key: MasterKey | None, **overrides: object) -> Settings:
    return Settings.load(environ={}, data_dir=tmp_path / "data", master_key_file=key.path if key else None,
                         **overrides)


def _db_file(settings: Settings) -> Path:
    path = dbkeys.sqlite_file(settings.database_url)
    assert path is not None
    return path


def _register(ctx: Context, chart: str = CHART) -> uuid.UUID:
    tenant = make_tenant(ctx, clinics=1)
    return make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], chart, NAME, KANA).id


def _name_of(ctx: Context, patient_id: uuid.UUID) -> str:
    with ctx.db.read() as s:
        patient = s.get(Patient, patient_id)
        assert patient is not None
        return patient.name


def _database_files(db_file: Path) -> list[Path]:
    return [p for p in (db_file, db_file.with_name(db_file.name + "-wal")) if p.exists()]


def _digest(*paths: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.exists()}


@pytest.fixture
def master(tmp_path: Path) -> MasterKey:
    return MasterKey.create(tmp_path / "keys" / "master.key")


@pytest.fixture
def site(tmp_path: Path, master: MasterKey) -> Iterator[Context]:
    ctx = build_context(_settings(tmp_path, master))
    yield ctx
    ctx.db.dispose()


def test_no_page_of_the_database_or_its_wal_holds_a_patients_name(site: Context, tmp_path: Path) -> None:
    patient_id = _register(site)
    db_file = _db_file(site.settings)
    wal = db_file.with_name(db_file.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the connection is open: the rows are (also) in WAL frames
    assert dbkeys.key_file(db_file).exists()
    for path in _database_files(db_file):
        raw = path.read_bytes()
        for marker in MARKERS:
            assert marker not in raw, f"{path.name} holds {marker!r}"
    key_text = dbkeys.key_file(db_file).read_bytes()
    assert site.db.key is not None and site.db.key.hex().encode() not in key_text  # only wrapped on disk
    assert os.stat(dbkeys.key_file(db_file)).st_mode & 0o077 == 0
    assert _name_of(site, patient_id) == NAME

    # The control: the same writes with encryption off leave the name readable in the file, so the search above
    # would have found it.
    plain = build_context(_settings(tmp_path / "plain", None))
    try:
        _register(plain)
        raw = b"".join(p.read_bytes() for p in _database_files(_db_file(plain.settings)))
        assert NAME.encode() in raw and CHART.encode() in raw
        assert not dbkeys.key_file(_db_file(plain.settings)).exists()
    finally:
        plain.db.dispose()


def test_a_wrong_or_missing_key_stops_the_start_clearly_and_changes_nothing(
    site: Context, tmp_path: Path, master: MasterKey
) -> None:
    patient_id = _register(site)
    site.db.dispose()
    db_file = _db_file(site.settings)
    kfile = dbkeys.key_file(db_file)
    before = _digest(db_file, kfile)

    stranger = MasterKey.create(tmp_path / "keys" / "stranger.key")
    with pytest.raises(WrongMasterKey) as wrong:
        build_context(_settings(tmp_path, stranger))
    assert master.key_id in str(wrong.value) and stranger.key_id in str(wrong.value)
    assert "マスターキー" in str(wrong.value) and "nothing was changed" in str(wrong.value)

    with pytest.raises(MasterKeyError) as missing:
        build_context(_settings(tmp_path, None))
    assert "CHAIRSIDE_MASTER_KEY_FILE" in str(missing.value) and "暗号化" in str(missing.value)

    other = tmp_path / "other.key.wrapped"  # a key file of another database, unwrapped fine by the right master
    dbkeys.write_key_file(other, master.wrap(secrets.token_bytes(32)))
    kfile.rename(tmp_path / "saved.key.wrapped")
    with pytest.raises(MasterKeyError, match=r"key file .* is missing") as lost:
        build_context(_settings(tmp_path, master))
    assert "鍵のファイル" in str(lost.value)
    other.rename(kfile)
    with pytest.raises(MasterKeyError, match="cannot be read with its key") as foreign:
        build_context(_settings(tmp_path, master))
    assert "読めません" in str(foreign.value)
    (tmp_path / "saved.key.wrapped").rename(kfile)

    assert _digest(db_file, kfile) == before
    assert not db_file.with_name(db_file.name + "-wal").exists()
    again = build_context(_settings(tmp_path, master))
    try:
        assert _name_of(again, patient_id) == NAME
    finally:
        again.db.dispose()


def test_a_database_in_the_clear_is_converted_by_encrypt_database(tmp_path: Path, master: MasterKey) -> None:
    plain = build_context(_settings(tmp_path, None))
    patient_id = _register(plain)
    db_file = _db_file(plain.settings)
    plain.db.dispose()
    server = subprocess.Popen(  # another process with the database open, as a running server has it
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('SELECT count(*) FROM patients').fetchall(); print('open', flush=True); sys.stdin.read()",
         str(db_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "open"
        with pytest.raises(MasterKeyError, match="in use by another process") as busy:  # refused
            dbkeys.encrypt_database(plain.settings.database_url, master)
        assert "使用中" in str(busy.value)
    finally:
        server.communicate("", timeout=30)
    assert dbkeys.file_state(db_file) == "plain" and not dbkeys.key_file(db_file).exists()

    # With a master key but no conversion yet, the site still starts on its database in the clear.
    started = build_context(_settings(tmp_path, master))
    assert started.db.key is None
    started.db.dispose()

    runner = CliRunner()
    result = runner.invoke(cli, ["admin", "keys", "encrypt-database", "--data", str(tmp_path / "data"),
                                 "--master-key", str(master.path)])
    assert result.exit_code == 0, result.output
    assert '"encrypted": true' in result.output
    assert dbkeys.file_state(db_file) == "encrypted"
    for marker in MARKERS:
        assert marker not in db_file.read_bytes()
    assert not db_file.with_name(db_file.name + ".encrypting").exists()

    again = runner.invoke(cli, ["admin", "keys", "encrypt-database", "--data", str(tmp_path / "data"),
                                "--master-key", str(master.path)])
    assert again.exit_code == 0 and '"already": true' in again.output

    ctx = build_context(_settings(tmp_path, master))
    try:
        assert ctx.db.key is not None
        assert _name_of(ctx, patient_id) == NAME
        _register(ctx, chart="AFTER-1")  # and it takes new writes
        with ctx.db.read() as s:
            assert len(s.scalars(select(Patient.id)).all()) == 2
    finally:
        ctx.db.dispose()


def test_an_interrupted_conversion_is_refused_at_start_then_finished_by_running_it_again(
    tmp_path: Path, master: MasterKey
) -> None:
    plain = build_context(_settings(tmp_path, None))
    patient_id = _register(plain)
    plain.db.dispose()
    db_file = _db_file(plain.settings)
    # What a crash after the key file and before the rename leaves: the key file, the database still in the clear
    # and a half-written copy.
    dbkeys.write_key_file(dbkeys.key_file(db_file), master.wrap(secrets.token_bytes(32)))
    db_file.with_name(db_file.name + ".encrypting").write_bytes(os.urandom(5000))
    before = _digest(db_file)
    with pytest.raises(MasterKeyError, match="interrupted") as stopped:
        build_context(_settings(tmp_path, master))
    assert "encrypt-database" in str(stopped.value) and "途中" in str(stopped.value)
    assert _digest(db_file) == before

    assert dbkeys.encrypt_database(plain.settings.database_url, master)["encrypted"] is True
    ctx = build_context(_settings(tmp_path, master))
    try:
        assert _name_of(ctx, patient_id) == NAME
    finally:
        ctx.db.dispose()


def test_rotation_rewraps_the_database_key(site: Context, tmp_path: Path, master: MasterKey) -> None:
    patient_id = _register(site)
    site.db.dispose()
    db_file = _db_file(site.settings)
    database_key = dbkeys.read_key_file(dbkeys.key_file(db_file), master)
    new = MasterKey.create(tmp_path / "keys" / "new.key")
    runner = CliRunner()
    data = ["admin", "--data", str(tmp_path / "data"), "keys"]
    done = runner.invoke(cli, [*data, "rotate", "--old", str(master.path), "--new", str(new.path)])
    assert done.exit_code == 0, done.output
    assert f'"database_key": "{new.key_id}"' in done.output
    assert dbkeys.key_file_master_id(site.settings.database_url) == new.key_id
    # The same database key under the new master key: SQLCipher's pages are not re-encrypted.
    assert dbkeys.read_key_file(dbkeys.key_file(db_file), new) == database_key
    again = runner.invoke(cli, [*data, "rotate", "--old", str(master.path), "--new", str(new.path)])
    assert again.exit_code == 0, again.output  # a second run (after a crash, say) is a no-op

    with pytest.raises(WrongMasterKey):
        build_context(_settings(tmp_path, master))
    ctx = build_context(_settings(tmp_path, new))
    try:
        assert _name_of(ctx, patient_id) == NAME
    finally:
        ctx.db.dispose()


def test_an_encrypted_database_backs_up_and_restores(site: Context, tmp_path: Path, master: MasterKey) -> None:
    patient_id = _register(site)
    target = FolderTarget(tmp_path / "backups")
    manifest = run_backup(site.settings.database_url, site.blobs, target, KeySealer(master, target), tmp_path / "s",
                          database_key=site.db.key)
    _register(site, chart="LATER-1")  # after the snapshot: not in this generation
    assert manifest.tables["patients"] == 1
    assert list(target.keys(dbkeys.KEY_OBJECT_PREFIX))  # the database key went along, wrapped
    for path in target.root.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert NAME.encode() not in raw and b"SQLite format 3" not in raw, path
    assert not list((tmp_path / "s").glob("*.sqlite"))  # the scratch copy is gone

    restored = tmp_path / "restored"
    settings = restore_settings(restored, None, master.path)
    restore(target, KeySealer(master, target), manifest, settings)
    db_file = _db_file(settings)
    assert dbkeys.file_state(db_file) == "encrypted" and dbkeys.key_file(db_file).exists()
    assert NAME.encode() not in db_file.read_bytes()
    revived = build_context(settings)
    try:
        assert _name_of(revived, patient_id) == NAME
        with revived.db.read() as s:
            assert len(s.scalars(select(Patient.id)).all()) == 1
    finally:
        revived.db.dispose()

    # Without the database's key on the target, the restore stops with the reason and puts no database in place.
    saved = {name: (target.root / name).read_bytes() for name in target.keys(dbkeys.KEY_OBJECT_PREFIX)}
    for name in saved:
        (target.root / name).unlink()
    second = restore_settings(tmp_path / "r2", None, master.path)
    with pytest.raises(RestoreError, match="no database key on the target opens it") as refused:
        restore(target, KeySealer(master, target), manifest, second)
    assert "鍵" in str(refused.value)
    assert not (tmp_path / "r2" / "chairside.db").exists()
    for name, raw in saved.items():  # the key back: the same command now restores the site
        (target.root / name).write_bytes(raw)
    restore(target, KeySealer(master, target), manifest, second)
    again = build_context(second)
    try:
        assert _name_of(again, patient_id) == NAME
    finally:
        again.db.dispose()


def test_a_snapshot_without_the_key_is_refused(site: Context, tmp_path: Path, master: MasterKey) -> None:
    _register(site)
    target = FolderTarget(tmp_path / "backups")
    with pytest.raises(Exception, match="is encrypted"):
        run_backup(site.settings.database_url, site.blobs, target, KeySealer(master, target), tmp_path / "s")


def test_litestream_mirrors_are_refused_on_an_encrypted_database(site: Context) -> None:
    with pytest.raises(Problem) as refused:
        create_mirror(site, "Osaka DR")
    assert refused.value.status == 409 and "Litestream" in refused.value.detail and "ミラー" in refused.value.detail


def test_encryption_off_makes_a_new_database_in_the_clear(tmp_path: Path, master: MasterKey) -> None:
    ctx = build_context(_settings(tmp_path, master, encrypt_at_rest=False))
    try:
        assert ctx.db.key is None and dbkeys.file_state(_db_file(ctx.settings)) in ("new", "plain")
    finally:
        ctx.db.dispose()


def test_the_relays_database_is_encrypted(
    make_relay: Callable[..., RelaySetup], media_dir: Path, tmp_path: Path  # noqa: F811 - the fixture
) -> None:
    key = MasterKey.create(tmp_path / "relay-keys" / "master.key")
    setup = make_relay(env={"CHAIRSIDE_MASTER_KEY_FILE": str(key.path)}, start=False)
    url = f"sqlite:///{setup.relay.data_dir / 'chairside.db'}"
    assert dbkeys.encrypt_database(url, key)["encrypted"] is True  # the seeded relay was in the clear
    setup.relay.start()
    with setup.station() as station:
        item = station.upload(media_dir / "clip.mp4", setup.cloud.patient_id)
        assert station.get_patient(str(setup.cloud.patient_id))["name"] == "山田 太郎"
    setup.drained()
    db_file = setup.relay.data_dir / "chairside.db"
    raw = b"".join(p.read_bytes() for p in _database_files(db_file))
    assert "山田 太郎".encode() not in raw and b"SQLite format 3" not in raw
    assert item["filename"].encode() not in raw
    check = Database(url, key=dbkeys.database_key(url, key, create=False))
    try:
        with check.read() as s:
            assert s.scalar(select(Patient.name).where(Patient.id == setup.cloud.patient_id)) == "山田 太郎"
    finally:
        check.dispose()
