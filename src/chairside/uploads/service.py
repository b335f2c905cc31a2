"""The upload state machine behind tus: create, receive bytes at the offset, complete, drop.

The database row's offset is the authority; the partial file (blobs/parts.py) may be longer,
never shorter. A PATCH body streams to the partial file in batches, hashed on the way, so
memory stays flat whatever the file's size. When the last byte is in, the file is ingested
(sniffed, probed, thumbnailed, stored by hash) before the final PATCH is answered: an
acknowledged upload is a stored media item. The HTTP binding is api/uploads.py; the protocol's
headers are uploads/tus.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.blobs.parts import write_all
from chairside.context import Context
from chairside.db.engine import rowcount
from chairside.db.models import Media, Station, Upload, utcnow
from chairside.errors import Problem
from chairside.media.ingest import IngestRequest, ingest
from chairside.patients import merge
from chairside.quota import usage
from chairside.tenancy import visibility
from chairside.uploads import clusterlock, s3stream, tus
from chairside.uploads.body import Body
from chairside.uploads.metadata import clean_filename, metadata_uuid, parse_captured_at
from chairside.uploads.tus import bad, checksum_mismatch, tus_headers

BATCH = 1 << 20  # bytes gathered before each write+hash in a worker thread


def load(ctx: Context, principal: Principal, upload_id: str) -> Upload:
    """The caller's upload; 404 for one that does not exist or is another contract's; 410 when expired."""
    with ctx.db.session() as s:
        upload = s.get(Upload, upload_id) if upload_id.isalnum() else None
        if upload is None or upload.contract_id != principal.contract_id:
            raise Problem(404, "This upload does not exist (or was cancelled). Start the upload again.",
                          code="upload-not-found", headers=tus.base_headers())
        if upload.completed_at is None and upload.expires_at <= utcnow():
            s.delete(upload)
            expired = True
        else:
            expired = False
    if expired:
        if s3stream.enabled(ctx):
            s3stream.discard(ctx, upload_id)
        ctx.parts.remove(upload_id)
        raise Problem(410, "This upload expired because it was left unfinished too long. Start it again.",
                      code="upload-expired", headers=tus.base_headers())
    return upload


def create(ctx: Context, principal: Principal, upload_id: str, length: int, meta: dict[str, str],
           raw_metadata: str | None) -> Upload:
    """The upload's row and its empty partial file: refused when the patient is unknown, the media id was used
    for another file, or a new video finds the quota full (unless this process takes it offline)."""
    patient_id = metadata_uuid(meta, "patient_id")
    media_id = metadata_uuid(meta, "media_id")
    filename = clean_filename(meta.get("filename", "") or meta.get("name", ""))
    captured_at = parse_captured_at(meta["captured_at"]) if meta.get("captured_at") else None
    expected = meta.get("sha256", "").lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise bad("'sha256' in the upload's metadata must be 64 hexadecimal digits.", code="bad-metadata")
    if ctx.role.checks_free_disk:
        check_disk(ctx, length)
    with ctx.db.session() as s:
        patient = merge.resolve(s, principal, patient_id)  # a patient merged meanwhile: the kept one
        if patient is None:
            raise Problem(422, "The patient this file is for was not found. Check the patient, "
                          "or refresh the patient list and try again.", code="unknown-patient",
                          headers=tus.base_headers())
        same_id = s.get(Media, media_id)
        if same_id is not None and (same_id.contract_id != principal.contract_id or same_id.size != length):
            raise Problem(409, f"The media id {media_id} is already used for a different file. The "
                          "capture software must make a new id for each new recording or photo.",
                          code="media-id-conflict", headers=tus.base_headers())
        if principal.role == "relay":
            # A relay forwards what its clinic's station recorded: the item is that station's, and it is
            # never refused for the quota (the clinic already holds the recording); it is counted as usual.
            station_id = _forwarding_station(s, principal, meta)
            over_limit = False
        else:
            station_id = principal.station_id
            # A new video at or over the video limit is refused now; photos always pass.
            try:
                over_limit = usage.check_new_upload(s, principal.contract_id, meta, replay=same_id is not None,
                                                    headers=tus.base_headers())
            except Problem as refused:
                if not _takes_over_quota_now(ctx) or refused.code != "video-quota-full":
                    raise
                # A relay cut off from the cloud cannot know the contract's hours now: never lose a recording.
                from chairside.relay.runner import count_accepted_over_quota

                count_accepted_over_quota(s)
                over_limit = False
        upload = Upload(
            id=upload_id, contract_id=principal.contract_id, patient_id=patient.id,
            media_id=media_id, station_id=station_id, filename=filename,
            captured_at=captured_at, length=length, offset=0,
            upload_metadata=raw_metadata or "", expected_sha256=expected,
            expires_at=utcnow() + timedelta(seconds=ctx.settings.upload_expiry_s),
            created_over_limit=over_limit,
        )
        ctx.parts.create(upload_id)
        s.add(upload)
        return upload



def drop(ctx: Context, upload_id: str) -> None:
    with ctx.db.session() as s:
        s.execute(delete(Upload).where(Upload.id == upload_id))
    if s3stream.enabled(ctx):
        s3stream.discard(ctx, upload_id)
    ctx.parts.remove(upload_id)


async def receive(
    ctx: Context,
    principal: Principal,
    upload: Upload,
    body: AsyncIterator[bytes],
    declared_length: str | None,
    checksum: tus.Checksum | None,
    offset: int = 0,
) -> Upload:
    """Append a request's body at `offset` (the upload's offset, or 409); complete the upload when it is whole.

    The rules are here, once; where the bytes go is the store's: the partial file (this module) or, on an S3
    blob store, parts in the bucket (uploads/s3stream.py)."""
    s3 = s3stream.enabled(ctx)
    if upload.offset == upload.length and upload.completed_at is None:
        upload = await finish_stored(ctx, principal, upload)
    if upload.completed_at is not None:
        if offset == upload.length:
            return upload  # a retry of the last PATCH, or one sent while another stored the file: it is stored
        raise _offset_mismatch(upload, offset)
    wait = ctx.settings.upload_lock_wait_s
    async with (s3stream.locked(ctx, upload.id, wait) if s3 else _locked(ctx, upload.id, wait)) as fd:
        # Re-read under the lock: another PATCH may have moved the offset while we waited.
        upload = await anyio.to_thread.run_sync(load, ctx, principal, upload.id)
        if upload.completed_at is not None or offset != upload.offset:
            if upload.completed_at is not None and offset == upload.length:
                return upload
            raise _offset_mismatch(upload, offset)
        declared = declared_length
        if declared is not None and declared.isdigit() and int(declared) > upload.length - offset:
            raise bad("The request sends more bytes than the upload's declared length.", code="too-long")
        if upload.offset < upload.length:
            if s3:
                upload, idle = await s3stream.write_body(ctx, upload, body, checksum)
            else:
                assert fd is not None
                new_offset, idle = await _write_body(ctx, fd, upload, body, checksum)
                upload = await anyio.to_thread.run_sync(_commit_offset, ctx, upload, new_offset)
            if idle and upload.offset < upload.length:
                # The client stopped sending: what arrived is kept, the lock goes with this answer.
                raise Problem(408, f"No bytes arrived for {ctx.settings.upload_idle_timeout_s:g} s, so this request "
                              f"was ended; the upload is at byte {upload.offset}. Resume from there.",
                              code="upload-idle", headers=tus_headers(upload, Connection="close"))
        if upload.offset == upload.length:
            upload = await (s3stream.complete(ctx, principal, upload) if s3 else complete(ctx, principal, upload))
    return upload


def _offset_mismatch(upload: Upload, offset: int) -> Problem:
    # Connection: close, so a client streaming a large body stops now rather than send it all first.
    return Problem(409, f"The upload is at byte {upload.offset}, not {offset}. Resume from the server's offset "
                   "(ask with HEAD).", code="offset-mismatch", headers=tus_headers(upload, Connection="close"))


@contextlib.asynccontextmanager
async def _locked(ctx: Context, upload_id: str, wait_s: float) -> AsyncIterator[int | None]:
    """The upload's lock: PostgreSQL's advisory lock across servers, and the partial file's flock (its fd)."""
    async with clusterlock.held(ctx, upload_id, wait_s), ctx.parts.locked(upload_id, wait_s) as fd:
        yield fd


async def _write_body(
    ctx: Context, fd: int, upload: Upload, body: AsyncIterator[bytes], checksum: tus.Checksum | None
) -> tuple[int, bool]:
    """Stream the request body to the partial file at the upload's offset; answer the new offset, and
    whether the body stalled (uploads/body.py: the bytes that arrived are kept)."""
    store = ctx.parts
    start = upload.offset
    await anyio.to_thread.run_sync(os.ftruncate, fd, start)  # drop bytes past the authoritative offset
    hasher = await anyio.to_thread.run_sync(store.hasher_at, upload.id, start)
    before = hasher.copy()
    chunk_hasher = checksum.new() if checksum else None
    hashers = (hasher, chunk_hasher) if chunk_hasher else (hasher,)
    pos = start
    buf = bytearray()
    reader = Body(body, upload.length - start, ctx.settings.upload_idle_timeout_s)

    async def flush() -> None:
        nonlocal pos, buf
        if buf:
            data, buf = buf, bytearray()
            pos += await anyio.to_thread.run_sync(write_all, fd, data, pos, *hashers)

    try:
        async with contextlib.aclosing(aiter(reader)) as chunks:
            async for chunk in chunks:
                buf += chunk
                if len(buf) >= BATCH:
                    await flush()
        await flush()
        if chunk_hasher is not None and checksum is not None and (
            reader.disconnected or chunk_hasher.digest() != checksum.digest
        ):
            raise checksum_mismatch(upload, reader.idle)
        await anyio.to_thread.run_sync(os.fdatasync, fd)
    except BaseException:
        # Keep the file and the running hash exactly at the last offset we answered for.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        store.remember(upload.id, start, before)
        raise
    store.remember(upload.id, pos, hasher)
    return pos, reader.idle


def _commit_offset(ctx: Context, upload: Upload, new_offset: int) -> Upload:
    with ctx.db.session() as s:
        result = s.execute(
            update(Upload)
            .where(Upload.id == upload.id, Upload.offset == upload.offset)
            .values(offset=new_offset, expires_at=utcnow() + timedelta(seconds=ctx.settings.upload_expiry_s))
        )
        if rowcount(result) != 1:  # cannot happen under the lock; refuse rather than guess
            raise Problem(409, "The upload changed while this request ran. Resume from the server's offset.",
                          code="offset-mismatch", headers=tus.base_headers())
        fresh = s.get(Upload, upload.id)
        assert fresh is not None
        return fresh


async def complete(ctx: Context, principal: Principal, upload: Upload) -> Upload:
    """All bytes are in: check the whole-file hash, ingest, and mark the upload done."""
    store = ctx.parts
    part, staged = store.path(upload.id), store.path(upload.id).with_suffix(".ingest")
    if not part.exists() and staged.exists():  # the server stopped while storing: take it up again
        os.replace(staged, part)
    hasher = await anyio.to_thread.run_sync(store.hasher_at, upload.id, upload.length)
    digest = hasher.hexdigest()
    if upload.expected_sha256 and digest != upload.expected_sha256:
        await anyio.to_thread.run_sync(drop, ctx, upload.id)
        raise Problem(460, "The file that arrived is not the file that was sent (its SHA-256 differs). "
                      "Upload it again.", code="checksum-mismatch", headers=tus.base_headers())

    def run() -> Upload:
        with ctx.db.session() as s:
            patient = visibility.patient(s, principal, upload.patient_id)
            if patient is None:
                raise Problem(422, "The patient this file is for no longer exists.", code="unknown-patient")
            clinic_id = patient.clinic_id
        station_clinic = _station_clinic(ctx, upload)
        # Stage the finished file under its own name (one link, so the blob store adopts it by
        # rename, not a copy); on any failure it goes back, so a retry or a drop finds it.
        part = store.path(upload.id)
        staged = part.with_suffix(".ingest")
        if upload.expected_sha256 != digest:  # a crash from here on finds the bytes by this key (_recover_part)
            with ctx.db.session() as s:
                s.execute(update(Upload).where(Upload.id == upload.id).values(expected_sha256=digest))
        os.replace(part, staged)
        req = IngestRequest(
            path=staged, sha256=digest, size=upload.length, media_id=upload.media_id,
            contract_id=upload.contract_id, clinic_id=station_clinic or clinic_id,
            patient_id=upload.patient_id, filename=upload.filename, captured_at=upload.captured_at,
            source="station" if principal.role in ("station", "relay") else "viewer",
            station_id=upload.station_id, created_over_limit=upload.created_over_limit,
            # At a relay the row's transaction queues the upload to the cloud; notices are the cloud's to send.
            notice_percents=ctx.settings.quota_notice_percents if ctx.role.sends_notices else (),
            queue_upstream=ctx.role.queues_writes_upstream,
        )
        try:
            ingest(ctx.db, ctx.blobs, req, thumbnail_max_side=ctx.settings.thumbnail_max_side,
                   max_pixels=ctx.settings.max_photo_pixels, heavy_parallel=ctx.settings.heavy_work_parallel)
        except BaseException:
            if staged.exists():
                os.replace(staged, part)
            raise
        staged.unlink(missing_ok=True)  # left in place when the same bytes were already stored
        with ctx.db.session() as s:
            s.execute(update(Upload).where(Upload.id == upload.id).values(completed_at=utcnow()))
            done = s.get(Upload, upload.id)
            assert done is not None
            audit.add(s, principal, "media.upload", patient_id=upload.patient_id, media_id=upload.media_id,
                      detail={"filename": upload.filename, "size": upload.length})
        store.remove(upload.id)
        return done

    try:
        return await anyio.to_thread.run_sync(run)
    except Problem as problem:
        # The bytes can never become a media item (wrong type, damaged, id reused): remove them.
        await anyio.to_thread.run_sync(drop, ctx, upload.id)
        problem.headers.update(tus.base_headers())
        raise


async def finish_stored(ctx: Context, principal: Principal, upload: Upload) -> Upload:
    """An upload whose bytes are all in but which is not stored yet: either another request is storing it right
    now (it holds the file's lock while the file is named `.ingest`, then is adopted by the blob store), and
    this one waits for it; or the server stopped while storing it, and this one puts the bytes back and stores
    it. Waits up to `upload_lock_wait_s`, then 423 (never a 500 for the race)."""
    if s3stream.enabled(ctx):
        return await s3stream.finish_stored(ctx, principal, upload)
    deadline = time.monotonic() + ctx.settings.upload_lock_wait_s
    while upload.completed_at is None:
        busy = await anyio.to_thread.run_sync(recover_part, ctx, upload)
        if not busy:
            try:
                async with clusterlock.held(ctx, upload.id, max(0.0, deadline - time.monotonic())), \
                        ctx.parts.locked(upload.id, max(0.0, deadline - time.monotonic())):
                    upload = await anyio.to_thread.run_sync(load, ctx, principal, upload.id)
                    if upload.completed_at is None:
                        upload = await complete(ctx, principal, upload)
                return upload
            except Problem as problem:
                if problem.code != "upload-not-found":  # renamed away by a request storing it this moment
                    raise
        if time.monotonic() >= deadline:
            raise Problem(423, "This upload is being stored. Wait a moment and ask again.", code="upload-locked",
                          headers={"Retry-After": "1", **tus.base_headers()})
        await anyio.sleep(0.02)
        upload = await anyio.to_thread.run_sync(load, ctx, principal, upload.id)
    return upload


def _held(path: Path) -> bool:
    """Whether another request holds the lock of this file (a finishing PATCH keeps it while the file is
    renamed to `.ingest` and adopted by the blob store: the lock is the inode's, whatever its name)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def recover_part(ctx: Context, upload: Upload) -> bool:
    """Put a finished upload's bytes back where its lock and `_complete` expect them after a crash
    while storing it: from the staged file, or (the blob store had already adopted it) from the blob.
    Answers True, doing nothing, when another request is storing it right now."""
    part = ctx.parts.path(upload.id)
    staged = part.with_suffix(".ingest")
    if part.exists():
        return False
    if staged.exists():
        if _held(staged):
            return True
        os.replace(staged, part)
        return False
    stored = ctx.blobs.local_path(upload.expected_sha256) if upload.expected_sha256 else None
    if stored is not None:  # rare (a crash in a few milliseconds' window): a copy, then the usual path
        if _held(Path(stored)):
            return True
        tmp = part.with_suffix(".copy")
        shutil.copyfile(stored, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, part)
    return False


def _takes_over_quota_now(ctx: Context) -> bool:
    """Whether this process takes a video the quota would refuse: a relay whose cloud has not answered lately."""
    if not ctx.role.accepts_over_quota_offline:
        return False
    return ctx.relay is None or not ctx.relay.upstream.online


def check_disk(ctx: Context, length: int) -> None:
    """At a relay: 507 when this upload would take the disk below relay_min_free_bytes (reads keep working)."""
    free = shutil.disk_usage(ctx.settings.uploads_dir).free
    if free - length < ctx.settings.relay_min_free_bytes:
        raise Problem(507, "The clinic's relay is almost out of disk space, so this recording cannot be taken now. "
                      "The recording is still on this station; ask the clinic's administrator or support to free "
                      "space.", code="relay-disk-full", headers={**tus.base_headers(), "Retry-After": "600"},
                      free_bytes=free, upload_bytes=length)


def _forwarding_station(s: Session, principal: Principal, meta: dict[str, str]) -> uuid.UUID | None:
    """The station named in a relay's forward (`station_id` metadata), checked to be of the relay's contract."""
    if not meta.get("station_id"):
        return None
    station_id = metadata_uuid(meta, "station_id")
    found = s.scalar(select(Station.id).where(Station.id == station_id, Station.contract_id == principal.contract_id))
    if found is None:
        raise Problem(422, "The station this recording came from is not registered to this contract. Check the "
                      "relay's settings, or register the station again.", code="unknown-station",
                      headers=tus.base_headers())
    return station_id


def _station_clinic(ctx: Context, upload: Upload) -> uuid.UUID | None:
    """Where the item was taken: the uploading station's clinic."""
    if upload.station_id is None:
        return None
    from chairside.db.models import Station
    with ctx.db.session() as s:
        return s.scalar(select(Station.clinic_id).where(Station.id == upload.station_id))


