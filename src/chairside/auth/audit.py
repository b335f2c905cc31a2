"""The audit trail: who (station or account, device, address) saw or changed which patient's media.

Append-only: this module only inserts, and the database refuses UPDATE and DELETE on the
table (triggers from migration 0002). Repeated reads of the same item by the same
actor within `READ_COALESCE_S` are recorded once: a video played with seeking makes
dozens of range requests, and one line says what matters.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from threading import Lock
from typing import Any

from sqlalchemy.orm import Session

from chairside.context import Context
from chairside.db.models import AuditEvent

READ_COALESCE_S = 600
READ_ACTIONS = frozenset({"media.content", "media.thumbnail", "media.read", "patient.read", "patient.media"})


class RecentReads:
    """Bounded memory of a read's key → when it was last recorded, per process: the one rule for coalescing
    repeated reads (a station's or viewer's here, a share link's in `sharing/links.py`)."""

    def __init__(self, size: int = 20_000) -> None:
        self._seen: OrderedDict[tuple[Any, ...], float] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def fresh(self, key: tuple[Any, ...], now: float | None = None) -> bool:
        """True (and remembered as recorded now) unless the same key was recorded within READ_COALESCE_S."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < READ_COALESCE_S:
                return False
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


_recent = RecentReads()


def event(
    principal: Any, action: str, *, patient_id: uuid.UUID | None = None, media_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None, contract_id: uuid.UUID | None = None,
) -> AuditEvent:
    if getattr(principal, "account_id", None):
        kind = "account"
    elif getattr(principal, "station_id", None):
        kind = "station"
    elif getattr(principal, "relay_id", None):
        kind = "relay"
    else:
        kind = "operator"
    return AuditEvent(
        contract_id=contract_id or principal.contract_id,
        actor_kind=kind,
        actor_id=(getattr(principal, "account_id", None) or getattr(principal, "station_id", None)
                  or getattr(principal, "relay_id", None)),
        actor_name=getattr(principal, "name", "")[:200],
        device=getattr(principal, "device", "")[:100],
        address=getattr(principal, "address", "")[:64],
        action=action, patient_id=patient_id, media_id=media_id, detail=detail,
    )


def add(s: Session, principal: Any, action: str, **kwargs: Any) -> None:
    """Record inside the caller's transaction (for writes: the change and its record commit together)."""
    s.add(event(principal, action, **kwargs))


def recorded_recently(principal: Any, action: str, **kwargs: Any) -> bool:
    """True when this read was recorded within READ_COALESCE_S (so it need not be again); False
    marks it as recorded now, and the caller must then `record(..., checked=True)`. No I/O."""
    if action not in READ_ACTIONS:
        return False
    key = (getattr(principal, "session_id", None) or getattr(principal, "station_id", None), action,
           kwargs.get("media_id"), kwargs.get("patient_id"))
    return not _recent.fresh(key)


def record(ctx: Context, principal: Any, action: str, *, checked: bool = False, **kwargs: Any) -> None:
    """Record in a transaction of its own (for reads); repeated reads are coalesced."""
    if not checked and recorded_recently(principal, action, **kwargs):
        return
    with ctx.db.session() as s:
        s.add(event(principal, action, **kwargs))
