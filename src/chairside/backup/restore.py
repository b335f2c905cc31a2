"""Restoring a whole site from a generation into a new data folder (and, for PostgreSQL, a new database).

Order: the metadata (checked against the manifest's SHA-256 before it is put in place), then every blob
(each one's SHA-256 checked by the blob store as it is written), then the row counts against the
manifest. A restore that stops half way can be run again with the same arguments: the marker file
``.restore-in-progress`` names the generation, and blobs already restored are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import or_, select, text

from chairside.context import build_context
from chairside.db.engine import Database, is_sqlite, make_engine
from chairside.db.models import Media, MediaDerivative
from chairside.keys import MasterKey, database
from chairside.keys.keyring import contract_blobs
from chairside.settings import Settings

from . import signature
from .manifest import BlobEntry, Manifest, blob_key, metadata_key
from .run import _parallel
from .seal import Sealer
from .signature import ManifestSignatureError
from .snapshot import SnapshotError, restore_postgres
from .targets import Target

__all__ = ["MARKER", "RestoreError", "RestoreReport", "restore", "restore_settings"]

MARKER = ".restore-in-progress"


class RestoreError(Exception):
    """The restore was refused or found the backup wrong (message for the operator, ja + en)."""


@dataclass
class RestoreReport:
    generation: str
    data_dir: Path
    database_url: str
    blobs: int = 0
    restored_blobs: int = 0
    restored_bytes: int = 0
    tables: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "data_dir": str(self.data_dir),
            "database": self.database_url.split("://", 1)[0],
            "blobs": self.blobs,
            "restored_blobs": self.restored_blobs,
            "restored_bytes": self.restored_bytes,
            "rows": sum(self.tables.values()),
        }


def restore_settings(data_dir: Path, database_url: str | None, master_key_file: Path | None = None) -> Settings:
    """The new site's settings: its own folder and blob folder, whatever the environment says of the old one;
    its blobs are encrypted at rest again under ``master_key_file`` (default: the setting)."""
    return Settings.load(data_dir=data_dir, database_url=database_url, blob_url=str(data_dir / "blobs"),
                         master_key_file=master_key_file)


def _sqlite_file(url: str) -> Path:
    return Path(url.split("///", 1)[-1])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fetch_metadata(target: Target, sealer: Sealer, manifest: Manifest, out: Path) -> None:
    key = metadata_key(manifest.generation)
    hasher = hashlib.sha256()
    size = 0
    with open(out, "wb") as handle:
        for chunk in sealer.unseal(target.read(key, head=sealer.layout[0], piece=sealer.layout[1]), key):
            hasher.update(chunk)
            size += len(chunk)
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    if size != manifest.metadata_size or hasher.hexdigest() != manifest.metadata_sha256:
        out.unlink(missing_ok=True)
        raise RestoreError(
            f"世代 {manifest.generation} のメタデータがマニフェストと一致しません / the metadata of generation "
            f"{manifest.generation} does not match its manifest (sha256 {hasher.hexdigest()}, {size} bytes)"
        )


def _restore_metadata(target: Target, sealer: Sealer, manifest: Manifest, settings: Settings) -> None:
    url = settings.database_url
    scratch = settings.data_dir / ".restore-metadata"
    if manifest.database == "sqlite":
        if not is_sqlite(url):
            raise RestoreError(
                "この世代は SQLite のバックアップです。--database-url を付けずに復元してください / this generation "
                "holds a SQLite database: restore it without --database-url"
            )
        db_file = _sqlite_file(url)
        db_file.parent.mkdir(parents=True, exist_ok=True)
        _fetch_metadata(target, sealer, manifest, scratch)
        if database.file_state(scratch) == "encrypted":  # SQLCipher: its key file first (keys/database.py)
            _restore_database_key(target, settings, db_file, scratch)
        os.replace(scratch, db_file)
        _fsync_dir(db_file.parent)
        return
    if is_sqlite(url):
        raise RestoreError(
            "この世代は PostgreSQL のバックアップです。--database-url で新しい空のデータベースを指定してください / "
            "this generation holds a PostgreSQL dump: name a new, empty database with --database-url"
        )
    _fetch_metadata(target, sealer, manifest, scratch)
    try:
        restore_postgres(scratch, url)
    except SnapshotError as exc:
        raise RestoreError(str(exc)) from exc
    finally:
        scratch.unlink(missing_ok=True)


def _owner(db: Database, sha256: str) -> uuid.UUID | None:
    """The contract whose item (original, thumbnail or display copy) is this blob; None when none names it."""
    with db.read() as s:
        found = s.scalar(select(Media.contract_id).where(or_(Media.sha256 == sha256, Media.thumb_sha256 == sha256))
                         .limit(1))
        if found is None:
            found = s.scalar(select(Media.contract_id).join(MediaDerivative, MediaDerivative.media_id == Media.id)
                             .where(MediaDerivative.sha256 == sha256).limit(1))
        return found


def _restore_database_key(target: Target, settings: Settings, db_file: Path, restored: Path) -> None:
    master = MasterKey.load(settings.master_key_file) if settings.master_key_file is not None else None
    if master is None or not database.adopt_key_object(
        db_file, restored, master,
        (b"".join(target.read(name)) for name in sorted(target.keys(database.KEY_OBJECT_PREFIX))),
    ):
        restored.unlink(missing_ok=True)
        raise RestoreError(
            "この世代のデータベースは暗号化されていますが、それを開ける鍵がバックアップ先にないか、マスターキーが違います"
            "（--master-key） / this generation's database is encrypted and no database key on the target opens it "
            "with this master key (--master-key)"
        )


def _count_rows(settings: Settings, tables: dict[str, int]) -> dict[str, int]:
    """The restored database's row counts, read before the new site opens it (which may add its own rows)."""
    counts = {}
    database_url = settings.database_url
    master = MasterKey.load(settings.master_key_file) if settings.master_key_file is not None else None
    engine = make_engine(database_url, key=database.database_key(database_url, master, create=False))
    try:
        with engine.connect() as conn:
            for name in tables:
                counts[name] = int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one())
            conn.rollback()
    finally:
        engine.dispose()
    return counts


def restore(
    target: Target,
    sealer: Sealer,
    manifest: Manifest,
    settings: Settings,
    *,
    workers: int = 4,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> RestoreReport:
    """Restore ``manifest``'s generation into the (new) site that ``settings`` describes."""
    try:
        signature.check(manifest, sealer)  # before anything is written
    except ManifestSignatureError as exc:
        raise RestoreError(str(exc)) from exc
    data_dir = settings.data_dir
    marker = data_dir / MARKER
    resuming = marker.exists() and json.loads(marker.read_text()).get("generation") == manifest.generation
    if not resuming:
        occupied = is_sqlite(settings.database_url) and _sqlite_file(settings.database_url).exists()
        blob_dir = data_dir / "blobs"
        if occupied or (blob_dir.exists() and any(blob_dir.iterdir())):
            raise RestoreError(
                f"復元先 {data_dir} には既にデータがあります。新しいフォルダーを指定してください / {data_dir} already "
                "holds a site: restore into a new, empty folder"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"generation": manifest.generation}))
        _fsync_dir(data_dir)
        try:
            _restore_metadata(target, sealer, manifest, settings)
        except BaseException:
            # Nothing was put in place: a second run starts over (a "resume" would skip the metadata).
            marker.unlink(missing_ok=True)
            raise
        counted = _count_rows(settings, manifest.tables)
        wrong = {t: (n, counted.get(t)) for t, n in manifest.tables.items() if counted.get(t) != n}
        if wrong:
            raise RestoreError(
                f"復元したデータベースの行数がマニフェストと一致しません / row counts differ from the manifest: {wrong}"
            )
        (data_dir / ".restore-rows.json").write_text(json.dumps(counted))
    report = RestoreReport(manifest.generation, data_dir, settings.database_url, blobs=len(manifest.blobs))
    rows_file = data_dir / ".restore-rows.json"
    report.tables = json.loads(rows_file.read_text()) if rows_file.exists() else {}
    ctx = build_context(settings, upgrade=False)
    try:
        total = sum(b.size for b in manifest.blobs)
        lock = threading.Lock()
        progress = [0]

        def fetch(entry: BlobEntry) -> None:
            if ctx.blobs.stat(entry.sha256) is None:
                key = blob_key(entry.sha256)
                pieces = target.read(key, head=sealer.layout[0], piece=sealer.layout[1])
                owner = _owner(ctx.db, entry.sha256)  # encrypted again under its contract's own data key
                store = contract_blobs(ctx.blobs, owner) if owner is not None else ctx.blobs
                store.put_stream(entry.sha256, sealer.unseal(pieces, key))
                with lock:
                    report.restored_blobs += 1
                    report.restored_bytes += entry.size
            with lock:
                progress[0] += entry.size
                done = progress[0]
            if on_progress is not None:
                on_progress("restore", done, total)

        _parallel(fetch, manifest.blobs, workers)
    finally:
        ctx.db.dispose()
        ctx.blobs.close()
    rows_file.unlink(missing_ok=True)
    (data_dir / "restored-from.json").write_text(json.dumps({
        "generation": manifest.generation,
        "target": target.url,
        "restored_at": datetime.now(UTC).isoformat(),
    }))
    marker.unlink(missing_ok=True)
    _fsync_dir(data_dir)
    return report
