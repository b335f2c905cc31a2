"""A primary encrypted at rest (the production default with a master key): its blobs are authenticated as they are
read (AES-GCM, bound to their names), so the backup relies on that instead of hashing again — and still refuses a
damaged one."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chairside.backup.restore import restore, restore_settings
from chairside.backup.run import BlobCorrupt, run_backup
from chairside.backup.seal import KeySealer
from chairside.backup.targets import FolderTarget
from chairside.blobs.crypt import EncryptedBlobStore
from chairside.context import Context, build_context
from chairside.db.models import Media
from chairside.keys import MasterKey
from chairside.settings import Settings
from tests.factories import make_patient, make_tenant


@pytest.fixture
def encrypted(tmp_path: Path) -> Iterator[tuple[Context, MasterKey, dict[str, bytes]]]:
    master = MasterKey.create(tmp_path / "keys" / "master.key")
    settings = Settings.load(environ={}, data_dir=tmp_path / "primary", master_key_file=master.path)
    ctx = build_context(settings)
    assert isinstance(ctx.blobs, EncryptedBlobStore)
    tenant = make_tenant(ctx, clinics=1)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    blobs = {}
    with ctx.db.session() as s:  # rows built directly: the backup reads rows and bytes, it never parses media
        for i in range(3):
            data = b"CHAIRSIDE-MARKER " * 10_000 + os.urandom(200_000 + i)
            sha = hashlib.sha256(data).hexdigest()
            ctx.blobs.put_stream(sha, [data])
            blobs[sha] = data
            s.add(Media(id=uuid.uuid4(), contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0],
                        patient_id=patient.id, kind="video", mime="video/mp4", sha256=sha, size=len(data),
                        filename=f"rec{i}.mp4", captured_at=datetime.now(UTC), source="station"))
    yield ctx, master, blobs
    ctx.db.dispose()


def test_an_encrypted_primary_backs_up_and_restores_byte_for_byte(
    encrypted: tuple[Context, MasterKey, dict[str, bytes]], tmp_path: Path
) -> None:
    ctx, master, blobs = encrypted
    target = FolderTarget(tmp_path / "backups")
    manifest = run_backup(ctx.settings.database_url, ctx.blobs, target, KeySealer(master, target), tmp_path / "s",
                          database_key=ctx.db.key)
    assert {b.sha256: b.size for b in manifest.blobs} == {sha: len(data) for sha, data in blobs.items()}
    for path in target.root.rglob("*"):
        if path.is_file():
            assert b"CHAIRSIDE-MARKER" not in path.read_bytes(), path

    settings = restore_settings(tmp_path / "restored", None)
    settings = Settings.load(environ={}, data_dir=settings.data_dir, blob_url=settings.blob_url,
                             master_key_file=master.path)
    restore(target, KeySealer(master, target), manifest, settings)
    revived = build_context(settings)
    try:
        for sha, data in blobs.items():
            with revived.blobs.open_range(sha) as reader:
                assert b"".join(reader) == data
    finally:
        revived.db.dispose()


def test_a_damaged_encrypted_blob_fails_the_run_and_is_not_sent(
    encrypted: tuple[Context, MasterKey, dict[str, bytes]], tmp_path: Path
) -> None:
    ctx, master, blobs = encrypted
    sha = sorted(blobs)[0]
    assert isinstance(ctx.blobs, EncryptedBlobStore)
    path = ctx.blobs.backend.local_path(sha)
    assert path is not None
    os.chmod(path, 0o600)
    with open(path, "r+b") as handle:
        handle.seek(70_000)  # inside the second cipher chunk
        handle.write(b"\x00" * 8)
    target = FolderTarget(tmp_path / "backups")
    with pytest.raises(BlobCorrupt, match=f"{sha}.*damaged"):
        run_backup(ctx.settings.database_url, ctx.blobs, target, KeySealer(master, target), tmp_path / "s", workers=1,
                   database_key=ctx.db.key)
    assert not any(p.name == sha for p in target.root.rglob("*"))
