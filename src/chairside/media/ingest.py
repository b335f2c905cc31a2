"""Turn a complete file on local disk into a stored media item.

Used by the tus upload route when the last byte arrives, by the demo seeder and,
later, by the SSD import. The order is what makes a crash harmless: the blob is
durable before the row that names it is committed, so there is never a row without
its bytes (at worst a blob without a row, which a sweep can collect).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.blobs import BlobStore
from chairside.db.engine import Database
from chairside.db.models import Media, utcnow
from chairside.errors import Problem
from chairside.feed import changes
from chairside.keys.keyring import contract_blobs
from chairside.media import heavy
from chairside.mediafile import (
    CorruptMedia,
    UnsupportedMedia,
    make_thumbnail,
    probe_image,
    probe_video,
    sniff,
)
from chairside.quota import usage

DEFAULT_MAX_PIXELS = 50_000_000  # settings.max_photo_pixels


@dataclass(frozen=True)
class IngestRequest:
    path: Path
    sha256: str
    size: int
    media_id: uuid.UUID
    contract_id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    filename: str
    captured_at: datetime | None
    source: str  # station | viewer | migration
    station_id: uuid.UUID | None = None
    # The upload began while the contract was at or over its video limit: a video is refused (usage.py).
    created_over_limit: bool = False
    notice_percents: tuple[int, ...] = usage.DEFAULT_NOTICE_PERCENTS
    # The row's transaction also queues the upload upstream and pins its blobs (a relay: relay/uploader.py).
    queue_upstream: bool = False


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _conflict(media_id: uuid.UUID) -> Problem:
    return Problem(
        409,
        f"The media id {media_id} is already used for a different file. The capture software "
        "must make a new id for each new recording or photo.",
        code="media-id-conflict",
    )


def existing(db: Database, req: IngestRequest) -> Media | None:
    """The item already stored under this id with these bytes, if any; 409 if the bytes differ."""
    with db.session() as s:
        found = s.get(Media, req.media_id)
        if found is None:
            return None
        if found.contract_id != req.contract_id or found.sha256 != req.sha256:
            raise _conflict(req.media_id)
        return found


def analyse(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, str, dict[str, object], datetime | None]:
    """kind, mime, technical fields and the capture time found in the file (EXIF), or a Problem."""
    try:
        sniffed = sniff(path)
        if sniffed.kind == "video":
            v = probe_video(path)
            fields: dict[str, object] = {
                "duration_s": v.duration_s, "width": v.width, "height": v.height,
                "fps": v.fps, "codec": v.codec, "bitrate": v.bitrate,
            }
            return "video", sniffed.mime, fields, None
        img = probe_image(path, max_pixels)
        fields = {"width": img.width, "height": img.height, "orientation": img.orientation}
        return "image", sniffed.mime, fields, img.captured_at
    except UnsupportedMedia as e:
        if e.code == "media.unsupported.too_large":  # over settings.max_photo_pixels, refused before decoding
            raise Problem(422, f"この写真は大きすぎます（{e.detail}）。小さいサイズで書き出して送り直してください。 / "
                          f"{e.message}", code="photo-too-large") from e
        raise Problem(415, e.message, code="unsupported-media") from e
    except CorruptMedia as e:
        raise Problem(422, e.message, code="corrupt-media") from e


def ingest(db: Database, blobs: BlobStore, req: IngestRequest, *, thumbnail_max_side: int = 480,
           max_pixels: int = DEFAULT_MAX_PIXELS, heavy_parallel: int = 2) -> Media:
    """Store a finished file as a media item (in a worker thread: the probe and thumbnail decode here, holding
    one of `heavy_parallel` slots of heavy work, media/heavy.py)."""
    found = existing(db, req)
    if found is not None:
        return found
    with heavy.slot(heavy_parallel):
        kind, mime, fields, exif_time = analyse(req.path, max_pixels)
    if kind == "video" and req.created_over_limit:
        with db.read() as s:  # refuse before storing any bytes; count_video below re-checks under the lock
            full = usage.still_at_limit(s, req.contract_id)
        if full is not None:
            raise usage.limit_problem(*full)
    try:
        with heavy.slot(heavy_parallel):
            thumb = make_thumbnail(req.path, kind, thumbnail_max_side, max_pixels)
    except (UnsupportedMedia, CorruptMedia) as e:
        raise Problem(422, e.message, code="corrupt-media") from e
    thumb_sha = hashlib.sha256(thumb).hexdigest()
    owned = contract_blobs(blobs, req.contract_id)  # encrypted at rest under the contract's own data key
    owned.put_stream(thumb_sha, [thumb])
    owned.put_file(req.sha256, req.path, verified=True)
    item = Media(
        id=req.media_id,
        contract_id=req.contract_id,
        clinic_id=req.clinic_id,
        patient_id=req.patient_id,
        kind=kind,
        mime=mime,
        sha256=req.sha256,
        size=req.size,
        filename=req.filename,
        captured_at=req.captured_at or exif_time or utcnow(),
        thumb_sha256=thumb_sha,
        source=req.source,
        station_id=req.station_id,
        **fields,
    )
    try:
        with db.session() as s:
            s.add(item)
            if kind == "video":
                s.flush()  # a second row for this id fails here, before the counter moves
                usage.count_video(s, item, created_over_limit=req.created_over_limit, percents=req.notice_percents)
            changes.media_changed(s, item)  # the changes feed: in the same transaction as the row
            if req.queue_upstream:  # acknowledged at a relay = queued for the cloud, never evicted before it is there
                queue_upload(s, item, thumb_size=len(thumb))
    except IntegrityError:
        # Another request stored the same id first: same bytes is success, other bytes a conflict.
        found = existing(db, req)
        if found is None:
            raise
        return found
    return item


def queue_upload(s: Session, item: Media, *, thumb_size: int = 0) -> None:
    """Relay: record the media.upload op (body per relay/outbox.py) and pin its blobs, in `s`'s transaction."""
    from chairside.db.models import CachedBlob
    from chairside.relay import outbox
    s.flush()  # a second row for this id fails before anything is queued
    body = {
        "id": str(item.id), "patient_id": str(item.patient_id), "sha256": item.sha256, "size": item.size,
        "filename": item.filename, "captured_at": item.captured_at.isoformat(),
        "station_id": str(item.station_id) if item.station_id else None, "kind": item.kind,
        "duration_ms": usage.video_ms(item.duration_s) if item.kind == "video" else None,
    }
    outbox.record(s, "media.upload", item.id, body, size=item.size)
    for sha, size in ((item.sha256, item.size), (item.thumb_sha256, thumb_size)):
        if not sha:
            continue
        cached = s.get(CachedBlob, sha)
        if cached is None:
            s.add(CachedBlob(sha256=sha, size=size, pinned=True, last_used_at=utcnow()))
        else:
            cached.pinned, cached.last_used_at = True, utcnow()
