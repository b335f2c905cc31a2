"""A photo as every browser can show it: an upright JPEG, made once from HEIC (or a very large photo) and
kept as a blob (a `media_derivatives` row of kind `display`). The original is never changed; a photo that
browsers already show is served as it is.

Making a copy takes seconds and much memory, so one photo is never converted twice at once: requests for
the same item wait on its lock (striped over a few locks) and then find the copy made.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.blobs import BlobStore
from chairside.context import Context
from chairside.db.models import Media, MediaDerivative
from chairside.errors import Problem
from chairside.keys.keyring import contract_blobs
from chairside.media import heavy
from chairside.media.items import not_found
from chairside.mediafile import MediaError, make_display_jpeg
from chairside.tenancy import visibility

DISPLAY = "display"
#: Longest side of a display JPEG; a JPEG or PNG this size or smaller is shown as it is.
MAX_SIDE = 2560
_BROWSER_READY = frozenset({"image/jpeg", "image/png"})
_making = tuple(threading.Lock() for _ in range(32))  # striped: one photo is never converted twice at once


@dataclass(frozen=True)
class Shown:
    """The bytes to send for a photo shown in the browser: its original, or its display copy."""

    sha256: str
    size: int
    mime: str


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
                with heavy.slot(ctx.settings.heavy_work_parallel):
                    data = make_display_jpeg(source, MAX_SIDE, ctx.settings.max_photo_pixels)
            except MediaError:
                raise Problem(422, "This photo cannot be shown in the browser (it could not be decoded). "
                              "Download the original instead.", code="no-display") from None
        sha = hashlib.sha256(data).hexdigest()
        contract_blobs(ctx.blobs, item.contract_id).put_stream(sha, [data])  # the contract's own data key
        fresh = MediaDerivative(media_id=item.id, kind=DISPLAY, sha256=sha, size=len(data), mime="image/jpeg")
        with contextlib.suppress(IntegrityError), ctx.db.session() as s:
            existing = s.get(MediaDerivative, (item.id, DISPLAY))
            if existing is not None:
                existing.sha256, existing.size = sha, len(data)
            else:
                s.add(fresh)
        return fresh


def for_display(ctx: Context, principal: Principal, media_id: uuid.UUID) -> Shown:
    """What to send for a visible photo shown in the browser (making its display copy on first ask); the
    read is recorded in the audit trail. 404 for an item out of sight, or for a video."""
    with ctx.db.read() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise not_found()
    if item.kind != "image":
        raise Problem(404, "Only photos have a display copy; a video plays from its content.", code="not-a-photo")
    audit.record(ctx, principal, "media.content", patient_id=item.patient_id, media_id=item.id)
    if shown_as_is(item):
        return Shown(item.sha256, item.size, item.mime)
    copy = display_copy(ctx, item)
    return Shown(copy.sha256, copy.size, copy.mime)


def cached_display(ctx: Context, media_id: uuid.UUID) -> str | None:
    """The stored display copy's SHA-256, if one was made (for tests and tools)."""
    with ctx.db.read() as s:
        return s.scalar(select(MediaDerivative.sha256).where(MediaDerivative.media_id == media_id,
                                                              MediaDerivative.kind == DISPLAY))
