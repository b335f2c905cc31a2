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
    dentistry,
    display,
    exports,
    feed,
    handouts,
    health,
    hsts,
    limits,
    media,
    merges,
    metrics,
    netcheck,
    notices,
    openapi,
    patients,
    plans,
    problems,
    quota,
    relay_key,
    relay_ops,
    relay_status,
    sessions,
    share_links,
    tags,
    uploads,
)
from chairside.api import mirror as mirror_api
from chairside.auth.accounts import prepare_sign_in
from chairside.context import Context
from chairside.errors import Problem
from chairside.mirror import fencing, litestream
from chairside.mirror import runtime as mirror_runtime
from chairside.quota import notify
from chairside.uploads.sweep import sweeper
from chairside.web import routes as web

# What a clinic's stations use, served by a relay; the rest stays at the cloud (docs/relay.md).
STATION_API = (health, patients, media, uploads, quota, notices, relay_status, relay_key)
FULL_API = (health, sessions, accounts, patients, media, uploads, audit, quota, notices, plans, feed, relay_ops,
            relay_status, clinics, display, annotations, tags, exports, netcheck, metrics, mirror_api,
            share_links, handouts, merges, relay_key, dentistry)
# What the viewer needs beside the stations' routes, when the role serves it on the LAN (relay/viewer.py).
RELAY_VIEWER_API = (sessions, clinics, display, annotations, tags, exports, dentistry)
STANDBY_API = (health,)  # a mirror site until promoted (docs/disaster-recovery.md)


def _background(ctx: Context) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The role's background tasks, run for the app's lifetime."""
    tasks: list[Callable[[], Coroutine[Any, Any, None]]] = [lambda: sweeper(ctx)]
    if ctx.role.sends_notices:
        tasks.append(lambda: notify.mailer(ctx))
    if ctx.relay is not None:  # the relay carries its writes to the cloud and follows its feed (relay/runner.py)
        from chairside.relay.runner import run_relay_tasks

        tasks.append(lambda: run_relay_tasks(ctx))
    if ctx.role.keeps_epoch:  # SQLite metadata to the mirror sites through Litestream (mirror/litestream.py)
        tasks.append(lambda: litestream.shipper(ctx))
    if (standby := ctx.mirror) is not None:  # a mirror's follower; once promoted, the old primary's fence
        tasks.append(lambda: mirror_runtime.run(standby))
    return tasks


def create_app(ctx: Context) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx.role.api == "full" or ctx.role.serves_viewer:
            await asyncio.to_thread(prepare_sign_in)  # sign-in's timing equaliser, once per process
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
    openapi.install(app)  # errors as problem+json, every status declared (api/openapi.py)
    for module in {"station": STATION_API, "standby": STANDBY_API}.get(ctx.role.api, FULL_API):
        app.include_router(module.router)
    if ctx.role.serves_viewer and ctx.role.api != "full":
        for module in RELAY_VIEWER_API:
            app.include_router(module.router)
    if ctx.role.api == "full" or ctx.role.serves_viewer:
        web.install(app)  # the viewer's page and static files
    if ctx.role.read_only:
        app.add_middleware(ReadOnly, detail=read_only_detail(ctx), primary=ctx.mirror.primary if ctx.mirror else None)
    if ctx.role.keeps_epoch:
        app.add_middleware(Fenced, ctx=ctx)
    app.add_middleware(metrics.Metrics)  # latency by route, ingest bytes (api/metrics.py)
    app.add_middleware(hsts.Hsts)  # Strict-Transport-Security over TLS (api/hsts.py)
    limits.configure(ctx.settings)  # the price of a request, outermost (api/limits.py)
    app.add_middleware(limits.Limits, settings=ctx.settings)
    return app


# The server's HTTP protocol: request line and headers bounded while they arrive (api/limits.py).
HTTP_PROTOCOL = limits.BoundedHttpTools


READ_ONLY_DETAIL = (
    "現在は予備サイトのため閲覧のみできます。保存や変更は、本サイトの復旧後、またはこのサイトへの切り替え後に行えます。"
    " / This is the standby copy of Chairside, which only shows what is stored. Saving and changing work again "
    "once the main site is back or this copy takes over."
)


def read_only_detail(ctx: Context) -> str:
    if ctx.mirror is None:
        return READ_ONLY_DETAIL
    return (f"{READ_ONLY_DETAIL.split(' / ')[0]}（本サイト: {ctx.mirror.primary}） / "
            f"{READ_ONLY_DETAIL.split(' / ')[1]} The primary is {ctx.mirror.primary}.")


class ReadOnly:
    """Refuses every request that could change something (a standby copy changes only by replication)."""

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, detail: str = READ_ONLY_DETAIL, primary: str | None = None) -> None:
        self.app = app
        self.detail = detail
        self.primary = primary

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in self.SAFE:
            response = problems.problem_response(Problem(
                503, self.detail, title="Service unavailable", code="read-only", headers={"Retry-After": "300"},
                primary=self.primary))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Fenced:
    """At a cloud: every answer carries the site's epoch; once a newer epoch was taken elsewhere, writes get 503.

    The mirror's own endpoints stay open (a second promotion must still be able to fence, and be refused).
    """

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx
        self.epochs = fencing.cache_for(ctx)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cached = self.epochs.peek()
        epoch = cached if cached is not None else await asyncio.to_thread(self.epochs.get, self.ctx)
        if epoch.fenced and scope["method"] not in self.SAFE and not scope["path"].startswith("/api/v1/mirror/"):
            assert epoch.fenced_epoch is not None
            await problems.problem_response(fencing.fenced_problem(epoch.fenced_epoch, epoch.fenced_primary))(
                scope, receive, send)
            return
        extra = [(b"chairside-epoch", str(epoch.epoch).encode())]
        mirrored: list[tuple[bytes, bytes]] = []
        media_id = fencing.media_read(scope)
        if media_id is not None:  # a relay's done-check: is the recording stored at both sites yet?
            answer = await asyncio.to_thread(fencing.media_mirrored, self.ctx, media_id)
            if answer is not None:
                mirrored.append((b"chairside-mirrored", b"yes" if answer else b"no"))

        async def send_with_epoch(message: Any) -> None:
            if message["type"] == "http.response.start":
                shown = mirrored if message.get("status") == 200 else []  # only to who may read the item
                message["headers"] = [*message.get("headers", []), *extra, *shown]
            await send(message)

        await self.app(scope, receive, send_with_epoch)
