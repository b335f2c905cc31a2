"""The application factory: wires settings, database, blob store and routers. Routes live in api/."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from chairside import __version__, errors
from chairside.api import (
    accounts,
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
    quota,
    relay_ops,
    relay_status,
    sessions,
    tags,
    uploads,
)
from chairside.api import annotations as drawings  # the module's name would clash with __future__.annotations
from chairside.blobs import open_blob_store
from chairside.blobs.parts import PartStore
from chairside.context import Context
from chairside.db import migrate
from chairside.db.engine import Database
from chairside.quota import notify
from chairside.settings import Settings
from chairside.web import routes as web


def build_context(settings: Settings, role: str = "cloud", *, upgrade: bool = True) -> Context:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    if upgrade:
        migrate.upgrade(db.engine)
    ctx = Context(settings=settings, db=db, blobs=open_blob_store(settings.blob_url), role=role)
    ctx.extras["parts"] = PartStore(settings.uploads_dir)
    return ctx


def create_app(ctx: Context) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(uploads.sweeper(ctx))]
        if ctx.role == "relay":  # the relay carries its writes to the cloud and follows its feed (relay/runner.py)
            from chairside.relay.runner import run_relay_tasks
            tasks.append(asyncio.create_task(run_relay_tasks(ctx)))
        else:
            tasks.append(asyncio.create_task(notify.mailer(ctx)))
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
    errors.install(app)
    if ctx.role == "relay":  # what the clinic's stations use; the rest stays at the cloud (docs/relay.md)
        for module in (health, patients, media, uploads, quota, notices, relay_status):
            app.include_router(module.router)
        return app
    for module in (health, sessions, accounts, patients, media, uploads, audit, quota, notices, plans, feed, relay_ops,
                   relay_status):
        app.include_router(module.router)
    for module in (clinics, display, drawings, tags, exports):  # the viewer's API (issue 6)
        app.include_router(module.router)
    web.install(app)  # the viewer's page and static files
    return app
