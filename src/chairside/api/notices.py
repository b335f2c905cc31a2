"""Notices to the contract (its stored video hours crossed a threshold of the plan), newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Contract, Job, Notice
from chairside.quota import usage

router = APIRouter(prefix="/api/v1", tags=["notices"])
READERS = ("operator", "admin", "viewer", "station", "relay")


class NoticeOut(BaseModel):
    id: uuid.UUID
    kind: Literal["quota"]
    threshold_percent: int = Field(description="The share of the plan that was crossed.", examples=[80])
    crossing: int = Field(description="1 for the first time this threshold was crossed, 2 for the next (after "
                          "the stored hours fell below it again, or the plan was lowered), …")
    used_hours: float = Field(description="Stored video hours when the threshold was crossed (0.01 h, rounded up).")
    plan_hours: int
    created_at: datetime
    title: str
    message: str
    email: Literal["pending", "sent", "skipped", "failed"] = Field(
        description="pending: not sent yet (retried while the mail server fails); sent; skipped: the contract has "
        "no contact address; failed: given up after the last retry.")


class NoticeList(BaseModel):
    items: list[NoticeOut]


def _email_status(job: Job | None) -> Literal["pending", "sent", "skipped", "failed"]:
    if job is None or (job.done_at is None and job.dead_at is None):
        return "pending"
    if job.dead_at is not None:
        return "failed"
    return "skipped" if (job.result or "").startswith("skipped") else "sent"


@router.get("/notices", response_model=NoticeList, summary="Notices to the contract, newest first")
def list_notices(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NoticeList:
    with ctx.db.read() as s:
        name = s.scalar(select(Contract.name).where(Contract.id == principal.contract_id)) or ""
        rows = s.scalars(
            select(Notice).where(Notice.contract_id == principal.contract_id)
            .order_by(Notice.created_at.desc(), Notice.threshold_percent.desc()).limit(limit)
        ).all()
        keys = [f"{usage.NOTICE_MAIL}:{n.id}" for n in rows]
        mail = {j.key: j for j in s.scalars(select(Job).where(Job.key.in_(keys)))} if keys else {}
        items = []
        for n in rows:
            title, message = usage.notice_text(n, name)
            items.append(NoticeOut(
                id=n.id, kind="quota", threshold_percent=n.threshold_percent, crossing=n.crossing,
                used_hours=float(usage.used_hours(n.used_ms)), plan_hours=n.plan_hours, created_at=n.created_at,
                title=title, message=message, email=_email_status(mail.get(f"{usage.NOTICE_MAIL}:{n.id}")),
            ))
    return NoticeList(items=items)
