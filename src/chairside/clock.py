"""The process's hybrid logical clock (domain.hlc), one per Context.

The cloud's node id is "cloud" (the role says: `Role.clock_node`). A relay's is 8 random hex
digits made on its first use and kept in its `relay_state` row "node", so it stays the same
across restarts and differs between relays (two relays writing in the same millisecond still
order their writes the same way everywhere).
"""

from __future__ import annotations

import secrets
import threading

from sqlalchemy.orm import Session

from chairside.db.engine import Database
from chairside.db.models import RelayState
from chairside.domain.hlc import Clock


class ProcessClock:
    """Makes the clock on first use: a per-installation node id needs the database."""

    def __init__(self, db: Database, node: str | None) -> None:
        self._db = db
        self._node = node
        self._clock: Clock | None = None
        self._lock = threading.Lock()

    def get(self, s: Session | None = None) -> Clock:
        """The clock. Inside a write transaction pass it as `s` (a relay's first use writes its node id)."""
        if self._clock is not None:
            return self._clock
        with self._lock:
            if self._clock is None:
                node = self._node
                if node is None:
                    if s is not None:
                        node = _installation_node(s)
                    else:
                        with self._db.session() as own:
                            node = _installation_node(own)
                self._clock = Clock(node)
            return self._clock


def _installation_node(s: Session) -> str:
    row = s.get(RelayState, "node")
    if row is not None and isinstance(row.value, dict) and isinstance(row.value.get("id"), str):
        return str(row.value["id"])
    node = secrets.token_hex(4)
    if row is None:
        s.add(RelayState(key="node", value={"id": node}))
    else:
        row.value = {"id": node}
    s.flush()
    return node
