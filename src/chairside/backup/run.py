"""Taking a generation: the metadata snapshot, every blob the target lacks, then the manifest (last).

A run killed at any moment leaves no generation listed as complete (the manifest is what makes it
complete, and it is written after everything it names); the blobs it did upload stay, so the next run
uploads only what is still missing. A blob already in the target is not read at all: an unchanged
site's next generation is a metadata snapshot and a manifest.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from chairside.blobs import BlobNotFound, BlobStore
from chairside.blobs.base import iter_file
from chairside.blobs.crypt import HEADER_SIZE, BlobDecryptError, EncryptedBlobStore, is_encrypted
from chairside.keys import database

from . import signature
from .manifest import BlobEntry, Manifest, blob_key, manifest_key, metadata_key
from .seal import Sealer
from .snapshot import snapshot
from .targets import Target

__all__ = ["BlobCorrupt", "OnProgress", "new_generation_id", "run_backup"]

log = logging.getLogger(__name__)

OnProgress = Callable[[str, int, int], None]
"""(phase, done, total): phases are "metadata" (pages), "blobs" (bytes), "locks" (objects)."""

class BlobCorrupt(Exception):
    """A source blob's bytes do not hash to its name: it is not backed up (the notice names it)."""


def new_generation_id(now: datetime | None = None) -> str:
    """Sortable by time (to the millisecond): ``20261207T031500.123Z-3f2a``."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{when:%Y%m%dT%H%M%S}.{when.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


def _authenticated(blobs: BlobStore, sha256: str) -> bool:
    """Whether reading this blob already proves its bytes: stored encrypted at rest, each chunk's AES-GCM tag is
    checked as it is decrypted, and the blob's name is bound to it (associated data), so a damaged, truncated or
    swapped file fails the read. A blob in the clear (or written before encryption was on) is hashed instead."""
    if not isinstance(blobs, EncryptedBlobStore):
        return False
    with blobs.backend.open_range(sha256, 0, HEADER_SIZE) as head:
        return is_encrypted(b"".join(head))


def _hashed(chunks: Iterable[bytes], sha256: str, size: int, *, check_hash: bool = True) -> Iterator[bytes]:
    """Pass the chunks through, and fail at the end (before the target commits) if they are not the blob."""
    hasher = hashlib.sha256() if check_hash else None
    seen = 0
    for chunk in chunks:
        if hasher is not None:
            hasher.update(chunk)
        seen += len(chunk)
        yield chunk
    if seen != size or (hasher is not None and hasher.hexdigest() != sha256):
        got = hasher.hexdigest() if hasher is not None else "not computed"
        raise BlobCorrupt(f"blob {sha256} in the data folder is damaged ({seen} bytes, sha256 {got})")


def _counted(chunks: Iterable[bytes], hasher: hashlib._Hash, counter: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        hasher.update(chunk)
        counter[0] += len(chunk)
        yield chunk


@dataclass
class _Totals:
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_backup(
    database_url: str,
    blobs: BlobStore,
    target: Target,
    sealer: Sealer,
    scratch: Path,
    *,
    workers: int = 4,
    on_progress: OnProgress | None = None,
    now: datetime | None = None,
    database_key: bytes | None = None,
) -> Manifest:
    """Take one generation of the site whose metadata is ``database_url`` and whose bytes are in ``blobs``.

    ``database_key``: the SQLite database is encrypted by SQLCipher (``Database.key``); its snapshot stays
    encrypted, and the key file beside the database (wrapped by the master key) goes to the target's ``keys/``.
    """
    started = (now or datetime.now(UTC)).astimezone(UTC)
    gen_id = new_generation_id(started)
    report = on_progress or (lambda _phase, _done, _total: None)

    wrapped_db_key = database.key_object(database_url) if database_key is not None else None
    if wrapped_db_key is not None and wrapped_db_key[0] not in set(target.keys(database.KEY_OBJECT_PREFIX)):
        target.put(wrapped_db_key[0], [wrapped_db_key[1]])  # before the metadata it opens
    with snapshot(database_url, scratch, lambda done, total: report("metadata", done, total),
                  key=database_key) as snap:
        hasher = hashlib.sha256()
        counter = [0]
        name = metadata_key(gen_id)
        target.put(name, sealer.seal(_counted(iter_file(snap.path, sealer.plain_piece), hasher, counter), name))
        metadata_sha, metadata_size = hasher.hexdigest(), counter[0]
        refs = snap.blob_refs

    present = {key.rsplit("/", 1)[1] for key in target.keys("blobs/")}
    entries: list[BlobEntry] = []
    missing: list[str] = []
    upload: list[BlobEntry] = []
    for sha in refs:
        info = blobs.stat(sha)
        if info is None:
            missing.append(sha)
            continue
        entry = BlobEntry(sha, info.size)
        entries.append(entry)
        if sha not in present:
            upload.append(entry)

    total_bytes = sum(e.size for e in upload)
    totals = _Totals()
    report("blobs", 0, total_bytes)

    def send(entry: BlobEntry) -> None:
        key = blob_key(entry.sha256)
        try:
            reader = blobs.open_range(entry.sha256, chunk_size=sealer.plain_piece)
        except BlobNotFound:
            raise BlobCorrupt(f"blob {entry.sha256} vanished from the data folder during the backup") from None
        with reader:

            def progressed() -> Iterator[bytes]:
                for chunk in reader:
                    yield chunk
                    with totals.lock:
                        totals.done += len(chunk)
                        done = totals.done
                    report("blobs", done, total_bytes)

            authenticated = _authenticated(blobs, entry.sha256)
            checked = _hashed(progressed(), entry.sha256, entry.size, check_hash=not authenticated)
            try:
                target.put(key, sealer.seal(checked, key))
            except BlobDecryptError as exc:
                raise BlobCorrupt(f"blob {entry.sha256} in the data folder is damaged: {exc}") from exc

    _parallel(send, upload, workers)

    if target.locked:
        lock_keys = [blob_key(sha) for sha in sorted({e.sha256 for e in entries} - {e.sha256 for e in upload})]
        lock_keys += list(target.keys("keys/"))
        lock_done = [0]

        def extend(key: str) -> None:
            target.extend_lock(key)
            with totals.lock:
                lock_done[0] += 1
                done = lock_done[0]
            report("locks", done, len(lock_keys))

        _parallel(extend, lock_keys, workers)

    manifest = Manifest(
        generation=gen_id,
        created_at=started,
        finished_at=datetime.now(UTC),
        database=snap.kind,
        schema_revision=snap.schema_revision,
        tables=snap.tables,
        metadata_sha256=metadata_sha,
        metadata_size=metadata_size,
        encryption=sealer.scheme,
        master_key_id=sealer.master_key_id,
        blobs=entries,
        new_blobs=len(upload),
        new_bytes=total_bytes,
        locked_days=getattr(target, "lock_days", None) if target.locked else None,
        missing_blobs=missing,
    )
    signature.sign(manifest, sealer)  # under the generation's backup data key: only the master key's holder can
    target.put(manifest_key(gen_id), [manifest.to_json()])  # last: from now on the generation is complete
    return manifest


T = TypeVar("T")


def _parallel(work: Callable[[T], None], items: list[T], workers: int) -> None:
    """Run ``work`` on every item with ``workers`` threads; the first failure stops the rest and is raised."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="backup") as pool:
        futures: list[Future[None]] = [pool.submit(work, item) for item in items]
        done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            error = future.exception()
            if error is not None:
                for other in futures:
                    other.cancel()
                raise error
