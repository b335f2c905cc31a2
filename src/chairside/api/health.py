"""Liveness: is this server up, and in which role."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from chairside import __version__
from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.api.schemas import Health
from chairside.context import Context
from chairside.mirror import service

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health", response_model=Health, dependencies=[allow()], summary="Is the server up")
def health(ctx: Annotated[Context, Depends(get_context)]) -> Health:
    figures: dict[str, Any] = {}
    if ctx.mirror is not None and ctx.mirror.following:
        figures = {k: v for k, v in ctx.mirror.figures().items() if k in Health.model_fields and k != "role"}
    elif ctx.role.keeps_epoch:
        figures = service.health_figures(ctx)
    return Health(status="ok", role=ctx.role.name, version=__version__, **figures)
