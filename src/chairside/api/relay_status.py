"""`GET /api/v1/relay/status`: how the clinic's relay is keeping up with the cloud (docs/relay.md)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.errors import Problem

router = APIRouter(prefix="/api/v1/relay", tags=["relay"])
READERS = ("operator", "admin", "viewer", "station", "relay")


@router.get(
    "/status",
    summary="The relay's link to the cloud: online, what waits to be sent, how fast it goes",
    responses={404: {"description": "This server is the cloud, not a relay"}},
)
async def relay_status(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> dict[str, Any]:
    """Fields: `online` (the cloud answered within `relay_offline_after_s`), `upstream`, `last_contact`,
    `last_error`, `pending_items`, `pending_bytes`, `oldest_pending_age_s`, `upload_rate_bps` (bits/s over
    the last 10 s), `bandwidth_cap_bps` (null: unlimited), `failed_items` and `failures` (refused by the
    cloud for good; they need a person), `accepted_over_quota`, `cache`, `feed`."""
    if not ctx.role.reports_upstream_link:
        raise Problem(404, "This server is the cloud, not a relay. Ask the clinic's relay for its status.",
                      code="not-a-relay")
    from chairside.relay.runner import status  # here: a cloud never loads the relay's code (and its memory)

    return await anyio.to_thread.run_sync(status, ctx)
