"""Master key files, data keys in the database, rotation, and a wrong or missing key at start."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from chairside.blobs.crypt import EncryptedBlobStore
from chairside.cli import app as cli
from chairside.context import Context, build_context
from chairside.db.models import DataKey
from chairside.keys import MasterKey, MasterKeyError, WrongMasterKey
from chairside.keys.keyring import Keyring, contract_scope, rotate
from chairside.settings import Settings

BLOB = b"\x00\x00\x00\x20ftypisom" + os.urandom(200_000)
SHA = hashlib.sha256(BLOB).hexdigest()


# -- the key file --------------------------------------------------------------------------------


def test_a_key_file_round_trips_and_wraps(tmp_path: Path) -> None:
    key = MasterKey.create(tmp_path / "k")
    assert (os.stat(tmp_path / "k").st_mode & 0o777) == 0o600
    again = MasterKey.load(tmp_path / "k")
    assert again.key_id == key.key_id
    wrapped = key.wrap(b"d" * 32)
    assert b"d" * 32 not in wrapped and again.unwrap(wrapped) == b"d" * 32


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    MasterKey.create(tmp_path / "k")
    before = (tmp_path / "k").read_bytes()
    with pytest.raises(MasterKeyError, match="never overwritten"):
        MasterKey.create(tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == before


@pytest.mark.parametrize("problem", ["missing", "group-readable", "damaged", "not-a-key"])
def test_a_bad_key_file_is_a_clear_error(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "k"
    if problem != "missing":
        MasterKey.create(path)
    if problem == "group-readable":
        os.chmod(path, 0o640)
    if problem == "damaged":
        text = path.read_text()
        path.write_text(text[:-5] + "AAAA\n")
    if problem == "not-a-key":
        path.write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(MasterKeyError, match={"missing": "does not exist", "group-readable": "chmod 600",
                                              "damaged": "damaged", "not-a-key": "damaged"}[problem]):
        MasterKey.load(path)


def test_unwrapping_with_another_master_key_names_both(tmp_path: Path) -> None:
    a, b = MasterKey.create(tmp_path / "a"), MasterKey.create(tmp_path / "b")
    with pytest.raises(WrongMasterKey, match=f"wrapped by master key {a.key_id}.*loaded master key is {b.key_id}"):
        b.unwrap(a.wrap(os.urandom(32)))
    forged = bytearray(a.wrap(os.urandom(32)))
    forged[-1] ^= 1
    with pytest.raises(WrongMasterKey, match="altered"):
        a.unwrap(bytes(forged))


# -- a context with encryption at rest -----------------------------------------------------------


def data_keys(ctx: Context) -> list[tuple[str, str, bytes]]:
    with ctx.db.read() as s:
        return [(r.id, r.master_key_id, r.wrapped) for r in s.scalars(select(DataKey).order_by(DataKey.id))]


def rebuilt(settings: Settings, **changes: object) -> Context:
    return build_context(replace(settings, **changes))  # type: ignore[arg-type]


def test_the_context_encrypts_with_the_site_key_made_at_start(ctx: Context) -> None:
    assert isinstance(ctx.blobs, EncryptedBlobStore) and ctx.keys is not None
    made_at_start = data_keys(ctx)
    ctx.blobs.put_stream(SHA, [BLOB])
    [(key_id, master_id, _wrapped)] = data_keys(ctx)
    assert made_at_start == data_keys(ctx)
    assert master_id == ctx.keys.master_key_id
    path = ctx.blobs.backend.local_path(SHA)
    assert path is not None and BLOB[:64] not in path.read_bytes() and key_id.encode() in path.read_bytes()[:64]


def test_a_contract_scope_gets_its_own_data_key(ctx: Context) -> None:
    import uuid

    assert isinstance(ctx.blobs, EncryptedBlobStore)
    ctx.blobs.put_stream(SHA, [BLOB])
    other = b"another contract's photo" * 1000
    with contract_scope(uuid.uuid4()):
        ctx.blobs.put_stream(hashlib.sha256(other).hexdigest(), [other])
    with ctx.db.read() as s:
        scopes = sorted(s.scalars(select(DataKey.scope)))
    assert scopes[-1] == "site" and scopes[0].startswith("contract:") and len(scopes) == 2
    assert b"".join(ctx.blobs.open_range(hashlib.sha256(other).hexdigest())) == other


def test_a_wrong_master_key_stops_the_start_and_changes_nothing(ctx: Context, settings: Settings,
                                                                 key_dir: Path) -> None:
    ctx.blobs.put_stream(SHA, [BLOB])
    before = data_keys(ctx)
    stranger = MasterKey.create(key_dir / "stranger.key")
    with pytest.raises(WrongMasterKey, match="nothing was changed"):
        rebuilt(settings, master_key_file=stranger.path)
    assert data_keys(ctx) == before


def test_a_missing_master_key_stops_the_start_of_encrypted_data(ctx: Context, settings: Settings) -> None:
    ctx.blobs.put_stream(SHA, [BLOB])
    before = data_keys(ctx)
    with pytest.raises(MasterKeyError, match="no master key is configured"):
        rebuilt(settings, master_key_file=None)
    assert settings.master_key_file is not None
    gone = settings.master_key_file.with_name("moved-away.key")
    with pytest.raises(MasterKeyError, match="does not exist"):
        rebuilt(settings, master_key_file=gone)
    assert data_keys(ctx) == before


def test_rotation_rewraps_data_keys_and_leaves_every_blob_as_it_is(ctx: Context, settings: Settings,
                                                                   master_key: MasterKey, key_dir: Path) -> None:
    ctx.blobs.put_stream(SHA, [BLOB])
    assert isinstance(ctx.blobs, EncryptedBlobStore)
    path = ctx.blobs.backend.local_path(SHA)
    assert path is not None
    stored_before = path.read_bytes()
    new = MasterKey.create(key_dir / "new.key")
    assert rotate(ctx.db, master_key, new) == 1
    assert rotate(ctx.db, master_key, new) == 0  # a second run is a no-op
    assert {m for _, m, _ in data_keys(ctx)} == {new.key_id}
    assert path.read_bytes() == stored_before  # no media re-encrypted
    with pytest.raises(WrongMasterKey):
        rebuilt(settings)  # the old key no longer opens the data
    fresh = rebuilt(settings, master_key_file=new.path)
    try:
        assert b"".join(fresh.blobs.open_range(SHA)) == BLOB
    finally:
        fresh.db.dispose()


def test_rotation_with_the_wrong_old_key_changes_nothing(ctx: Context, key_dir: Path) -> None:
    ctx.blobs.put_stream(SHA, [BLOB])
    before = data_keys(ctx)
    wrong, new = MasterKey.create(key_dir / "wrong.key"), MasterKey.create(key_dir / "new.key")
    with pytest.raises(WrongMasterKey, match="nothing was changed"):
        rotate(ctx.db, wrong, new)
    assert data_keys(ctx) == before


def test_a_keyring_unwraps_a_data_key_made_elsewhere(ctx: Context, master_key: MasterKey) -> None:
    ctx.blobs.put_stream(SHA, [BLOB])
    [(key_id, _, _)] = data_keys(ctx)
    other_process = Keyring(ctx.db, master_key)
    assert ctx.keys is not None and other_process.lookup(key_id) == ctx.keys.lookup(key_id)


# -- the commands -----------------------------------------------------------------------------------


def test_keys_create_and_rotate_commands(ctx: Context, settings: Settings, master_key: MasterKey,
                                         key_dir: Path) -> None:
    ctx.blobs.put_stream(SHA, [BLOB])
    runner = CliRunner()
    data = ["admin", "--data", str(settings.data_dir), "--database-url", settings.database_url, "keys"]
    inside = runner.invoke(cli, [*data, "create", "--out", str(settings.data_dir / "master.key")])
    assert inside.exit_code == 2 and "must not be stored in the data folder" in inside.output
    assert not (settings.data_dir / "master.key").exists()
    made = runner.invoke(cli, [*data, "create", "--out", str(key_dir / "next.key")])
    assert made.exit_code == 0, made.output
    assert MasterKey.load(key_dir / "next.key").key_id in made.output
    MasterKey.create(key_dir / "wrong.key")
    wrong = runner.invoke(cli, [*data, "rotate", "--old", str(key_dir / "wrong.key"), "--new",
                                str(key_dir / "next.key")])
    assert wrong.exit_code == 2 and "nothing was changed" in wrong.output
    done = runner.invoke(cli, [*data, "rotate", "--old", str(master_key.path), "--new", str(key_dir / "next.key")])
    assert done.exit_code == 0, done.output
    assert '"rewrapped": 1' in done.output
    fresh = rebuilt(settings, master_key_file=key_dir / "next.key")
    try:
        assert b"".join(fresh.blobs.open_range(SHA, 100, 50)) == BLOB[100:150]
    finally:
        fresh.db.dispose()


def test_serve_with_a_wrong_key_exits_with_the_reason_and_writes_nothing(ctx: Context, settings: Settings,
                                                                          key_dir: Path) -> None:
    ctx.blobs.put_stream(SHA, [BLOB])
    before = data_keys(ctx)
    stranger = MasterKey.create(key_dir / "stranger.key")
    runner = CliRunner()
    args = ["--data", str(settings.data_dir), "--database-url", settings.database_url, "--port", "1"]
    result = runner.invoke(cli, ["cloud", "serve", *args], env={"CHAIRSIDE_MASTER_KEY_FILE": str(stranger.path)})
    assert result.exit_code == 2, result.output
    assert stranger.key_id in result.output and "nothing was changed" in result.output
    missing = runner.invoke(cli, ["relay", "serve", *args, "--upstream", "https://cloud.example", "--token", "t"],
                            env={"CHAIRSIDE_MASTER_KEY_FILE": "", "CHAIRSIDE_CA_BUNDLE": ""})
    assert missing.exit_code == 2 and "no master key is configured" in missing.output, missing.output
    assert data_keys(ctx) == before
