"""Download a selection of media (or all of a patient's) as one zip, with a manifest, streamed: the routes.
Planning the zip, recording the export and writing the zip's bytes are media/export.py."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chairside.api.deps import get_context
from chairside.api.patients import READERS
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.errors import Problem
from chairside.media import export
from chairside.media.export import MAX_ITEMS

router = APIRouter(prefix="/api/v1", tags=["exports"])


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    media_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_ITEMS)


async def _respond(ctx: Context, principal: Principal, media_ids: list[uuid.UUID] | None,
                   patient_id: uuid.UUID | None) -> StreamingResponse:
    planned = await anyio.to_thread.run_sync(
        lambda: export.prepare(ctx, principal, media_ids=media_ids, patient_id=patient_id))
    headers = {
        "Content-Disposition": f"attachment; filename=\"chairside-export.zip\"; "
                               f"filename*=UTF-8''{quote(planned.root)}.zip",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(planned.chunks(ctx.blobs, ctx.settings.serve_chunk_bytes),
                             media_type="application/zip", headers=headers)


@router.post("/exports/zip", summary="Download the given items as a zip with a manifest (streamed)",
             response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}})
async def export_zip(
    body: ExportIn,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> StreamingResponse:
    return await _respond(ctx, principal, body.media_ids, None)


@router.get("/exports/zip", summary="The same as a link a browser can download: ?ids=a,b,c or ?patient_id=",
            response_class=StreamingResponse, responses={200: {"content": {"application/zip": {}}}},
            operation_id="export_zip_link")
async def export_zip_link(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    ids: Annotated[str | None, Query(description="Media ids, separated by commas")] = None,
    patient_id: Annotated[uuid.UUID | None, Query(description="All of this patient's items")] = None,
) -> StreamingResponse:
    if (ids is None) == (patient_id is None):
        raise Problem(422, "Give either ids (media ids separated by commas) or patient_id.", code="bad-export")
    media_ids = None
    if ids is not None:
        try:
            media_ids = list(dict.fromkeys(uuid.UUID(i.strip()) for i in ids.split(",") if i.strip()))
        except ValueError:
            raise Problem(422, "ids must be media ids separated by commas.", code="bad-export") from None
    return await _respond(ctx, principal, media_ids, patient_id)
