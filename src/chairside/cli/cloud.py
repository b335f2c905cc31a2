"""`chairside cloud serve`: the server in the cloud role."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from chairside.app import build_context, create_app
from chairside.cli.common import DatabaseUrl, DataDir, load_settings

app = typer.Typer(no_args_is_help=True, help="The cloud server.")


@app.command()
def serve(
    data: DataDir = Path("./chairside-data"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the cloud server (migrates the database first)."""
    ctx = build_context(load_settings(data, database_url), role="cloud")
    run(create_app(ctx), host, port)


def run(app: object, host: str, port: int) -> None:
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=host, port=port, http="httptools", loop="uvloop", log_level="info",
        proxy_headers=True, timeout_keep_alive=30, server_header=False,
    )
