"""`chairside cloud serve`: the server in the cloud role."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from chairside.app import create_app
from chairside.cli.common import DatabaseUrl, DataDir, load_settings
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
) -> None:
    """Run the cloud server (migrates the database first)."""
    settings = load_settings(data, database_url)
    ctx = build_context(settings, role="cloud")
    if workers == 1:
        run(create_app(ctx), host, port)
        return
    # Several processes: migrate once here, then each worker builds its own app (worker_app) from
    # the same settings, which reach the spawned processes through their CHAIRSIDE_* variables.
    ctx.db.dispose()
    wanted = {"data_dir": str(settings.data_dir), "database_url": settings.database_url}
    for setting in SETTINGS:
        if setting.name in wanted:
            os.environ[setting.env] = wanted[setting.name]
    run("chairside.cli.cloud:worker_app", host, port, workers=workers)


def worker_app() -> FastAPI:
    """The app of one worker process of `serve --workers N` (the database is already migrated)."""
    from chairside._memory import limit_malloc_arenas
    limit_malloc_arenas()
    return create_app(build_context(Settings.load(), role="cloud", upgrade=False))


def run(app: FastAPI | str, host: str, port: int, *, workers: int = 1) -> None:
    uvicorn.run(
        app,
        host=host, port=port, http="httptools", loop="uvloop", log_level="info",
        proxy_headers=True, timeout_keep_alive=30, server_header=False,
        workers=workers, factory=isinstance(app, str),
    )
