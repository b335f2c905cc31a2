"""Purging: remove a trashed item's row, then its blobs when nothing else uses them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select

from chairside.blobs import BlobStore
from chairside.db.engine import Database
from chairside.db.models import Media, MediaDerivative, utcnow
from chairside.feed import changes
from chairside.quota import usage


def purge_media(db: Database, blobs: BlobStore, media_id: uuid.UUID) -> bool:
    with db.session() as s:
        item = s.get(Media, media_id)
        if item is None or item.deleted_at is None:
            return False
        hashes = {h for h in (item.sha256, item.thumb_sha256) if h}
        # Browser-ready copies (a HEIC's display JPEG) go with the item; their rows cascade.
        hashes |= set(s.scalars(select(MediaDerivative.sha256).where(MediaDerivative.media_id == media_id)))
        gone = s.execute(delete(Media).where(Media.id == media_id, Media.deleted_at.is_not(None))
                         .execution_options(synchronize_session=False))
        if gone.rowcount != 1:  # type: ignore[attr-defined]  # purged by someone else meanwhile
            return False
        changes.media_purged(s, item)  # the tombstone followers act on (drop the row, free the blob)
        if item.kind == "video":
            usage.uncount_video(s, item)  # frees its hours in the same transaction as the delete (and tells the feed)
    for sha in hashes:
        # The same bytes may be stored for another item (or be its thumbnail): keep them then.
        with db.session() as s:
            used = s.scalar(select(Media.id).where(or_(Media.sha256 == sha, Media.thumb_sha256 == sha)).limit(1))
            copy = s.scalar(select(MediaDerivative.media_id).where(MediaDerivative.sha256 == sha).limit(1))
        if used is None and copy is None:
            blobs.delete(sha)
    return True


def purge_older_than(db: Database, blobs: BlobStore, days: int, now: datetime | None = None) -> int:
    cutoff = (now or utcnow()) - timedelta(days=days)
    with db.session() as s:
        ids = list(s.scalars(select(Media.id).where(Media.deleted_at.is_not(None), Media.deleted_at < cutoff)))
    return sum(purge_media(db, blobs, i) for i in ids)
