"""Ransomware: the primary's data is destroyed, the attacker holds the server's backup credentials, and still
every acknowledged media item, patient, drawing and audit row comes back from the locked generations.

Real engines throughout: the app on loopback with its SQLite file or PostgreSQL database, uploads over tus,
a SeaweedFS S3 server enforcing Object Lock (COMPLIANCE), pg_dump/pg_restore, AES-256-GCM sealing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import secrets
import uuid
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from chairside.backup import catalog
from chairside.backup.retention import Policy
from chairside.backup.run import run_backup
from chairside.backup.seal import PlainSealer
from chairside.backup.snapshot import libpq_url
from chairside.backup.targets import S3Target
from chairside.client import Client
from chairside.context import Context, build_context
from chairside.db.models import Base
from chairside.keys import MasterKey
from tests.conftest import LiveServer
from tests.factories import Tenant
from tests.seaweed import SeaweedS3

from .helpers import backup, seed_site


def _ransom(ctx: Context) -> None:
    """Encrypt-in-place the way ransomware does: every file of the data folder overwritten, the database gone."""
    ctx.db.dispose()
    for path in ctx.settings.data_dir.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o600)
            size = path.stat().st_size
            with open(path, "r+b") as handle:
                handle.write(secrets.token_bytes(min(size, 1 << 20)) or b"\0")
            path.rename(path.with_name(path.name + ".locked"))
    if not ctx.settings.database_url.startswith("sqlite"):
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with psycopg.connect(libpq_url(ctx.settings.database_url), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {tables} CASCADE")


def _attack(seaweed: SeaweedS3, bucket: str) -> tuple[int, int]:
    """With the server's own credentials: try to delete and shorten every locked version; overwrite every key
    and hide it behind a delete marker. Answers (versions attacked, deletions refused)."""
    client = seaweed.client()
    versions = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions += [(v["Key"], v["VersionId"]) for v in page.get("Versions", ())]
    refused = 0
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    for key, version in versions:
        try:
            client.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
        except ClientError as exc:
            refused += exc.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError):
            client.put_object_retention(Bucket=bucket, Key=key, VersionId=version,
                                        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": soon})
        client.put_object(Bucket=bucket, Key=key, Body=b"YOUR FILES ARE ENCRYPTED. PAY 10 BTC.")
        client.delete_object(Bucket=bucket, Key=key)
    client.close()
    return len(versions), refused


def test_a_site_destroyed_by_ransomware_comes_back_whole_from_the_locked_backup(
    ctx: Context, server: LiveServer, api: Client, tenant: Tenant, media_dir: Path, seaweed_s3: SeaweedS3,
    tmp_path: Path, new_database: str | None,
) -> None:
    acknowledged = seed_site(ctx, api, tenant, media_dir)
    bucket = seaweed_s3.make_bucket(f"backup-{uuid.uuid4().hex[:12]}", object_lock=True)
    target = f"s3://{bucket}/clinic?endpoint_url={seaweed_s3.endpoint_url}"
    master = MasterKey.create(tmp_path / "keys" / "master.key")  # kept apart from the data folder
    env = {**seaweed_s3.env(), "CHAIRSIDE_MASTER_KEY_FILE": str(master.path)}
    data = ctx.settings.data_dir

    taken = backup("run", "--data", str(data), "--database-url", ctx.settings.database_url, "--to", target, env=env)
    assert taken.exit_code == 0, taken.stderr
    generation = taken.json()["generation"]
    assert taken.json()["encryption"] == "aes-256-gcm-64k"

    # Retention cannot reach locked generations either: with more generations than the policy keeps, none goes.
    s3 = seaweed_s3.client()
    locked = S3Target(bucket, "clinic", client=s3, lock_days=1)
    for _ in range(3):
        run_backup(ctx.settings.database_url, ctx.blobs, locked, PlainSealer(), tmp_path / "scratch")
    assert catalog.prune(locked, Policy(daily=0, weekly=0, monthly=0)) == []
    assert len(catalog.generations(locked)) == 4
    s3.close()

    _ransom(ctx)
    attacked, refused = _attack(seaweed_s3, bucket)
    assert attacked > len(acknowledged.media) and refused == attacked  # every locked version survived

    new_site = tmp_path / "restored"
    args = ["restore", "--from", target, "--data", str(new_site)]
    if new_database is not None:
        args += ["--database-url", new_database]
    args += ["--generation", generation]  # the id the operator logged, not a "latest" an attacker could fake
    restored = backup(*args, env=env)
    assert restored.exit_code == 0, restored.stderr
    assert restored.json()["generation"] == generation
    checked = backup("verify", "--to", target, "--generation", generation, env=env)
    assert checked.exit_code == 0, checked.stderr

    from chairside.backup.restore import restore_settings

    settings = dataclasses.replace(restore_settings(new_site, new_database), master_key_file=master.path)
    revived = build_context(settings)
    try:
        with revived.db.read() as s:
            patients = {str(r.id): r.name for r in s.execute(text("SELECT id, name FROM patients"))}
            drawings = {str(r.id) for r in s.execute(text("SELECT id FROM annotations"))}
            audit = [(r.id, r.action) for r in s.execute(text("SELECT id, action FROM audit_events ORDER BY id"))]
        assert {str(uuid.UUID(str(k))) for k in patients} == set(acknowledged.patients)
        assert sorted(patients.values()) == sorted(acknowledged.patients.values())
        assert {str(uuid.UUID(d)) for d in drawings} == acknowledged.annotations
        assert audit[: len(acknowledged.audit)] == acknowledged.audit
        with LiveServer(revived) as live, Client(live.url, tenant.token) as client:
            for media_id, sha in acknowledged.media.items():
                digest = hashlib.sha256(b"".join(client.iter_content(media_id))).hexdigest()
                assert digest == sha, media_id
            photo_drawings = [client.get_media(m) for m in acknowledged.media]
            assert len(photo_drawings) == len(acknowledged.media)
            for patient_id in acknowledged.patients:
                assert client.get_patient(patient_id)["name"] == acknowledged.patients[patient_id]
    finally:
        revived.db.dispose()
