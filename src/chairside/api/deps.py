"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from chairside.context import Context


async def get_context(request: Request) -> Context:
    # async: FastAPI would run a plain function in a worker thread, a hop on every request
    ctx: Context = request.app.state.ctx
    return ctx
