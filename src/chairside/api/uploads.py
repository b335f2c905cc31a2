"""tus 1.0 at /api/v1/uploads/: creation, creation-with-upload, termination, expiration, checksum.

The HTTP binding only: headers in, headers out. What an upload is and how its bytes become a
stored media item is uploads/service.py.
"""

from __future__ import annotations

import secrets
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Request, Response

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.errors import Problem
from chairside.uploads import service, tus
from chairside.uploads.tus import bad, tus_headers

router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])

WRITERS = ("station", "admin", "viewer", "relay")


@router.options("/", dependencies=[allow()], include_in_schema=False)
@router.options("/{upload_id}", dependencies=[allow()], include_in_schema=False)
def options() -> Response:
    return Response(status_code=204, headers=tus_headers(None, **{
        "Tus-Version": tus.VERSION,
        "Tus-Extension": tus.EXTENSIONS,
        "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS),
    }))


@router.post(
    "/",
    status_code=201,
    summary="Create an upload (tus creation, optionally with its first bytes)",
    responses={201: {"description": "Created; Location names the upload"}},
)
async def create(
    request: Request,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
    tus_resumable: Annotated[str | None, Header()] = None,
    upload_length: Annotated[str | None, Header()] = None,
    upload_metadata: Annotated[str | None, Header()] = None,
    upload_checksum: Annotated[str | None, Header()] = None,
) -> Response:
    tus.require_version(tus_resumable)
    if request.headers.get("upload-defer-length"):
        raise bad("Send the file's size in Upload-Length; deferred lengths are not supported.")
    length = tus.parse_offset(upload_length, "Upload-Length")
    if length == 0:
        raise bad("The file is empty (0 bytes). Check that the recording finished, then upload it again.",
                   code="empty-file")
    if length > ctx.settings.max_upload_bytes:
        gib = ctx.settings.max_upload_bytes / (1 << 30)
        raise Problem(413, f"The file is larger than the {gib:g} GiB this server accepts in one upload.",
                      code="too-large", headers=tus.base_headers())
    meta = tus.parse_metadata(upload_metadata)
    upload_id = secrets.token_hex(16)
    upload = await anyio.to_thread.run_sync(service.create, ctx, principal, upload_id, length, meta, upload_metadata)
    location = f"/api/v1/uploads/{upload_id}"
    has_body = request.headers.get("content-type", "").startswith(tus.OFFSET_CONTENT_TYPE) and (
        request.headers.get("content-length", "0") != "0" or "chunked" in request.headers.get("transfer-encoding", "")
    )
    if has_body:
        try:
            upload = await service.receive(ctx, principal, upload, request.stream(),
                                           request.headers.get("content-length"), tus.parse_checksum(upload_checksum))
        except Problem as refused:
            # The upload exists even when its first bytes failed (a stall, a checksum, a cut):
            # say where it is, so the client resumes it instead of starting over.
            refused.headers.setdefault("Location", location)
            raise
    return Response(status_code=201, headers=tus_headers(upload, Location=location))


@router.head("/{upload_id}", summary="The upload's offset (where to resume)")
async def head(
    upload_id: str,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
    tus_resumable: Annotated[str | None, Header()] = None,
) -> Response:
    tus.require_version(tus_resumable)
    upload = await anyio.to_thread.run_sync(service.load, ctx, principal, upload_id)
    if upload.offset == upload.length and upload.completed_at is None:
        # The last bytes are in: another request is storing the file (wait for it), or the server stopped
        # before storing it (finish now).
        upload = await service.finish_stored(ctx, principal, upload)
    headers = tus_headers(upload, **{"Upload-Length": str(upload.length), "Cache-Control": "no-store"})
    if upload.upload_metadata:
        headers["Upload-Metadata"] = upload.upload_metadata
    return Response(status_code=200, headers=headers)


@router.patch("/{upload_id}", status_code=204, summary="Append bytes at Upload-Offset")
async def patch(
    upload_id: str,
    request: Request,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
    tus_resumable: Annotated[str | None, Header()] = None,
    upload_offset: Annotated[str | None, Header()] = None,
    upload_checksum: Annotated[str | None, Header()] = None,
) -> Response:
    tus.require_version(tus_resumable)
    if not request.headers.get("content-type", "").startswith(tus.OFFSET_CONTENT_TYPE):
        raise bad(f"A PATCH must have 'Content-Type: {tus.OFFSET_CONTENT_TYPE}'.",
                   code="bad-content-type", status=415)
    offset = tus.parse_offset(upload_offset, "Upload-Offset")
    checksum = tus.parse_checksum(upload_checksum)
    upload = await anyio.to_thread.run_sync(service.load, ctx, principal, upload_id)
    upload = await service.receive(ctx, principal, upload, request.stream(), request.headers.get("content-length"),
                                   checksum, offset=offset)
    return Response(status_code=204, headers=tus_headers(upload))


@router.delete("/{upload_id}", status_code=204, summary="Cancel an upload and remove its bytes (tus termination)")
async def terminate(
    upload_id: str,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
    tus_resumable: Annotated[str | None, Header()] = None,
) -> Response:
    tus.require_version(tus_resumable)
    await anyio.to_thread.run_sync(service.load, ctx, principal, upload_id)
    async with ctx.parts.locked(upload_id, ctx.settings.upload_lock_wait_s):
        await anyio.to_thread.run_sync(service.drop, ctx, upload_id)
    return Response(status_code=204, headers=tus_headers())
