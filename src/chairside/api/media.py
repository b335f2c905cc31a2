"""Media items: list a patient's, read one, stream its bytes with Range, thumbnail, trash and restore."""

from __future__ import annotations

import base64
import binascii
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from chairside.api.deps import get_context
from chairside.api.patients import READERS, WRITERS
from chairside.api.principal import allow
from chairside.api.schemas import MediaList, MediaOut
from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.blobs.filesystem import FilesystemBlobStore
from chairside.context import Context
from chairside.db.models import Media
from chairside.errors import Problem
from chairside.media import move, trash
from chairside.media import teeth as media_teeth
from chairside.media.items import not_found
from chairside.media.ranges import BlobResponse
from chairside.patients.service import not_found as patient_not_found
from chairside.tenancy import visibility

router = APIRouter(prefix="/api/v1", tags=["media"])


def _cursor(item: Media) -> str:
    raw = f"{item.captured_at.isoformat()}|{item.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        when, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(when), uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "The page cursor is not valid; start again from the first page.",
                      code="bad-cursor") from None


@router.get("/patients/{patient_id}/media", response_model=MediaList,
            summary="A patient's photos and videos, newest first")
def list_patient_media(
    patient_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    kind: Literal["video", "image"] | None = None,
    trash: Annotated[bool, Query(description="List the items in the trash instead")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: str | None = None,
    tooth: Annotated[list[int] | None, Query(
        description="Only items that show this tooth (FDI, e.g. 16); repeat for any of several")] = None,
) -> MediaList:
    with ctx.db.read() as s:
        if visibility.patient(s, principal, patient_id) is None:
            raise patient_not_found()
        q = select(Media).where(Media.patient_id == patient_id, Media.contract_id == principal.contract_id)
        q = q.where(Media.deleted_at.is_not(None) if trash else Media.deleted_at.is_(None))
        if kind:
            q = q.where(Media.kind == kind)
        if tooth:
            q = q.where(media_teeth.shows_any(media_teeth.clean(tooth)))
        if cursor:
            when, ident = _parse_cursor(cursor)
            q = q.where(or_(Media.captured_at < when, (Media.captured_at == when) & (Media.id < ident)))
        rows = s.scalars(q.order_by(Media.captured_at.desc(), Media.id.desc()).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        page = MediaList(
            items=_with_teeth(s, rows),
            next_cursor=_cursor(rows[-1]) if more else None,
        )
    audit.record(ctx, principal, "patient.media", patient_id=patient_id)
    return page


def _with_teeth(s: Session, rows: Sequence[Media]) -> list[MediaOut]:
    """The items as the API shows them, each with its teeth (media/teeth.py; one query for the page)."""
    teeth = media_teeth.of_items(s, [m.id for m in rows])
    return [MediaOut.model_validate(m).model_copy(update={"teeth": teeth.get(m.id, [])}) for m in rows]


def _out(ctx: Context, item: Media) -> MediaOut:
    with ctx.db.read() as s:
        return _with_teeth(s, [item])[0]


def _item(ctx: Context, principal: Principal, media_id: uuid.UUID, *, include_deleted: bool = False) -> Media:
    generation = ctx.db.writes
    with ctx.db.read() as s:
        item = visibility.media_item(s, principal, media_id, include_deleted=include_deleted)
        if item is None:
            raise not_found()
    ctx.reads.put(_item_key(principal, media_id, include_deleted), generation, item)
    return item


def _item_key(principal: Principal, media_id: uuid.UUID, include_deleted: bool) -> tuple[object, ...]:
    return ("media", principal.contract_id, principal.clinic_ids, media_id, include_deleted)


async def _item_async(ctx: Context, principal: Principal, media_id: uuid.UUID) -> Media:
    """The item from the read cache (no I/O), else from the database in a worker thread."""
    hit = ctx.reads.get(_item_key(principal, media_id, False), ctx.db.writes)
    if isinstance(hit, Media):
        return hit
    return await anyio.to_thread.run_sync(_item, ctx, principal, media_id)


async def _audit_read(ctx: Context, principal: Principal, action: str, item: Media) -> None:
    """Record a read, in a worker thread, unless it was recorded moments ago (checked without I/O)."""
    if not audit.recorded_recently(principal, action, patient_id=item.patient_id, media_id=item.id):
        await anyio.to_thread.run_sync(lambda: audit.record(ctx, principal, action, checked=True,
                                                            patient_id=item.patient_id, media_id=item.id))


def _offloaded(ctx: Context, request: Request) -> bool:
    """nginx sends the bytes (docs/operations.md) of a plain file or an S3 object (not encrypted by the app); the
    app keeps what nginx would answer otherwise (If-Match and If-Unmodified-Since, which nginx checks against its
    own validators)."""
    return (ctx.settings.offload == "nginx" and (isinstance(ctx.blobs, FilesystemBlobStore) or _s3(ctx))
            and "if-match" not in request.headers and "if-unmodified-since" not in request.headers)


def _s3(ctx: Context) -> bool:
    module = sys.modules.get("chairside.blobs.s3")  # never loads boto3 for a filesystem store
    return module is not None and isinstance(ctx.blobs, module.S3BlobStore)


def _via_s3(ctx: Context, response: BlobResponse) -> BlobResponse:
    """For an S3 store, point nginx's X-Accel-Redirect at the location that proxies to a presigned URL."""
    target = response.headers.get("x-accel-redirect")
    if target is None or not _s3(ctx):
        return response
    from chairside.blobs.s3 import ACCEL_S3_RANGE, ACCEL_S3_WHOLE, S3BlobStore
    from chairside.media.ranges import ACCEL_RANGE

    assert isinstance(ctx.blobs, S3BlobStore)
    where = ACCEL_S3_RANGE if target.startswith(ACCEL_RANGE + "/") else ACCEL_S3_WHOLE
    response.headers["x-accel-redirect"] = where + ctx.blobs.presigned_path(target.rsplit("/", 1)[1])
    return response


@router.get("/media/{media_id}", response_model=MediaOut, summary="One photo or video's details")
def get_media(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MediaOut:
    item = _item(ctx, principal, media_id, include_deleted=True)
    audit.record(ctx, principal, "media.read", patient_id=item.patient_id, media_id=item.id)
    return _out(ctx, item)


_CONTENT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"video/mp4": {}, "image/jpeg": {}}}, 206: {"description": "Partial content"},
    304: {"description": "Not modified"}, 416: {"description": "Range not satisfiable"},
}


@router.get("/media/{media_id}/content", summary="The original bytes, with HTTP Range for seeking",
            response_class=Response, responses=_CONTENT_RESPONSES, operation_id="get_media_content")
@router.head("/media/{media_id}/content", summary="The original bytes' length and validators",
             response_class=Response, responses=_CONTENT_RESPONSES, operation_id="head_media_content")
async def get_content(
    media_id: uuid.UUID,
    request: Request,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    range: Annotated[str | None, Header()] = None,
    if_range: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    item = await _item_async(ctx, principal, media_id)
    await _audit_read(ctx, principal, "media.content", item)
    if ctx.role.fetches_blobs_upstream:  # from the relay's cache, or streamed from the cloud while it is cached
        from chairside.relay import cache  # here: a cloud never loads the relay's code (and its memory)

        return await cache.serve(ctx, item, request, range, if_range, if_none_match, request.method == "HEAD")
    return _via_s3(ctx, BlobResponse(
        ctx.blobs, item.sha256, item.size, item.mime,
        range_header=range, if_range=if_range, if_none_match=if_none_match,
        filename=item.filename, head=request.method == "HEAD", chunk_size=ctx.settings.serve_chunk_bytes,
        accel=_offloaded(ctx, request),
    ))


@router.get("/media/{media_id}/thumbnail", summary="A small JPEG preview", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
async def get_thumbnail(
    media_id: uuid.UUID,
    request: Request,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    item = await _item_async(ctx, principal, media_id)
    if item.thumb_sha256 is None:
        raise Problem(404, "This item has no preview yet.", code="no-thumbnail")
    await _audit_read(ctx, principal, "media.thumbnail", item)
    if ctx.role.fetches_blobs_upstream:  # from the relay, or fetched from the cloud now
        from chairside.relay import cache

        return await cache.serve_thumbnail(ctx, item, if_none_match)
    info = await anyio.to_thread.run_sync(ctx.blobs.stat, item.thumb_sha256)
    if info is None:
        raise Problem(404, "This item's preview is missing; it will be made again.", code="no-thumbnail")
    return _via_s3(ctx, BlobResponse(ctx.blobs, item.thumb_sha256, info.size, "image/jpeg",
                                     if_none_match=if_none_match, accel=_offloaded(ctx, request)))


class MediaPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: uuid.UUID = Field(description="The patient the item belongs to (moves a mis-filed item).")


@router.patch("/media/{media_id}", response_model=MediaOut, summary="Move a mis-filed item to another patient")
def patch_media(
    media_id: uuid.UUID,
    body: MediaPatch,
    principal: Annotated[Principal, allow("admin", "viewer")],
    ctx: Annotated[Context, Depends(get_context)],
) -> MediaOut:
    return _out(ctx, move.move(ctx, principal, media_id, body.patient_id))  # audited, in the feed (media/move.py)


@router.delete("/media/{media_id}", response_model=MediaOut, summary="Move an item to the trash (restorable)")
def trash_media(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MediaOut:
    with ctx.db.session() as s:
        item, _ = trash.trash(ctx, s, principal, media_id)
    return _out(ctx, item)


@router.post("/media/{media_id}/restore", response_model=MediaOut, summary="Take an item out of the trash")
def restore_media(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MediaOut:
    with ctx.db.session() as s:
        item, _ = trash.restore(ctx, s, principal, media_id)
    return _out(ctx, item)


@router.post("/media/{media_id}/purge", status_code=204, summary="Delete an item in the trash for good")
def purge(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow("admin", "operator")],
    ctx: Annotated[Context, Depends(get_context)],
) -> Response:
    item = _item(ctx, principal, media_id, include_deleted=True)
    if item.deleted_at is None:
        raise Problem(409, "Only items in the trash can be deleted for good. Move it to the trash first.",
                      code="not-in-trash")
    trash.purge_media(ctx.db, ctx.blobs, item.id)
    audit.record(ctx, principal, "media.purge", patient_id=item.patient_id, media_id=item.id)
    return Response(status_code=204)
