"""Options shared by the command groups."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from chairside.settings import Settings

DataDir = Annotated[Path, typer.Option("--data", help="Data folder (database, blobs, partial uploads).")]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="CHAIRSIDE_DATABASE_URL", help="SQLAlchemy URL; default: SQLite in DATA."),
]


def load_settings(data: Path, database_url: str | None) -> Settings:
    return Settings.load(data_dir=data, database_url=database_url)


def emit(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def fail(message: str) -> NoReturn:
    """Refuse: `error: …` on standard error, exit code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{what} '{value}' is not a valid id")
