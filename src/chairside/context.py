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
from chairside.keys.keyring import Keyring
from chairside.keys.master import KeyWrapper
from chairside.keys.setup import encrypted_store, load_master_key, open_database, open_keyring
from chairside.readcache import ReadCache
from chairside.roles import CLOUD, Role, role_named
from chairside.settings import Settings

if TYPE_CHECKING:  # the relay's runtime is made by the relay package (relay/runtime.py), which imports this one
    from chairside.mirror.runtime import MirrorRuntime
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
    # At a mirror site's `mirror serve` (following, then promoted): its follower and state (mirror/runtime.py).
    mirror: MirrorRuntime | None = None
    # Encryption at rest: the data keys, when a master key is configured (keys/, docs/security.md).
    keys: Keyring | None = None

    def __post_init__(self) -> None:
        self.parts = PartStore(self.settings.uploads_dir)
        self.clock = ProcessClock(self.db, self.role.clock_node)


def build_context(settings: Settings, role: str = "cloud", *, upgrade: bool = True,
                  master: KeyWrapper | None = None) -> Context:
    """Open the data folder's database (migrated to the newest schema unless `upgrade=False`) and blob store."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # the data folder is this user's alone (docs/security.md)
    # ``master``: a key obtained otherwise than from a file (the relay's, released at boot: keys/release.py).
    master = master if master is not None else load_master_key(settings)
    db = open_database(settings, master)  # encrypted SQLite: its key, or a clear refusal (keys/database.py)
    if upgrade:
        migrate.upgrade(db.engine)
    try:
        keys = open_keyring(settings, db, master)  # a wrong or missing master key stops here, before any write
    except BaseException:
        db.dispose()
        raise
    blobs = encrypted_store(open_blob_store(settings.blob_url), keys, settings)
    return Context(settings=settings, db=db, blobs=blobs, role=role_named(role), keys=keys)
