"""The `chairside` command: one sub-command group per module."""

from __future__ import annotations

import typer

from chairside.cli import admin, cloud, demo

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Chairside: media cloud for dental clinics.")
app.add_typer(cloud.app, name="cloud")
app.add_typer(admin.app, name="admin")
app.command("demo")(demo.demo)


def main() -> None:
    app()
