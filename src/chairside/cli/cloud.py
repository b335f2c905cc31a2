"""`chairside cloud serve`: the server in the cloud role."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from fastapi import FastAPI

from chairside.app import HTTP_PROTOCOL, create_app
from chairside.cli.common import DatabaseUrl, DataDir, load_settings
from chairside.cli.tls import TlsCert, TlsKey, serving_context, tls_options
from chairside.context import build_context
from chairside.settings import SETTINGS, Settings

app = typer.Typer(no_args_is_help=True, help="The cloud server.")


@app.command()
def serve(
    data: DataDir = Path("./chairside-data"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the port (one per core "
                                         "serves media bytes faster; see docs/benchmarks.md).")] = 1,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
) -> None:
    """Run the cloud server (migrates the database first)."""
    tls = tls_options(tls_cert, tls_key)
    settings = load_settings(data, database_url)
    ctx = serving_context(settings, "cloud")
    if workers == 1:
        run(create_app(ctx), host, port, settings=settings, tls=tls)
        return
    # Several processes: migrate once here, then each worker builds its own app (worker_app) from
    # the same settings, which reach the spawned processes through their CHAIRSIDE_* variables.
    ctx.db.dispose()
    wanted = {"data_dir": str(settings.data_dir), "database_url": settings.database_url}
    for setting in SETTINGS:
        if setting.name in wanted:
            os.environ[setting.env] = wanted[setting.name]
    run("chairside.cli.cloud:worker_app", host, port, workers=workers, settings=settings, tls=tls)


def worker_app() -> FastAPI:
    """The app of one worker process of `serve --workers N` (the database is already migrated)."""
    from chairside._memory import limit_malloc_arenas
    limit_malloc_arenas()
    app = create_app(build_context(Settings.load(), role="cloud", upgrade=False))
    freeze_heap()
    return app


def freeze_heap() -> None:
    """The objects a server holds for its whole life (modules, routes, schemas, settings: about 150 000), out of
    the garbage collector's sight (`gc.freeze`). Otherwise every full collection walks them all, holding the GIL
    and so the event loop: 200–500 ms on a loaded machine, set off every few requests that allocate much (a
    drawing of 20 000 points makes 20 000 tuples), and every health check waited for it (docs/benchmarks.md,
    "Hostile input")."""
    gc.collect()
    gc.freeze()


def run(app: FastAPI | str, host: str, port: int, *, workers: int = 1, settings: Settings | None = None,
        tls: Mapping[str, Any] | None = None) -> None:
    # The HTTP protocol bounds the request line and headers as they arrive (api/limits.py, via app.py); the
    # h11 limit is set too for anyone who switches parsers. X-Forwarded-For only from `trusted_proxies`.
    trusted = (settings or Settings.load()).trusted_proxies.strip()
    if isinstance(app, FastAPI):  # one process; each worker of several freezes its own (worker_app)
        freeze_heap()
    uvicorn.run(
        app,
        host=host, port=port, http=HTTP_PROTOCOL, loop="uvloop", log_level="info",
        proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None, timeout_keep_alive=30,
        server_header=False, h11_max_incomplete_event_size=16 << 10,
        workers=workers, factory=isinstance(app, str), **(tls or {}),
    )
