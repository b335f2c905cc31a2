"""The primary's endpoints a mirror site follows, authenticated by the mirror's token (cs_mr_…).

- `GET  /api/v1/mirror/hello`: who this primary is (deployment id, epoch, fenced or not).
- `GET  /api/v1/mirror/pending`: the feed events after the mirror's cursors, with the blobs they name.
- `POST /api/v1/mirror/progress`: the mirror verified everything up to these seqs.
- `GET  /api/v1/mirror/blobs/{sha256}`: a blob's bytes (the mirror checks the SHA-256 as it stores them).
- `GET  /api/v1/mirror/litestream[/{path}]`: the Litestream replica's files (SQLite metadata).
- `POST /api/v1/mirror/fence`: a mirror takes the next epoch; this site refuses writes from then on.

Design and figures: docs/disaster-recovery.md.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool

from chairside.api.deps import get_context
from chairside.api.principal import allow, credentials
from chairside.blobs.base import BlobNotFound, validate_key
from chairside.context import Context
from chairside.db.engine import is_sqlite
from chairside.db.models import Mirror
from chairside.errors import Problem
from chairside.mirror import fencing, litestream, service

router = APIRouter(prefix="/api/v1/mirror", tags=["mirror"])


async def mirror_of(request: Request, ctx: Annotated[Context, Depends(get_context)]) -> Mirror:
    token, _ = credentials(request)
    return await anyio.to_thread.run_sync(service.authenticate, ctx, token)


Caller = Annotated[Mirror, Depends(mirror_of)]
Ctx = Annotated[Context, Depends(get_context)]


class Hello(BaseModel):
    deployment_id: uuid.UUID
    epoch: int
    fenced: bool
    fenced_epoch: int | None
    fenced_primary: str | None
    mirror_id: uuid.UUID
    mirror_name: str
    database: str = Field(description="sqlite (metadata by Litestream) or postgresql (streaming replication)")


@router.get("/hello", response_model=Hello, dependencies=[allow()], summary="The primary a mirror follows")
def hello(ctx: Ctx, mirror: Caller) -> Hello:
    epoch = service.read_epoch(ctx)
    return Hello(deployment_id=epoch.deployment_id, epoch=epoch.epoch, fenced=epoch.fenced,
                 fenced_epoch=epoch.fenced_epoch, fenced_primary=epoch.fenced_primary, mirror_id=mirror.id,
                 mirror_name=mirror.name, database="sqlite" if is_sqlite(ctx.db.url) else "postgresql")


@router.get("/pending", dependencies=[allow()], summary="Feed events the mirror has not verified yet")
def pending(ctx: Ctx, mirror: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    return service.pending(ctx, mirror, limit)


class Cursor(BaseModel):
    contract_id: uuid.UUID
    seq: int = Field(ge=0)


class Progress(BaseModel):
    cursors: list[Cursor]


@router.post("/progress", dependencies=[allow()], summary="The mirror verified the blobs up to these seqs")
def progress(ctx: Ctx, mirror: Caller, body: Progress) -> dict[str, Any]:
    service.record_progress(ctx, mirror, {c.contract_id: c.seq for c in body.cursors})
    return {"ok": True}


@router.get("/blobs/{sha256}", dependencies=[allow()], response_class=StreamingResponse,
            summary="A blob's bytes, for the mirror's copy")
async def blob(ctx: Ctx, mirror: Caller, sha256: str) -> StreamingResponse:
    try:
        validate_key(sha256)
        info = await anyio.to_thread.run_sync(ctx.blobs.stat, sha256)
        if info is None:
            raise BlobNotFound(sha256)
        chunks = await anyio.to_thread.run_sync(ctx.blobs.open_range, sha256, 0, None)
    except (ValueError, BlobNotFound):
        raise Problem(404, "このファイルは本サイトにありません（削除済みの可能性があります）。 / This blob is not "
                      "stored at the primary (it may have been purged).", code="blob-not-found") from None
    return StreamingResponse(iterate_in_threadpool(chunks), media_type="application/octet-stream",
                             headers={"Content-Length": str(info.size), "ETag": f'"{sha256}"'})


@router.get("/litestream", dependencies=[allow()], summary="The Litestream replica's files (SQLite metadata)")
def litestream_files(ctx: Ctx, mirror: Caller) -> dict[str, Any]:
    return {"files": litestream.list_files(litestream.replica_dir(ctx.settings.data_dir))}


@router.get("/litestream/{path:path}", dependencies=[allow()], response_class=FileResponse,
            summary="One file of the Litestream replica")
def litestream_file(ctx: Ctx, mirror: Caller, path: str) -> FileResponse:
    try:
        target = litestream.safe_path(litestream.replica_dir(ctx.settings.data_dir), path)
    except ValueError:
        target = None
    if target is None or not target.is_file():
        raise Problem(404, "この複製ファイルはもうありません（圧縮で置き換えられました）。 / This replica file is gone "
                      "(compaction replaced it).", code="replica-file-gone")
    return FileResponse(target, media_type="application/octet-stream")


class Fence(BaseModel):
    epoch: int = Field(ge=2)
    primary: str = Field(default="", max_length=500, description="The URL of the site that takes the epoch")


@router.post("/fence", dependencies=[allow()], summary="A mirror takes the next epoch: this site stops writing")
def fence(ctx: Ctx, mirror: Caller, body: Fence) -> dict[str, Any]:
    fenced = service.fence(ctx, body.epoch, body.primary)
    fencing.cache_for(ctx).forget()  # this process refuses writes from now on, not a second later
    if not fenced:
        current = service.read_epoch(ctx)
        raise Problem(409, "別のサイトがすでにこの世代（epoch）で本サイトになっています。"
                      "昇格は行われません。 / Another "
                      f"site already took epoch {max(current.epoch, current.fenced_epoch or 0)}: this promotion is "
                      "refused.", code="epoch-taken", epoch=current.epoch, fenced_epoch=current.fenced_epoch,
                      fenced_primary=current.fenced_primary)
    return {"fenced": True, "epoch": body.epoch}
