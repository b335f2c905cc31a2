"""The process: settings, database, blob store, clock, role policy, and (at a relay) its link upstream.

Built once at start (`build_context`) and passed to everything that does work: the API's
routes, the command line, background tasks, tests and benchmarks alike. Every part is a typed
field; nothing is looked up by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chairside.blobs import BlobStore, open_blob_store
from chairside.blobs.parts import PartStore
from chairside.clock import ProcessClock
from chairside.db import migrate
from chairside.db.engine import Database
from chairside.readcache import ReadCache
from chairside.roles import CLOUD, Role, role_named
from chairside.settings import Settings

if TYPE_CHECKING:  # the relay's runtime is made by the relay package (relay/runtime.py), which imports this one
    from chairside.relay.runtime import RelayRuntime


@dataclass(eq=False)
class Context:
    settings: Settings
    db: Database
    blobs: BlobStore
    role: Role = CLOUD
    parts: PartStore = field(init=False)
    clock: ProcessClock = field(init=False)
    # Who the caller is and the item it reads, for a second at most (readcache.py).
    reads: ReadCache = field(default_factory=ReadCache)
    # At a relay that serves: its link to the cloud and its background workers (relay/runtime.py).
    relay: RelayRuntime | None = None

    def __post_init__(self) -> None:
        self.parts = PartStore(self.settings.uploads_dir)
        self.clock = ProcessClock(self.db, self.role.clock_node)


def build_context(settings: Settings, role: str = "cloud", *, upgrade: bool = True) -> Context:
    """Open the data folder's database (migrated to the newest schema unless `upgrade=False`) and blob store."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    if upgrade:
        migrate.upgrade(db.engine)
    return Context(settings=settings, db=db, blobs=open_blob_store(settings.blob_url), role=role_named(role))
