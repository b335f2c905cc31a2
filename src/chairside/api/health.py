"""Liveness: is this server up, and in which role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from chairside import __version__
from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.api.schemas import Health
from chairside.context import Context

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health", response_model=Health, dependencies=[allow()], summary="Is the server up")
def health(ctx: Annotated[Context, Depends(get_context)]) -> Health:
    return Health(status="ok", role=ctx.role.name, version=__version__)
