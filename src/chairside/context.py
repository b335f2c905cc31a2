"""What every request handler needs: settings, the database, the blob store."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from chairside.blobs import BlobStore
from chairside.db.engine import Database
from chairside.settings import Settings


@dataclass
class Context:
    settings: Settings
    db: Database
    blobs: BlobStore
    role: str = "cloud"
    extras: dict[str, object] = field(default_factory=dict)


async def get_context(request: Request) -> Context:
    # async: FastAPI would run a plain function in a worker thread, a hop on every request
    ctx: Context = request.app.state.ctx
    return ctx
