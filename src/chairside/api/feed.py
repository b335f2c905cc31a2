"""The changes feed of the caller's contract, long-polled by relays (and later the mirror).

`GET /api/v1/feed?after=<cursor>&limit=<n>&wait=<s>` answers the events after the cursor, in
seq order, leaving out those of clinics the caller may not see (but passing over them: `next`
is the last seq examined). When nothing is newer than the cursor it waits up to `wait` seconds,
looking at the contract's counter four times a second, without holding a thread or a
transaction meanwhile. Format and rules: docs/replication.md.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from chairside.api import metrics
from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.feed import changes

router = APIRouter(prefix="/api/v1", tags=["feed"])
POLL_EVERY_S = 0.25


class FeedEvent(BaseModel):
    seq: int
    kind: str = Field(description="contract, clinic, station, account, session, patient, media, media.purged "
                      "(a tombstone), annotation, annotation.deleted (a tombstone), media.tags, media.teeth, "
                      "note, or patient.merged (a tombstone)")
    id: uuid.UUID = Field(description="The id of the row the event is about")
    clinic_id: uuid.UUID | None = Field(description="The clinic whose visibility governs the event; null: all")
    at: datetime
    body: dict[str, Any] = Field(description="The row as it now is (every column), or the tombstone's facts")


class FeedPage(BaseModel):
    items: list[FeedEvent]
    next: int = Field(description="Send as `after` next time: the last seq examined (hidden events included)")
    more: bool = Field(description="More events exist after `next`: ask again at once")
    head: int = Field(description="The contract's latest seq")


def _page(ctx: Context, principal: Principal, after: int, limit: int) -> changes.Page:
    with ctx.db.read() as s:
        return changes.read(s, principal.contract_id, after, limit, principal.clinic_ids)


def _head(ctx: Context, contract_id: uuid.UUID) -> int:
    with ctx.db.read() as s:
        return changes.head(s, contract_id)


@router.get("/feed", response_model=FeedPage, summary="The contract's changes after a cursor (long poll)")
async def get_feed(
    request: Request,
    principal: Annotated[Principal, allow("relay", "operator")],
    ctx: Annotated[Context, Depends(get_context)],
    after: Annotated[int, Query(ge=0, description="The `next` of the previous answer; 0 for the start")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most events examined in this answer")] = 500,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for a new event when there is "
                                 "none yet (long poll); 0 answers at once")] = 0,
) -> FeedPage:
    deadline = time.monotonic() + wait
    cursor = after
    while True:
        page = await anyio.to_thread.run_sync(_page, ctx, principal, cursor, limit)
        cursor = page.next
        if page.items or page.more or time.monotonic() >= deadline:
            break
        # Nothing the caller may see yet: watch the counter (one indexed read) until it moves.
        while time.monotonic() < deadline:
            await anyio.sleep(min(POLL_EVERY_S, max(0.0, deadline - time.monotonic())))
            if await request.is_disconnected():
                break
            if await anyio.to_thread.run_sync(_head, ctx, principal.contract_id) > cursor:
                break
        if await request.is_disconnected():
            break
    metrics.feed_polled(principal.relay_id, page.head, page.next)
    return FeedPage(
        items=[FeedEvent(seq=c.seq, kind=c.kind, id=c.entity_id, clinic_id=c.clinic_id, at=c.at, body=c.body)
               for c in page.items],
        next=page.next, more=page.more, head=page.head,
    )
