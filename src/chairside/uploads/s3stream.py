"""tus uploads on an S3 blob store: the bytes go to the bucket as they arrive, never to a local partial file.

Used instead of the partial file (blobs/parts.py) when the blob store is S3 without encryption by the app
(`enabled`). Each PATCH streams its body into full parts of a multipart upload (8 MiB, uploaded as they
fill; one part in memory at most) and ends by storing the rest, shorter than a part, as a small *tail*
object; the list of parts, the tail's key and the upload's offset are committed in one transaction
(`UploadS3State`), so a server killed mid-upload loses nothing acknowledged and any other server that
shares only PostgreSQL and the bucket continues the upload (it loads the tail, at most one part).

The running SHA-256 is kept in this process's memory (offset → hash state): a PATCH continuing on the same
server hashes on the way. hashlib's state cannot be persisted, so after a server change the hash is
recomputed once at completion, while the assembled object is read for the probe (docs/operations.md).

At completion the tail becomes the last part, the multipart upload is completed into a staging object, the
probe and the thumbnail read a temporary local copy of it (mediafile/ reads paths), and the blob is made by
a server-side copy: the bytes are not uploaded a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import delete, update

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.blobs.base import DEFAULT_CHUNK_SIZE, BlobInfo, BlobReader, BlobStore
from chairside.context import Context
from chairside.db.engine import rowcount
from chairside.db.models import Upload, UploadS3State, utcnow
from chairside.errors import Problem
from chairside.media.ingest import IngestRequest, ingest
from chairside.tenancy import visibility
from chairside.uploads import clusterlock, tus
from chairside.uploads.body import Body
from chairside.uploads.tus import checksum_mismatch, tus_headers

if TYPE_CHECKING:
    from chairside.blobs.s3parts import S3Parts

__all__ = ["complete", "discard", "enabled", "finish_stored", "locked", "write_body"]

BATCH = 1 << 20  # bytes gathered before each hash in a worker thread
log = logging.getLogger(__name__)

# upload id → (offset, SHA-256 of bytes [0, offset)): this process's running hashes.
_hashes: dict[str, tuple[int, hashlib._Hash]] = {}
_hashes_lock = Lock()
_parts_by_store: dict[int, S3Parts] = {}


def enabled(ctx: Context) -> bool:
    """Whether this process streams uploads to S3: its blob store is S3 itself (not wrapped for encryption)."""
    module = sys.modules.get("chairside.blobs.s3")
    return module is not None and isinstance(ctx.blobs, module.S3BlobStore)


def _parts(ctx: Context) -> S3Parts:
    from chairside.blobs.s3 import S3BlobStore
    from chairside.blobs.s3parts import S3Parts

    store = ctx.blobs
    assert isinstance(store, S3BlobStore)
    found = _parts_by_store.get(id(store))
    if found is None or found.store is not store:
        found = _parts_by_store[id(store)] = S3Parts(store)
    return found


def _storage_problem(upload: Upload | None = None) -> Problem:
    return Problem(503, "保存先のストレージに一時的に接続できません。しばらくして再開してください"
                   "（送った分は保存されています）。 / "
                   "The storage could not be reached for a moment. Resume the upload shortly; what was acknowledged "
                   "is kept.", code="storage-unavailable",
                   headers=tus_headers(upload, **{"Retry-After": "5"}) if upload else
                   {**tus.base_headers(), "Retry-After": "5"})


def _state(ctx: Context, upload_id: str) -> UploadS3State:
    with ctx.db.session() as s:
        found = s.get(UploadS3State, upload_id)
        if found is None:
            return UploadS3State(upload_id=upload_id, s3_upload_id=None, parts=[], parts_bytes=0, tail_key=None)
        s.expunge(found)
        return found


@contextlib.asynccontextmanager
async def locked(ctx: Context, upload_id: str, wait_s: float) -> AsyncIterator[int | None]:
    """The upload's lock: PostgreSQL's advisory lock across servers, and a local file's flock within a host."""
    lock_file = ctx.parts.path(upload_id)
    if not lock_file.exists():  # another server began this upload: the empty file is only this host's lock
        with contextlib.suppress(FileExistsError):
            ctx.parts.create(upload_id)
    async with clusterlock.held(ctx, upload_id, wait_s), ctx.parts.locked(upload_id, wait_s):
        yield None


def _cached_hash(upload_id: str, offset: int) -> hashlib._Hash | None:
    if offset == 0:
        return hashlib.sha256()
    with _hashes_lock:
        found = _hashes.get(upload_id)
    return found[1].copy() if found is not None and found[0] == offset else None


def _remember(upload_id: str, offset: int, hasher: hashlib._Hash | None) -> None:
    with _hashes_lock:
        if hasher is None:
            _hashes.pop(upload_id, None)
        else:
            _hashes[upload_id] = (offset, hasher)


async def write_body(
    ctx: Context, upload: Upload, body: AsyncIterator[bytes], checksum: tus.Checksum | None
) -> tuple[Upload, bool]:
    """Stream the body into parts (sent as they fill) and a new tail; commit them with the new offset. The
    caller (uploads.service.receive) holds the lock and has checked the offset."""
    parts_store = _parts(ctx)
    part_size = parts_store.part_size
    state = await anyio.to_thread.run_sync(_state, ctx, upload.id)
    start = upload.offset
    try:
        tail = await anyio.to_thread.run_sync(parts_store.get_tail, state.tail_key) if state.tail_key else b""
    except Exception as exc:
        raise _storage_problem(upload) from exc
    if state.parts_bytes + len(tail) != start:
        raise Problem(500, "A partial upload is shorter than recorded; upload the file again.", code="upload-lost",
                      headers=tus.base_headers())
    hasher = _cached_hash(upload.id, start)
    chunk_hasher = checksum.new() if checksum else None
    hashers = [h for h in (hasher, chunk_hasher) if h is not None]
    buf = bytearray(tail)  # bytes after the last part: less than a part, plus what is being gathered
    pending = bytearray()  # received, not hashed yet
    parts: list[list[Any]] = [list(p) for p in state.parts]
    parts_bytes = state.parts_bytes
    s3_upload_id = state.s3_upload_id
    pos = start
    reader = Body(body, upload.length - start, ctx.settings.upload_idle_timeout_s)

    def hash_batch(data: bytearray) -> None:
        for h in hashers:
            h.update(data)

    # One part goes up in a worker thread while the next one fills: at most two parts in memory.
    loop = asyncio.get_running_loop()
    inflight: asyncio.Future[str] | None = None
    inflight_number = 0

    async def settle() -> None:
        nonlocal inflight, parts_bytes
        if inflight is None:
            return
        future, inflight = inflight, None
        parts.append([inflight_number, await future, part_size])
        parts_bytes += part_size

    async def flush() -> None:
        nonlocal pending, buf, pos, inflight, inflight_number, s3_upload_id
        if not pending:
            return
        data, pending = pending, bytearray()
        await anyio.to_thread.run_sync(hash_batch, data)
        buf += data
        pos += len(data)
        while len(buf) >= part_size:
            await settle()
            if s3_upload_id is None:
                s3_upload_id = await anyio.to_thread.run_sync(parts_store.begin, upload.id)
            piece = bytes(memoryview(buf)[:part_size])
            del buf[:part_size]
            inflight_number = len(parts) + 1
            inflight = loop.run_in_executor(None, parts_store.put_part, upload.id, s3_upload_id, inflight_number,
                                            piece)

    try:
        async with contextlib.aclosing(aiter(reader)) as chunks:
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= BATCH:
                    await flush()
        await flush()
        await settle()
        if chunk_hasher is not None and checksum is not None and (
            reader.disconnected or chunk_hasher.digest() != checksum.digest
        ):
            raise checksum_mismatch(upload, reader.idle)
        new_tail_key = state.tail_key
        if pos != start:
            new_tail_key = (await anyio.to_thread.run_sync(parts_store.put_tail, upload.id, pos, buf)) if buf else None
        fresh = await anyio.to_thread.run_sync(
            _commit, ctx, upload, pos, s3_upload_id, parts, parts_bytes, new_tail_key)
    except Problem:
        raise  # nothing committed: the offset, the parts list, the tail and the cached hash stay as they were
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "boto3", "urllib3", "s3transfer")):
            raise _storage_problem(upload) from exc
        raise
    finally:
        if inflight is not None:  # never leave a part going up behind the next request's back (the lock ends here)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await inflight
    _remember(upload.id, pos, hasher)
    if state.tail_key and state.tail_key != new_tail_key:
        await anyio.to_thread.run_sync(parts_store.delete_key, state.tail_key)
    return fresh, reader.idle


def _commit(ctx: Context, upload: Upload, new_offset: int, s3_upload_id: str | None, parts: list[list[Any]],
            parts_bytes: int, tail_key: str | None) -> Upload:
    """The new offset and where its bytes are, in one transaction."""
    with ctx.db.session() as s:
        result = s.execute(
            update(Upload)
            .where(Upload.id == upload.id, Upload.offset == upload.offset)
            .values(offset=new_offset, expires_at=utcnow() + timedelta(seconds=ctx.settings.upload_expiry_s))
        )
        if rowcount(result) != 1:
            raise Problem(409, "The upload changed while this request ran. Resume from the server's offset.",
                          code="offset-mismatch", headers=tus.base_headers())
        state = s.get(UploadS3State, upload.id)
        if state is None:
            state = UploadS3State(upload_id=upload.id)
            s.add(state)
        state.s3_upload_id, state.parts, state.parts_bytes = s3_upload_id, parts, parts_bytes
        state.tail_key, state.updated_at = tail_key, utcnow()
        s.flush()
        fresh = s.get(Upload, upload.id)
        assert fresh is not None
        return fresh


class _Adopting(BlobStore):
    """The blob store, except that the finished upload's blob is made by a server-side copy of its staging
    object (ingest calls `put_file` with a local copy that the probe read: it is not uploaded again)."""

    def __init__(self, inner: BlobStore, parts: S3Parts, sha256: str, staging_key: str, size: int) -> None:
        self._inner, self._parts, self._sha, self._key, self._size = inner, parts, sha256, staging_key, size

    def put_stream(self, sha256: str, chunks: Iterable[bytes]) -> BlobInfo:
        return self._inner.put_stream(sha256, chunks)

    def put_file(self, sha256: str, path: Path, *, verified: bool = False) -> BlobInfo:
        if sha256 == self._sha:
            return self._parts.adopt(self._key, sha256, self._size)
        return self._inner.put_file(sha256, path, verified=verified)

    def open_range(self, sha256: str, start: int = 0, length: int | None = None, *,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> BlobReader:
        return self._inner.open_range(sha256, start, length, chunk_size=chunk_size)

    def stat(self, sha256: str) -> BlobInfo | None:
        return self._inner.stat(sha256)

    def delete(self, sha256: str) -> None:
        self._inner.delete(sha256)

    def iter_hashes(self) -> Iterator[str]:
        return self._inner.iter_hashes()

    def local_path(self, sha256: str) -> Path | None:
        return self._inner.local_path(sha256)


async def complete(ctx: Context, principal: Principal, upload: Upload) -> Upload:
    """All bytes are in (the caller holds the lock, `locked`): assemble, hash (if this process lost the running hash),
    check, ingest, mark done, clean up."""
    try:
        return await anyio.to_thread.run_sync(_complete_sync, ctx, principal, upload)
    except Problem as problem:
        if problem.status in (503,):
            raise
        # The bytes can never become a media item (wrong type, damaged, id reused, wrong hash): remove them.
        await anyio.to_thread.run_sync(_drop, ctx, upload.id)
        problem.headers.update(tus.base_headers())
        raise


def _complete_sync(ctx: Context, principal: Principal, upload: Upload) -> Upload:
    from chairside.uploads.service import _station_clinic

    parts_store = _parts(ctx)
    state = _state(ctx, upload.id)
    local = ctx.parts.path(upload.id).with_suffix(".s3ingest")
    try:
        try:
            t0 = time.perf_counter()
            tail = parts_store.get_tail(state.tail_key) if state.tail_key else None
            key = parts_store.assemble(upload.id, state.s3_upload_id, state.parts, tail, upload.length)
            del tail
            t1 = time.perf_counter()
            known = _cached_hash(upload.id, upload.length)
            # The probe reads paths: a temporary local copy, hashed on the way when the hash is not known here.
            computed = parts_store.download(key, local, hash_it=known is None)
            t2 = time.perf_counter()
        except Problem:
            raise
        except Exception as exc:
            raise _storage_problem() from exc
        digest = known.hexdigest() if known is not None else computed
        assert digest is not None
        if upload.expected_sha256 and digest != upload.expected_sha256:
            raise Problem(460, "The file that arrived is not the file that was sent (its SHA-256 differs). "
                          "Upload it again.", code="checksum-mismatch")
        with ctx.db.session() as s:
            patient = visibility.patient(s, principal, upload.patient_id)
            if patient is None:
                raise Problem(422, "The patient this file is for no longer exists.", code="unknown-patient")
            clinic_id = patient.clinic_id
        station_clinic = _station_clinic(ctx, upload)
        req = IngestRequest(
            path=local, sha256=digest, size=upload.length, media_id=upload.media_id,
            contract_id=upload.contract_id, clinic_id=station_clinic or clinic_id,
            patient_id=upload.patient_id, filename=upload.filename, captured_at=upload.captured_at,
            source="station" if principal.role in ("station", "relay") else "viewer",
            station_id=upload.station_id, created_over_limit=upload.created_over_limit,
            notice_percents=ctx.settings.quota_notice_percents if ctx.role.sends_notices else (),
            queue_upstream=ctx.role.queues_writes_upstream,
        )
        blobs = _Adopting(ctx.blobs, parts_store, digest, key, upload.length)
        try:
            ingest(ctx.db, blobs, req, thumbnail_max_side=ctx.settings.thumbnail_max_side,
                   max_pixels=ctx.settings.max_photo_pixels, heavy_parallel=ctx.settings.heavy_work_parallel)
        except Exception as exc:  # the bucket failed (the thumbnail's put, the copy): keep the bytes, retry later
            if type(exc).__module__.startswith(("botocore", "boto3", "urllib3", "s3transfer")):
                raise _storage_problem() from exc
            raise
        log.info("upload %s on S3 stored: %d bytes; assemble %.2f s, read for the probe %.2f s (%s), "
                 "probe + thumbnail + server-side copy %.2f s", upload.id, upload.length, t1 - t0, t2 - t1,
                 "hashed on the way" if known is None else "running hash", time.perf_counter() - t2)
        with ctx.db.session() as s:
            s.execute(update(Upload).where(Upload.id == upload.id).values(completed_at=utcnow()))
            s.execute(delete(UploadS3State).where(UploadS3State.upload_id == upload.id))
            done = s.get(Upload, upload.id)
            assert done is not None
            audit.add(s, principal, "media.upload", patient_id=upload.patient_id, media_id=upload.media_id,
                      detail={"filename": upload.filename, "size": upload.length})
    finally:
        local.unlink(missing_ok=True)
    _remember(upload.id, 0, None)
    parts_store.discard(upload.id, None)  # the staging object and any tail: the blob is a copy
    ctx.parts.remove(upload.id)
    return done


async def finish_stored(ctx: Context, principal: Principal, upload: Upload) -> Upload:
    """All bytes are in but the item is not stored: another request is storing it (wait), or a server stopped
    while storing it (store it now). 423 after `upload_lock_wait_s`."""
    from chairside.uploads.service import load

    deadline = time.monotonic() + ctx.settings.upload_lock_wait_s
    async with locked(ctx, upload.id, max(0.0, deadline - time.monotonic())):
        upload = await anyio.to_thread.run_sync(load, ctx, principal, upload.id)
        if upload.completed_at is None and upload.offset == upload.length:
            upload = await complete(ctx, principal, upload)
    return upload


def _drop(ctx: Context, upload_id: str) -> None:
    with ctx.db.session() as s:
        s.execute(delete(Upload).where(Upload.id == upload_id))
    discard(ctx, upload_id)
    ctx.parts.remove(upload_id)


def discard(ctx: Context, upload_id: str) -> None:
    """Remove the upload's objects in the bucket and their record (a cancelled, refused or expired upload)."""
    state = _state(ctx, upload_id)
    _remember(upload_id, 0, None)
    _parts(ctx).discard(upload_id, state.s3_upload_id)
    with ctx.db.session() as s:
        s.execute(delete(UploadS3State).where(UploadS3State.upload_id == upload_id))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ctx.parts.path(upload_id).with_suffix(".s3ingest"))
