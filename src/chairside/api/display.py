"""A photo as every browser can show it (HEIC included): the route. Making and keeping the display copy is
media/derivatives.py."""

from __future__ import annotations

import uuid
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Response

from chairside.api.deps import get_context
from chairside.api.patients import READERS
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.media import derivatives
from chairside.media.ranges import BlobResponse

router = APIRouter(prefix="/api/v1", tags=["media"])


@router.get("/media/{media_id}/display", summary="A photo as an upright JPEG every browser shows (HEIC included)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}, "image/png": {}}},
                                                304: {"description": "Not modified"}})
async def get_display(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    shown = await anyio.to_thread.run_sync(derivatives.for_display, ctx, principal, media_id)
    return BlobResponse(ctx.blobs, shown.sha256, shown.size, shown.mime, if_none_match=if_none_match,
                        chunk_size=ctx.settings.serve_chunk_bytes)
