"""The `chairside` command: one sub-command group per module."""

from __future__ import annotations

import typer

from chairside.cli import admin, backup, cloud, demo, deploy, mirror, netcheck, relay, station, transfer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Chairside: media cloud for dental clinics.")
app.add_typer(cloud.app, name="cloud")
app.add_typer(admin.app, name="admin")
app.add_typer(relay.app, name="relay")
app.add_typer(mirror.app, name="mirror")
app.add_typer(station.app, name="station")
app.add_typer(deploy.app, name="deploy")
app.add_typer(backup.app, name="backup")
app.command("demo")(demo.demo)
app.command("netcheck")(netcheck.netcheck)
app.command("import")(transfer.import_)
app.command("export")(transfer.export)


def main() -> None:
    from chairside._memory import limit_malloc_arenas
    limit_malloc_arenas()  # before any thread starts: see _memory.py
    app()
