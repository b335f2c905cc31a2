"""A photo as every browser can show it: an upright JPEG, made once from HEIC (or a very large photo) and
kept as a blob. The original is never changed; a photo that browsers already show is served as it is."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
import uuid
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chairside.api.deps import get_context
from chairside.api.patients import READERS
from chairside.api.principal import allow
from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.blobs import BlobStore
from chairside.context import Context
from chairside.db.models import Media, MediaDerivative
from chairside.errors import Problem
from chairside.media.items import not_found
from chairside.media.ranges import BlobResponse
from chairside.mediafile import MediaError, make_display_jpeg
from chairside.tenancy import visibility

router = APIRouter(prefix="/api/v1", tags=["media"])
DISPLAY = "display"
#: Longest side of a display JPEG; a JPEG or PNG this size or smaller is shown as it is.
MAX_SIDE = 2560
_BROWSER_READY = frozenset({"image/jpeg", "image/png"})
_making = tuple(threading.Lock() for _ in range(32))  # striped: one photo is never converted twice at once


def shown_as_is(item: Media) -> bool:
    return item.mime in _BROWSER_READY and max(item.width or 0, item.height or 0) <= MAX_SIDE


def _lock_for(media_id: uuid.UUID) -> threading.Lock:
    return _making[media_id.int % len(_making)]


def _copy_to(blobs: BlobStore, sha256: str, path: str) -> None:
    with blobs.open_range(sha256) as chunks, open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)


def display_copy(ctx: Context, item: Media) -> MediaDerivative:
    """The item's display JPEG, made (once, even when asked for by several requests at a time) and stored."""
    with _lock_for(item.id):
        with ctx.db.read() as s:
            row = s.get(MediaDerivative, (item.id, DISPLAY))
        if row is not None and ctx.blobs.stat(row.sha256) is not None:
            return row
        with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp:
            source = f"{tmp}/original"
            _copy_to(ctx.blobs, item.sha256, source)
            try:
                data = make_display_jpeg(source, MAX_SIDE)
            except MediaError:
                raise Problem(422, "This photo cannot be shown in the browser (it could not be decoded). "
                              "Download the original instead.", code="no-display") from None
        sha = hashlib.sha256(data).hexdigest()
        ctx.blobs.put_stream(sha, [data])
        fresh = MediaDerivative(media_id=item.id, kind=DISPLAY, sha256=sha, size=len(data), mime="image/jpeg")
        with contextlib.suppress(IntegrityError), ctx.db.session() as s:
            existing = s.get(MediaDerivative, (item.id, DISPLAY))
            if existing is not None:
                existing.sha256, existing.size = sha, len(data)
            else:
                s.add(fresh)
        return fresh


@router.get("/media/{media_id}/display", summary="A photo as an upright JPEG every browser shows (HEIC included)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}, "image/png": {}}},
                                                304: {"description": "Not modified"}})
async def get_display(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    def item_of() -> Media:
        with ctx.db.read() as s:
            item = visibility.media_item(s, principal, media_id)
            if item is None:
                raise not_found()
            return item

    item = await anyio.to_thread.run_sync(item_of)
    if item.kind != "image":
        raise Problem(404, "Only photos have a display copy; a video plays from its content.", code="not-a-photo")
    await anyio.to_thread.run_sync(lambda: audit.record(ctx, principal, "media.content", patient_id=item.patient_id,
                                                        media_id=item.id))
    if shown_as_is(item):
        return BlobResponse(ctx.blobs, item.sha256, item.size, item.mime, if_none_match=if_none_match,
                            chunk_size=ctx.settings.serve_chunk_bytes)
    copy = await anyio.to_thread.run_sync(display_copy, ctx, item)
    return BlobResponse(ctx.blobs, copy.sha256, copy.size, copy.mime, if_none_match=if_none_match,
                        chunk_size=ctx.settings.serve_chunk_bytes)


def cached_display(ctx: Context, media_id: uuid.UUID) -> str | None:
    """The stored display copy's SHA-256, if one was made (for tests and tools)."""
    with ctx.db.read() as s:
        return s.scalar(select(MediaDerivative.sha256).where(MediaDerivative.media_id == media_id,
                                                              MediaDerivative.kind == DISPLAY))
