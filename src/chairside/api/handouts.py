"""Patient handouts: an item, or a comparison of 2–4 items, with its drawings burnt in, as JPEG (sharing/handouts.py).

The printable A4 page around the picture is the viewer's `/handout?m=…` (web/routes.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Response

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.sharing import handouts

router = APIRouter(prefix="/api/v1", tags=["handouts"])
READERS = ("admin", "viewer")
_JPEG: dict[int | str, dict[str, object]] = {200: {"content": {"image/jpeg": {}}}}
_HEADERS = {"Cache-Control": "private, no-store", "Content-Disposition": "inline; filename=handout.jpg"}


@router.get("/media/{media_id}/handout.jpg", response_class=Response, responses=_JPEG,
            summary="An item with its drawings burnt in, as JPEG (a HEIC photo too)")
async def get_handout(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    t: Annotated[float | None, Query(ge=0, description="Video: the moment to show (default: the newest "
                                     "drawing's)")] = None,
) -> Response:
    data = await anyio.to_thread.run_sync(lambda: handouts.handout_jpeg(ctx, principal, [media_id], t))
    return Response(data, media_type="image/jpeg", headers=_HEADERS)


@router.get("/handout.jpg", response_class=Response,
            responses={**_JPEG, 404: {"description": "An item is missing or out of sight"}},
            summary="A comparison of 2–4 of one patient's items, drawings burnt in, as one JPEG")
async def get_comparison_handout(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    m: Annotated[list[uuid.UUID], Query(min_length=1, max_length=handouts.MAX_ITEMS,
                                        description="The items, in order")],
) -> Response:
    data = await anyio.to_thread.run_sync(lambda: handouts.handout_jpeg(ctx, principal, m))
    return Response(data, media_type="image/jpeg", headers=_HEADERS)
