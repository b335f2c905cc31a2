"""The process's hybrid logical clock (domain.hlc), one per Context.

The cloud's node id is "cloud". A relay's is 8 random hex digits made on its first use and kept
in its `relay_state` row "node", so it stays the same across restarts and differs between relays
(two relays writing in the same millisecond still order their writes the same way everywhere).
"""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from chairside.db.models import RelayState
from chairside.domain.hlc import Clock

if TYPE_CHECKING:
    from chairside.context import Context
_lock = threading.Lock()


def clock_for(ctx: Context, s: Session | None = None) -> Clock:
    """The context's clock. Inside a write transaction pass it as `s` (a relay's first use writes its node id)."""
    clock = ctx.extras.get("clock")
    if isinstance(clock, Clock):
        return clock
    with _lock:
        clock = ctx.extras.get("clock")
        if isinstance(clock, Clock):
            return clock
        if ctx.role == "relay":
            if s is not None:
                node = _relay_node(s)
            else:
                with ctx.db.session() as own:
                    node = _relay_node(own)
            clock = Clock(node)
        else:
            clock = Clock("cloud")
        ctx.extras["clock"] = clock
        return clock


def _relay_node(s: Session) -> str:
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
