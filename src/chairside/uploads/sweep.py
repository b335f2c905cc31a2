"""The expiry sweep: uploads left unfinished too long, or finished long ago, go with their bytes."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import anyio
from sqlalchemy import delete, select

from chairside.context import Context
from chairside.db.models import Upload, utcnow
from chairside.uploads import s3stream


def sweep_expired(ctx: Context, now: datetime | None = None) -> int:
    """Remove uploads whose time ran out (unfinished) or that finished long ago; answer how many."""
    now = now or utcnow()
    with ctx.db.session() as s:
        ids = list(s.scalars(select(Upload.id).where(Upload.expires_at <= now).limit(10_000)))
        if ids:
            s.execute(delete(Upload).where(Upload.id.in_(ids)))
    for upload_id in ids:
        if s3stream.enabled(ctx):  # its parts and tail in the bucket (uploads/s3stream.py)
            s3stream.discard(ctx, upload_id)
        ctx.parts.remove(upload_id)
    # Files with no row: a crash between creating the file and committing the row, or while a finished upload's
    # bytes were staged (`.ingest`) or copied back (`.copy`) and the row went meanwhile.
    with ctx.db.session() as s:
        known = set(s.scalars(select(Upload.id)))
    stale = 0
    for pattern in ("*.part", "*.ingest", "*.copy"):
        for path in ctx.settings.uploads_dir.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                if path.stem not in known and now.timestamp() - path.stat().st_mtime > ctx.settings.upload_expiry_s:
                    path.unlink(missing_ok=True)
                    stale += 1
    return len(ids) + stale


async def sweeper(ctx: Context) -> None:
    while True:
        await asyncio.sleep(ctx.settings.upload_sweep_interval_s)
        with contextlib.suppress(Exception):
            await anyio.to_thread.run_sync(sweep_expired, ctx)
