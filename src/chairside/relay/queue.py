"""The outbox's rows as the uploader works through them (relay/outbox.py records them).

Reads and writes of the relay's database, each its own short transaction (no transaction spans a
request to the cloud): call them in a worker thread. Pending ops are taken in `id` order; a
media.upload's tus URL is saved before any byte is sent and its offset after each request; an op
ends done (for a media.upload, its blobs are unpinned: the cache may evict them from then on) or
failed (kept, with the cloud's message, for a person). `status_figures` sums them up for the
relay's status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from chairside.context import Context
from chairside.db.models import CachedBlob, Media, OutboxOp, utcnow

MEDIA = "media.upload"
SCAN = 1000  # pending ops looked at per pass


@dataclass
class Op:
    """An outbox row as the uploader carries it."""

    id: int
    op_id: uuid.UUID
    kind: str
    entity_id: uuid.UUID
    body: dict[str, Any]
    size: int
    sent_bytes: int
    upstream_url: str | None
    attempts: int


def pending(ctx: Context) -> list[Any]:
    """The first pending ops (id, kind, entity_id, next_try_at), in order."""
    with ctx.db.read() as s:
        return list(s.execute(
            select(OutboxOp.id, OutboxOp.kind, OutboxOp.entity_id, OutboxOp.next_try_at)
            .where(OutboxOp.done_at.is_(None), OutboxOp.failed_at.is_(None))
            .order_by(OutboxOp.id).limit(SCAN)
        ).all())


def load(ctx: Context, op_id: int) -> Op | None:
    """The op, or None when it is done or failed already."""
    with ctx.db.read() as s:
        row = s.get(OutboxOp, op_id)
        if row is None or row.done_at is not None or row.failed_at is not None:
            return None
        return Op(row.id, row.op_id, row.kind, row.entity_id, dict(row.body), row.size, row.sent_bytes,
                  row.upstream_url, row.attempts)


def mark_retry(ctx: Context, op: Op, why: str, attempts: int, wait: float) -> None:
    with ctx.db.session() as s:
        s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(
            attempts=attempts, last_error=why[:1000], next_try_at=utcnow() + timedelta(seconds=wait)))
    op.attempts = attempts


def mark_failed(ctx: Context, op: Op, why: str) -> None:
    with ctx.db.session() as s:
        s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(
            attempts=op.attempts + 1, last_error=why[:1000], failed_at=utcnow()))


def save_url(ctx: Context, op: Op, url: str | None) -> None:
    """The op's tus upload at the cloud (None: there is none, the next try creates one); its offset is 0."""
    with ctx.db.session() as s:
        s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(upstream_url=url, sent_bytes=0))
    op.upstream_url = url


def save_offset(ctx: Context, op: Op, offset: int) -> None:
    with ctx.db.session() as s:
        s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(sent_bytes=offset))


def mark_done(ctx: Context, op: Op) -> None:
    with ctx.db.session() as s:
        s.execute(update(OutboxOp).where(OutboxOp.id == op.id).values(
            done_at=utcnow(), last_error=None, next_try_at=None,
            sent_bytes=op.size if op.kind == MEDIA else 0))
        if op.kind == MEDIA:
            _unpin(s, op)


def _unpin(s: Session, op: Op) -> None:
    """The cloud holds the bytes: the cache may evict them, unless another pending op still needs them."""
    shas = [op.body["sha256"]]
    thumb = s.scalar(select(Media.thumb_sha256).where(Media.id == op.entity_id))
    if thumb:
        shas.append(thumb)
    for sha in shas:
        still_needed = s.scalar(
            select(func.count()).select_from(OutboxOp).join(Media, Media.id == OutboxOp.entity_id).where(
                OutboxOp.kind == MEDIA, OutboxOp.done_at.is_(None), OutboxOp.failed_at.is_(None),
                OutboxOp.id != op.id, (Media.sha256 == sha) | (Media.thumb_sha256 == sha))
        )
        if not still_needed:
            s.execute(update(CachedBlob).where(CachedBlob.sha256 == sha).values(pinned=False))


def status_figures(ctx: Context) -> dict[str, Any]:
    """The outbox's figures for the relay's status (a read; safe from any thread)."""
    now = utcnow()
    with ctx.db.read() as s:
        waiting = (OutboxOp.done_at.is_(None)) & (OutboxOp.failed_at.is_(None))
        items, oldest = s.execute(select(func.count(), func.min(OutboxOp.created_at)).where(waiting)).one()
        total, sent = s.execute(
            select(func.coalesce(func.sum(OutboxOp.size), 0), func.coalesce(func.sum(OutboxOp.sent_bytes), 0))
            .where(waiting, OutboxOp.kind == MEDIA)
        ).one()
        failed = s.scalar(select(func.count()).select_from(OutboxOp).where(OutboxOp.failed_at.is_not(None)))
        failures = [
            {"id": str(r.entity_id), "kind": r.kind, "failed_at": r.failed_at.isoformat(), "error": r.last_error}
            for r in s.execute(
                select(OutboxOp.entity_id, OutboxOp.kind, OutboxOp.failed_at, OutboxOp.last_error)
                .where(OutboxOp.failed_at.is_not(None)).order_by(OutboxOp.id.desc()).limit(10)
            )
        ]
        retrying = s.scalar(select(OutboxOp.last_error).where(waiting, OutboxOp.last_error.is_not(None))
                            .order_by(OutboxOp.id).limit(1))
    return {
        "pending_items": int(items or 0),
        "pending_bytes": max(0, int(total or 0) - int(sent or 0)),
        "oldest_pending_age_s": round((now - oldest).total_seconds(), 1) if oldest is not None else None,
        "failed_items": int(failed or 0),
        "failures": failures,
        "retrying_because": retrying,
    }
