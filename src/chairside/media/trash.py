"""The trash: move an item in, take it out, purge it for good. The one place for each of these rules.

Trashing and restoring are reversible flags (`deleted_at`) that carry their audit entry, their
changes-feed event and, where the role queues writes upstream (a relay), their outbox operation,
all in the caller's transaction. Purging removes the row and then each blob that nothing else
uses; the feed carries a tombstone, and the video's hours are freed in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.blobs import BlobStore
from chairside.context import Context
from chairside.db.engine import Database, rowcount
from chairside.db.models import Media, MediaDerivative, utcnow
from chairside.feed import changes
from chairside.media.items import not_found
from chairside.quota import usage
from chairside.relay import outbox
from chairside.tenancy import visibility


def trash(ctx: Context, s: Session, principal: Principal, media_id: uuid.UUID, *, at: datetime | None = None,
          detail: dict[str, Any] | None = None) -> tuple[Media, bool]:
    """Move a visible item to the trash (at `at`, default now); answers the item and whether it changed."""
    item = visibility.media_item(s, principal, media_id, include_deleted=True)
    if item is None:
        raise not_found()
    if item.deleted_at is not None:
        return item, False
    item.deleted_at = at or utcnow()
    audit.add(s, principal, "media.trash", patient_id=item.patient_id, media_id=item.id, detail=detail)
    changes.media_changed(s, item)
    if ctx.role.queues_writes_upstream:
        outbox.record(s, "media.trash", item.id, {"id": str(item.id), "at": item.deleted_at.isoformat()})
    return item, True


def restore(ctx: Context, s: Session, principal: Principal, media_id: uuid.UUID, *,
            detail: dict[str, Any] | None = None) -> tuple[Media, bool]:
    """Take a visible item out of the trash; answers the item and whether it changed."""
    item = visibility.media_item(s, principal, media_id, include_deleted=True)
    if item is None:
        raise not_found()
    if item.deleted_at is None:
        return item, False
    item.deleted_at = None
    audit.add(s, principal, "media.restore", patient_id=item.patient_id, media_id=item.id, detail=detail)
    changes.media_changed(s, item)
    if ctx.role.queues_writes_upstream:
        outbox.record(s, "media.restore", item.id, {"id": str(item.id), "at": utcnow().isoformat()})
    return item, True


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
        if rowcount(gone) != 1:  # purged by someone else meanwhile
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
