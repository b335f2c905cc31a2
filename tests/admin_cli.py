"""`chairside admin ...` run in-process (typer's runner) against a test's database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner

from chairside.cli import admin, app
from chairside.context import Context


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_admin(ctx: Context, *args: str) -> Run:
    result = CliRunner().invoke(
        app, ["admin", "--data", str(ctx.settings.data_dir), "--database-url", ctx.settings.database_url, *args],
    )
    if admin.State.ctx is not None:
        admin.State.ctx.db.dispose()
        admin.State.ctx = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)
