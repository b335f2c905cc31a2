"""Share links: make and withdraw them (accounts of the clinic), and what a link opens (anyone with its URL).

The rules are in sharing/links.py; the page a patient opens is web/routes.py (`/s/{token}`), which uses the
public routes below for the bytes. Cloud only: a relay never serves them (it is not reachable from a phone).
"""

from __future__ import annotations

import io
import uuid
from datetime import datetime
from typing import Annotated

import anyio
import segno
from fastapi import APIRouter, BackgroundTasks, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from chairside.api.deps import get_context
from chairside.api.principal import allow, client_address
from chairside.api.problems import problem_response
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Media
from chairside.errors import Problem
from chairside.media import derivatives
from chairside.media.ranges import BlobResponse
from chairside.sharing import links

router = APIRouter(prefix="/api/v1", tags=["share links"])
MAKERS = ("admin", "viewer")


class ShareLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    media_ids: list[uuid.UUID] = Field(min_length=1, max_length=links.MAX_ITEMS)
    expires_in_s: int | None = Field(default=None, description="Lifetime in seconds; default the "
                                     "`share_link_ttl_s` setting (7 days), at most `share_link_max_ttl_s`.")


class ShareLinkOut(BaseModel):
    id: uuid.UUID
    url: str = Field(description="Opens the items read-only, without credentials. Shown once: only its hash is kept.")
    expires_at: datetime
    media_ids: list[uuid.UUID]
    qr_svg: str = Field(description="The URL as a QR code (SVG), to show on screen.")


class ShareLinkInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    patient_id: uuid.UUID
    media_ids: list[uuid.UUID]
    created_at: datetime
    expires_at: datetime


class ShareLinkList(BaseModel):
    items: list[ShareLinkInfo]


class SharedItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: str
    captured_at: datetime
    width: int | None
    height: int | None
    duration_s: float | None


class SharedOut(BaseModel):
    clinic_name: str
    expires_at: datetime
    items: list[SharedItem]


def base_url(ctx: Context, request: Request) -> str:
    return (ctx.settings.share_base_url or str(request.base_url)).rstrip("/")


def qr_svg(url: str) -> str:
    """A standalone SVG document (with its namespace, so a browser shows it as an image)."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=4, border=2, dark="#000", light="#fff", xmldecl=False,
                                    svgns=True, svgclass=None, lineclass=None)
    return out.getvalue().decode()


@router.post("/share-links", status_code=201, response_model=ShareLinkOut,
             summary="Share some of one patient's items through an expiring, revocable link",
             responses={404: {"description": "An item is missing or out of sight"}})
def create_share_link(
    body: ShareLinkIn,
    request: Request,
    background: BackgroundTasks,
    principal: Annotated[Principal, allow(*MAKERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> ShareLinkOut:
    link, token = links.create(ctx, principal, body.media_ids, body.expires_in_s)
    background.add_task(links.prepare, ctx, link.id)  # HEIC display copies, before the patient's first view
    url = f"{base_url(ctx, request)}/s/{token}"
    return ShareLinkOut(id=link.id, url=url, expires_at=link.expires_at,
                        media_ids=[uuid.UUID(m) for m in link.media_ids], qr_svg=qr_svg(url))


@router.get("/patients/{patient_id}/share-links", response_model=ShareLinkList,
            summary="A patient's share links still open (their URLs are not kept: only revoke them)",
            responses={404: {"description": "No such patient in sight"}})
def list_share_links(
    patient_id: uuid.UUID,
    principal: Annotated[Principal, allow(*MAKERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> ShareLinkList:
    return ShareLinkList(items=[ShareLinkInfo.model_validate(link)
                                for link in links.links_of(ctx, principal, patient_id)])


@router.delete("/share-links/{link_id}", status_code=204, summary="Withdraw a share link at once")
def revoke_share_link(
    link_id: uuid.UUID,
    principal: Annotated[Principal, allow(*MAKERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Response:
    links.revoke(ctx, principal, link_id)
    return Response(status_code=204)


# --- what a link opens: public, answered alike for a wrong, expired or revoked token ---------------------------

def _device(request: Request) -> str:
    return request.headers.get("user-agent", "")[:100]


def _opened(ctx: Context, token: str) -> links.Shared:
    return links.resolve(ctx, token)


def _alike(problem: Problem) -> Response:
    """A refusal without `instance`: the path holds the token, and every refused link must answer the same bytes."""
    return _private(problem_response(problem))


@router.get("/shared/{token}", response_model=SharedOut, summary="What a share link shows (no credentials)")
def get_shared(
    token: str,
    request: Request,
    ctx: Annotated[Context, Depends(get_context)],
    _: Annotated[None, allow()],
) -> SharedOut | Response:
    try:
        shared = _opened(ctx, token)
    except Problem as refused:
        return _alike(refused)
    links.record_view(ctx, shared, "share.view", address=client_address(request), device=_device(request))
    return SharedOut(clinic_name=shared.clinic_name, expires_at=shared.link.expires_at,
                     items=[SharedItem.model_validate(m) for m in shared.items])


def _private(response: Response) -> Response:
    response.headers["cache-control"] = "private, no-store"  # a withdrawn link stops showing at once
    response.headers["referrer-policy"] = "no-referrer"
    return response


async def _shared_item(ctx: Context, token: str, media_id: uuid.UUID, request: Request) -> Media:
    shared = await anyio.to_thread.run_sync(_opened, ctx, token)
    item = shared.item(media_id)
    await anyio.to_thread.run_sync(lambda: links.record_view(
        ctx, shared, "share.content", address=client_address(request), device=_device(request), media_id=item.id))
    return item


@router.get("/shared/{token}/media/{media_id}/content", response_class=Response,
            summary="A shared photo (as JPEG when the original is HEIC) or video (with Range)",
            responses={200: {"content": {"video/mp4": {}, "image/jpeg": {}}}, 206: {"description": "Partial"},
                       416: {"description": "Range not satisfiable"}})
async def get_shared_content(
    token: str,
    media_id: uuid.UUID,
    request: Request,
    ctx: Annotated[Context, Depends(get_context)],
    _: Annotated[None, allow()],
    range: Annotated[str | None, Header()] = None,
    if_range: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        item = await _shared_item(ctx, token, media_id, request)
    except Problem as refused:
        return _alike(refused)
    sha, size, mime = item.sha256, item.size, item.mime
    if item.kind == "image" and not derivatives.shown_as_is(item):  # HEIC (or huge): its display JPEG
        copy = await anyio.to_thread.run_sync(derivatives.display_copy, ctx, item)
        sha, size, mime = copy.sha256, copy.size, copy.mime
    return _private(BlobResponse(ctx.blobs, sha, size, mime, range_header=range, if_range=if_range,
                                 head=request.method == "HEAD", chunk_size=ctx.settings.serve_chunk_bytes))


@router.get("/shared/{token}/media/{media_id}/thumbnail", response_class=Response,
            summary="A shared item's small JPEG preview", responses={200: {"content": {"image/jpeg": {}}}})
async def get_shared_thumbnail(
    token: str,
    media_id: uuid.UUID,
    request: Request,
    ctx: Annotated[Context, Depends(get_context)],
    _: Annotated[None, allow()],
) -> Response:
    try:
        item = await _shared_item(ctx, token, media_id, request)
    except Problem as refused:
        return _alike(refused)
    info = None if item.thumb_sha256 is None else await anyio.to_thread.run_sync(ctx.blobs.stat, item.thumb_sha256)
    if item.thumb_sha256 is None or info is None:
        raise Problem(404, "この項目のプレビューはまだありません。 / This item has no preview yet.",
                      code="no-thumbnail")
    return _private(BlobResponse(ctx.blobs, item.thumb_sha256, info.size, "image/jpeg"))
