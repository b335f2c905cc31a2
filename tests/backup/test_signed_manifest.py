"""Signed manifests: a generation's manifest carries an HMAC that only the master key's holder can make, and
`verify`, `restore` and `drill` refuse one whose signature fails, naming it, before reading or writing anything.

The tampering is what someone who can write to the target (but holds no master key) would do: change a blob's
SHA-256, drop a blob line (a restore would then silently leave that recording out), strip the signature, or sign
again under a key of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from chairside.backup import catalog, signature
from chairside.backup.drill import drill
from chairside.backup.manifest import Manifest, manifest_key
from chairside.backup.restore import RestoreError, restore
from chairside.backup.run import run_backup
from chairside.backup.seal import KeySealer, PlainSealer
from chairside.backup.signature import ManifestSignatureError, check
from chairside.backup.targets import FolderTarget
from chairside.backup.verify import verify
from chairside.blobs.crypt import HEADER_SIZE, EncryptedBlobStore, parse_header
from chairside.context import Context, build_context
from chairside.db.models import DataKey, Media
from chairside.keys import MasterKey
from chairside.keys.keyring import scope_of
from chairside.settings import Settings
from tests.backup.helpers import backup
from tests.factories import make_patient, make_tenant


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Context, MasterKey, uuid.UUID, dict[str, bytes]]]:
    master = MasterKey.create(tmp_path / "keys" / "master.key")
    # SQLite only: the subject is the manifest, not the database engine.
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "primary", master_key_file=master.path))
    assert isinstance(ctx.blobs, EncryptedBlobStore)
    tenant = make_tenant(ctx, clinics=1)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    blobs = {}
    with ctx.db.session() as s:  # rows built directly: the backup reads rows and bytes, it never parses media
        for i in range(3):
            data = os.urandom(150_000 + i)
            sha = hashlib.sha256(data).hexdigest()
            ctx.blobs.put_stream(sha, [data])
            blobs[sha] = data
            s.add(Media(id=uuid.uuid4(), contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0],
                        patient_id=patient.id, kind="video", mime="video/mp4", sha256=sha, size=len(data),
                        filename=f"rec{i}.mp4", captured_at=datetime.now(UTC), source="station"))
    yield ctx, master, tenant.contract_id, blobs
    ctx.db.dispose()


def take(ctx: Context, master: MasterKey | None, target: FolderTarget, scratch: Path) -> Manifest:
    sealer = KeySealer(master, target) if master is not None else PlainSealer()
    return run_backup(ctx.settings.database_url, ctx.blobs, target, sealer, scratch,
                      **_database_key(ctx))


def _database_key(ctx: Context) -> dict[str, Any]:
    """`database_key=` where run_backup takes it (an encrypted database, keys/database.py), else nothing."""
    key = getattr(ctx.db, "key", None)
    return {"database_key": key} if key is not None else {}


def tamper(target: FolderTarget, generation: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = target.root / manifest_key(generation)
    data = json.loads(path.read_bytes())
    change(data)
    path.write_text(json.dumps(data))


def drop_line(data: dict[str, Any]) -> None:
    data["blobs"].pop()


def change_sha(data: dict[str, Any]) -> None:
    data["blobs"][0][0] = hashlib.sha256(b"not the recording").hexdigest()


def unsign(data: dict[str, Any]) -> None:
    data["signature"] = data["signing_key_id"] = None


@pytest.fixture
def generation(site: tuple[Context, MasterKey, uuid.UUID, dict[str, bytes]],
               tmp_path: Path) -> tuple[FolderTarget, Manifest]:
    ctx, master, _, _ = site
    target = FolderTarget(tmp_path / "backups")
    return target, take(ctx, master, target, tmp_path / "scratch")


def test_a_good_manifest_verifies_and_restores_under_the_contracts_key(
    site: tuple[Context, MasterKey, uuid.UUID, dict[str, bytes]], generation: tuple[FolderTarget, Manifest],
    tmp_path: Path,
) -> None:
    _, master, contract_id, blobs = site
    target, made = generation
    stored = json.loads((target.root / manifest_key(made.generation)).read_bytes())
    assert len(stored["signature"]) == 64 and stored["signing_key_id"]
    manifest = catalog.load(target, made.generation)
    check(manifest, KeySealer(master, target))  # a fresh reader: the key comes from the target, unwrapped
    report = verify(target, KeySealer(master, target), manifest)
    assert report.ok and report.signature_ok, report.mismatches
    assert report.checked_blobs == len(blobs)

    settings = Settings.load(environ={}, data_dir=tmp_path / "restored", blob_url=str(tmp_path / "restored" / "blobs"),
                             master_key_file=master.path)
    restore(target, KeySealer(master, target), manifest, settings)
    revived = build_context(settings)
    try:
        with revived.db.read() as s:
            (key,) = s.scalars(select(DataKey.id).where(DataKey.scope == scope_of(contract_id))).all()
        assert isinstance(revived.blobs, EncryptedBlobStore)
        for sha, data in blobs.items():
            assert b"".join(revived.blobs.open_range(sha)) == data
            path = revived.blobs.backend.local_path(sha)
            assert path is not None
            assert parse_header(path.read_bytes()[:HEADER_SIZE])[0] == key  # re-encrypted under its contract's key
    finally:
        revived.db.dispose()


@pytest.mark.parametrize("change", [change_sha, drop_line, unsign], ids=["changed-sha256", "dropped-line", "unsigned"])
def test_a_tampered_manifest_is_refused_by_verify_restore_and_drill(
    site: tuple[Context, MasterKey, uuid.UUID, dict[str, bytes]], generation: tuple[FolderTarget, Manifest],
    tmp_path: Path, change: Callable[[dict[str, Any]], None],
) -> None:
    _, master, _, _ = site
    target, made = generation
    tamper(target, made.generation, change)
    manifest = catalog.load(target, made.generation)
    name = manifest_key(made.generation)

    with pytest.raises(ManifestSignatureError, match=name):
        check(manifest, KeySealer(master, target))
    report = verify(target, KeySealer(master, target), manifest)
    assert not report.ok and report.checked_blobs == 0  # nothing read on the word of a forged list
    assert len(report.mismatches) == 1 and name in report.mismatches[0]

    new_site = Settings.load(environ={}, data_dir=tmp_path / "restored", master_key_file=master.path)
    with pytest.raises(RestoreError, match=name):
        restore(target, KeySealer(master, target), manifest, new_site)
    assert not (tmp_path / "restored").exists()  # refused before anything was written

    def never(_ctx: Context) -> AbstractContextManager[str]:
        raise AssertionError("the drill started the app on a refused generation")

    drilled = drill(target, KeySealer(master, target), manifest, tmp_path / "drill", never,
                    master_key_file=master.path)
    assert not drilled.ok and drilled.error is not None and name in drilled.error

    run = backup("verify", "--to", str(target.root), "--generation", made.generation, "--master-key", str(master.path))
    assert run.exit_code == 1
    assert name in run.stderr and "改ざん" in run.stderr


def test_a_manifest_signed_again_under_anothers_key_is_refused(
    site: tuple[Context, MasterKey, uuid.UUID, dict[str, bytes]], generation: tuple[FolderTarget, Manifest],
    tmp_path: Path,
) -> None:
    """Whoever can write to the target can add a wrapped key of a master key of their own: it does not open."""
    _, master, _, _ = site
    target, made = generation
    forger = MasterKey.create(tmp_path / "forger" / "master.key")
    forged_target = FolderTarget(tmp_path / "forged")  # the forger's own keys/, then copied over
    forging = KeySealer(forger, forged_target)
    manifest = catalog.load(target, made.generation)
    manifest.blobs.pop()
    signature.sign(manifest, forging)
    for key in forged_target.keys("keys/"):
        target.put(key, forged_target.read(key))
    target.put(manifest_key(made.generation), [manifest.to_json()])  # a folder target lets it be replaced
    with pytest.raises(ManifestSignatureError, match=manifest_key(made.generation)):
        check(catalog.load(target, made.generation), KeySealer(master, target))


def test_an_unencrypted_generation_is_unsigned_and_still_restores(
    site: tuple[Context, MasterKey, uuid.UUID, dict[str, bytes]], tmp_path: Path,
) -> None:
    ctx, _, _, _ = site
    plain = FolderTarget(tmp_path / "plain")
    made = take(ctx, None, plain, tmp_path / "scratch")
    manifest = catalog.load(plain, made.generation)
    assert manifest.signature is None and manifest.summary()["signed"] is False
    check(manifest, PlainSealer())  # nothing to sign with: accepted as what it is
    assert verify(plain, PlainSealer(), manifest).ok
    # …but an encrypted generation turned into one that claims to be unsigned is not (test above: "unsigned").
