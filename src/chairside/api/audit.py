"""The audit trail, for contract admins: paged and filterable, newest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import AuditEvent

router = APIRouter(prefix="/api/v1", tags=["audit"])


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor_kind: str
    actor_id: uuid.UUID | None
    actor_name: str
    device: str
    address: str
    action: str
    patient_id: uuid.UUID | None
    media_id: uuid.UUID | None
    detail: dict[str, Any] | None


class AuditList(BaseModel):
    items: list[AuditOut]
    next_before: int | None


@router.get("/audit", response_model=AuditList, summary="Who saw or changed what (contract admins)")
def list_audit(
    principal: Annotated[Principal, allow("admin")],
    ctx: Annotated[Context, Depends(get_context)],
    patient_id: uuid.UUID | None = None,
    media_id: uuid.UUID | None = None,
    action: str | None = None,
    actor_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[int | None, Query(description="Page: events older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditList:
    since, until = (t if t is None or t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until))
    q = select(AuditEvent).where(AuditEvent.contract_id == principal.contract_id)
    if patient_id:
        q = q.where(AuditEvent.patient_id == patient_id)
    if media_id:
        q = q.where(AuditEvent.media_id == media_id)
    if action:
        q = q.where(AuditEvent.action == action)
    if actor_id:
        q = q.where(AuditEvent.actor_id == actor_id)
    if since:
        q = q.where(AuditEvent.at >= since)
    if until:
        q = q.where(AuditEvent.at < until)
    if before:
        q = q.where(AuditEvent.id < before)
    with ctx.db.read() as s:
        rows = s.scalars(q.order_by(AuditEvent.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditList(items=[AuditOut.model_validate(r) for r in rows], next_before=rows[-1].id if more else None)
