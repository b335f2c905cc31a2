"""Small helpers for the quota tests: read and set a contract's counter and plan directly."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from chairside.context import Context
from chairside.db.models import Contract, Notice

HOUR_MS = 3_600_000


def counter(ctx: Context, contract_id: uuid.UUID) -> int:
    with ctx.db.session() as s:
        value = s.scalar(select(Contract.stored_video_ms).where(Contract.id == contract_id))
        assert value is not None
        return value


def set_counter(ctx: Context, contract_id: uuid.UUID, ms: int, plan_hours: int | None = None) -> None:
    """Pretend `ms` of video are stored (the rows are not there: `quota verify` would report drift)."""
    values: dict[str, int] = {"stored_video_ms": ms}
    if plan_hours is not None:
        values["plan_hours"] = plan_hours
    with ctx.db.session() as s:
        s.execute(update(Contract).where(Contract.id == contract_id).values(**values))


def notices(ctx: Context, contract_id: uuid.UUID) -> list[tuple[int, int]]:
    """(threshold, crossing) of the contract's notices, oldest first."""
    with ctx.db.session() as s:
        rows = s.execute(select(Notice.threshold_percent, Notice.crossing).where(Notice.contract_id == contract_id)
                         .order_by(Notice.created_at, Notice.threshold_percent))
        return [(r.threshold_percent, r.crossing) for r in rows]
