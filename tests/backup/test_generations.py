"""Generations to a folder target: list, verify (and what it catches), restore and its resume, dedupe, notices.

A run killed mid-way: test_kill.py (a real process and SIGKILL)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from chairside.backup import catalog
from chairside.backup.manifest import blob_key, manifest_key
from chairside.backup.restore import RestoreError, restore, restore_settings
from chairside.backup.run import run_backup
from chairside.backup.seal import KeySealer, PlainSealer
from chairside.backup.targets import FolderTarget, TargetError
from chairside.blobs import BlobInfo, BlobReader, BlobStore, FilesystemBlobStore
from chairside.client import Client
from chairside.context import Context
from chairside.keys import MasterKey
from tests.conftest import LiveServer
from tests.factories import Tenant

from .conftest import SQLITE_ONLY
from .helpers import SMALL, Site, backup, seed_site


@pytest.fixture
def site(ctx: Context, server: LiveServer, api: Client, tenant: Tenant, media_dir: Path) -> Site:
    return seed_site(ctx, api, tenant, media_dir, SMALL)


@pytest.fixture
def master(tmp_path: Path) -> MasterKey:
    return MasterKey.create(tmp_path / "keys" / "master.key")


class CountingStore(BlobStore):
    """The primary's blob store, counting every read (the proof that an unchanged generation reads no blob)."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def put_stream(self, sha256: str, chunks: Iterable[bytes]):  # type: ignore[no-untyped-def]
        return self.inner.put_stream(sha256, chunks)

    def put_file(self, sha256: str, path: Path, *, verified: bool = False):  # type: ignore[no-untyped-def]
        return self.inner.put_file(sha256, path, verified=verified)

    def open_range(self, sha256: str, start: int = 0, length: int | None = None, *,
                   chunk_size: int = 1 << 20) -> BlobReader:
        self.reads.append(sha256)
        return self.inner.open_range(sha256, start, length, chunk_size=chunk_size)

    def stat(self, sha256: str):  # type: ignore[no-untyped-def]
        return self.inner.stat(sha256)

    def delete(self, sha256: str) -> None:
        self.inner.delete(sha256)

    def iter_hashes(self) -> Iterator[str]:
        return self.inner.iter_hashes()

    def local_path(self, sha256: str) -> Path | None:
        return self.inner.local_path(sha256)


@SQLITE_ONLY
def test_a_generation_holds_every_blob_and_verifies_and_restores(
    ctx: Context, site: Site, tmp_path: Path, master: MasterKey, new_database: str | None
) -> None:
    target = tmp_path / "backups"
    env = {"CHAIRSIDE_MASTER_KEY_FILE": str(master.path)}
    taken = backup("run", "--data", str(ctx.settings.data_dir), "--database-url", ctx.settings.database_url,
                   "--to", str(target), env=env)
    assert taken.exit_code == 0, taken.stderr
    listed = backup("list", "--to", f"file://{target}").json()
    [generation] = listed["generations"]
    assert generation["generation"] == taken.json()["generation"]
    assert generation["blobs"] >= len(site.media) and generation["rows"] > 0
    manifest = catalog.load(FolderTarget(target), generation["generation"])
    assert set(site.media.values()) <= {b.sha256 for b in manifest.blobs}
    assert manifest.tables["patients"] == len(site.patients) and manifest.schema_revision

    # Nothing in the target is readable without the master key: no patient name, no media bytes.
    names = [name.encode() for name in site.patients.values()]
    for path in target.rglob("*"):
        if path.is_file() and not path.name.endswith(".json"):
            content = path.read_bytes()
            assert not any(name in content for name in names), path
            assert b"ftyp" not in content[:64] and b"JFIF" not in content[:64], path

    assert backup("verify", "--to", str(target), "--sample", "0.5", env=env).exit_code == 0
    database = [] if new_database is None else ["--database-url", new_database]
    restored = backup("restore", "--from", str(target), "--generation", "latest", "--data",
                      str(tmp_path / "new"), *database, env=env)
    assert restored.exit_code == 0, restored.stderr
    assert restored.json()["restored_blobs"] == len(manifest.blobs)


@SQLITE_ONLY
def test_verify_names_a_tampered_or_missing_blob_and_fails(
    ctx: Context, site: Site, tmp_path: Path, master: MasterKey
) -> None:
    target = FolderTarget(tmp_path / "backups")
    manifest = run_backup(ctx.settings.database_url, ctx.blobs, target, KeySealer(master, target), tmp_path / "s")
    env = {"CHAIRSIDE_MASTER_KEY_FILE": str(master.path)}
    first, second = sorted(manifest.blobs, key=lambda b: b.size)[-2:]
    flipped = target.root / blob_key(first.sha256)
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit, in the middle of a chunk
    os.chmod(flipped, 0o600)
    flipped.write_bytes(bytes(raw))
    (target.root / blob_key(second.sha256)).unlink()

    checked = backup("verify", "--to", str(target.root), "--generation", manifest.generation, env=env)
    assert checked.exit_code == 1
    assert first.sha256 in checked.stderr and second.sha256 in checked.stderr
    assert not checked.json()["ok"] and len(checked.json()["mismatches"]) == 2

    # A wrong master key is named, not a pile of garbage.
    other = MasterKey.create(tmp_path / "other.key")
    wrong = backup("verify", "--to", str(target.root), "--master-key", str(other.path))
    assert wrong.exit_code == 1 and master.key_id in wrong.stdout


@SQLITE_ONLY
def test_an_unchanged_site_next_generation_reads_no_blob(ctx: Context, site: Site, tmp_path: Path) -> None:
    target = FolderTarget(tmp_path / "backups")
    first_store = CountingStore(ctx.blobs)
    first = run_backup(ctx.settings.database_url, first_store, target, PlainSealer(), tmp_path / "s")
    assert len(first_store.reads) == len(first.blobs) > 0
    again = CountingStore(ctx.blobs)
    second = run_backup(ctx.settings.database_url, again, target, PlainSealer(), tmp_path / "s")
    assert again.reads == [] and second.new_blobs == 0 and second.blobs == first.blobs
    assert len(catalog.generations(target)) == 2


@SQLITE_ONLY
def test_a_damaged_source_blob_is_not_backed_up_as_good(ctx: Context, site: Site, tmp_path: Path) -> None:
    sha = next(iter(site.media.values()))
    path = ctx.blobs.local_path(sha)
    assert path is not None
    os.chmod(path, 0o600)
    with open(path, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff" * 16)
    target = FolderTarget(tmp_path / "backups")
    with pytest.raises(Exception, match=sha):
        run_backup(ctx.settings.database_url, ctx.blobs, target, PlainSealer(), tmp_path / "s", workers=1)
    assert catalog.generations(target) == []
    assert not (target.root / blob_key(sha)).exists()


@SQLITE_ONLY
def test_restore_refuses_a_folder_that_holds_a_site_and_resumes_its_own(
    ctx: Context, site: Site, tmp_path: Path
) -> None:
    target = FolderTarget(tmp_path / "backups")
    manifest = run_backup(ctx.settings.database_url, ctx.blobs, target, PlainSealer(), tmp_path / "s")
    with pytest.raises(RestoreError, match="already holds a site"):
        restore(target, PlainSealer(), manifest, restore_settings(ctx.settings.data_dir, ctx.settings.database_url))

    class Flaky(FolderTarget):
        reads = 0

        def read(self, key: str, *, head: int = 0, piece: int = 1 << 20) -> Iterator[bytes]:
            if key.startswith("blobs/"):
                Flaky.reads += 1
                if Flaky.reads == 3:
                    raise TargetError("connection reset")
            return super().read(key, head=head, piece=piece)

    new = restore_settings(tmp_path / "new", None)
    with pytest.raises(TargetError):
        restore(Flaky(target.root), PlainSealer(), manifest, new, workers=1)
    assert (tmp_path / "new" / ".restore-in-progress").exists()
    report = restore(target, PlainSealer(), manifest, new, workers=1)  # the same command again
    assert 0 < report.restored_blobs <= len(manifest.blobs) - 2  # what the first attempt stored is kept
    stored = FilesystemBlobStore(tmp_path / "new" / "blobs")
    assert all(stored.stat(b.sha256) == BlobInfo(b.sha256, b.size) for b in manifest.blobs)
    assert not (tmp_path / "new" / ".restore-in-progress").exists()
    assert json.loads((tmp_path / "new" / "restored-from.json").read_text())["generation"] == manifest.generation


@SQLITE_ONLY
def test_a_failed_run_raises_a_notice_and_check_reports_a_missed_generation(
    ctx: Context, site: Site, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the backup folder should be")
    failed = backup("run", "--data", str(ctx.settings.data_dir), "--database-url", ctx.settings.database_url,
                    "--to", str(blocked))
    assert failed.exit_code != 0
    notices = (ctx.settings.data_dir / "backup" / "notices.jsonl").read_text().splitlines()
    assert json.loads(notices[-1])["kind"] == "failed"

    empty = tmp_path / "empty-target"
    missed = backup("check", "--data", str(ctx.settings.data_dir), "--to", str(empty))
    assert missed.exit_code == 1
    assert json.loads((ctx.settings.data_dir / "backup" / "notices.jsonl").read_text().splitlines()[-1])["kind"] \
        == "missed"
    taken = backup("run", "--data", str(ctx.settings.data_dir), "--database-url", ctx.settings.database_url,
                   "--to", str(empty))
    assert taken.exit_code == 0, taken.stderr
    assert backup("check", "--data", str(ctx.settings.data_dir), "--to", str(empty)).exit_code == 0
    assert backup("check", "--data", str(ctx.settings.data_dir), "--to", str(empty), "--max-age-h", "0").exit_code == 1
    assert manifest_key(taken.json()["generation"]) in {str(p.relative_to(empty)) for p in empty.rglob("*.json")}
