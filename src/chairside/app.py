"""The application factory: the routers the role serves, its background tasks, errors as problem+json.

The process itself (settings, database, blobs, role) is built by `context.build_context`; routes
live in api/, one file per resource.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from chairside import __version__
from chairside.api import (
    accounts,
    annotations,
    audit,
    clinics,
    display,
    exports,
    feed,
    health,
    media,
    notices,
    patients,
    plans,
    problems,
    quota,
    relay_ops,
    relay_status,
    sessions,
    tags,
    uploads,
)
from chairside.context import Context
from chairside.errors import Problem
from chairside.quota import notify
from chairside.uploads.sweep import sweeper
from chairside.web import routes as web

# What a clinic's stations use, served by a relay; the rest stays at the cloud (docs/relay.md).
STATION_API = (health, patients, media, uploads, quota, notices, relay_status)
FULL_API = (health, sessions, accounts, patients, media, uploads, audit, quota, notices, plans, feed, relay_ops,
            relay_status, clinics, display, annotations, tags, exports)


def _background(ctx: Context) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The role's background tasks, run for the app's lifetime."""
    tasks: list[Callable[[], Coroutine[Any, Any, None]]] = [lambda: sweeper(ctx)]
    if ctx.role.sends_notices:
        tasks.append(lambda: notify.mailer(ctx))
    if ctx.relay is not None:  # the relay carries its writes to the cloud and follows its feed (relay/runner.py)
        from chairside.relay.runner import run_relay_tasks

        tasks.append(lambda: run_relay_tasks(ctx))
    return tasks


def create_app(ctx: Context) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(make()) for make in _background(ctx)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="Chairside API",
        version=__version__,
        summary="Patients, photos and videos of a dental clinic, shared between chairs and branches.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)
    for module in STATION_API if ctx.role.api == "station" else FULL_API:
        app.include_router(module.router)
    if ctx.role.api == "full":
        web.install(app)  # the viewer's page and static files
    if ctx.role.read_only:
        app.add_middleware(ReadOnly)
    return app


READ_ONLY_DETAIL = (
    "現在は予備サイトのため閲覧のみできます。保存や変更は、本サイトの復旧後、またはこのサイトへの切り替え後に行えます。"
    " / This is the standby copy of Chairside, which only shows what is stored. Saving and changing work again "
    "once the main site is back or this copy takes over."
)


class ReadOnly:
    """Refuses every request that could change something (a standby copy changes only by replication)."""

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in self.SAFE:
            response = problems.problem_response(Problem(
                503, READ_ONLY_DETAIL, title="Service unavailable", code="read-only", headers={"Retry-After": "300"}))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
