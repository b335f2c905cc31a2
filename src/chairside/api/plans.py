"""Plan requests: a contract admin asks for more video hours; the operator decides (CLI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import PlanRequest
from chairside.quota import plan_changes

router = APIRouter(prefix="/api/v1", tags=["plans"])


class PlanRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: int | str = Field(
        description="The plan asked for, in hours: larger than the current plan, 100 to 4000 in steps of 100 "
        "(for example the current plan + 100).", examples=[400])


class PlanRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    hours: int = Field(description="The plan asked for.")
    plan_hours_then: int = Field(description="The plan when the request was made.")
    requested_by_name: str
    requested_at: datetime
    status: Literal["pending", "approved", "declined"]
    decided_at: datetime | None = Field(description="When the operator approved (the plan changed then) or "
                                        "declined.")
    reason: str | None = None


class PlanRequestList(BaseModel):
    items: list[PlanRequestOut]


@router.post("/plan-requests", status_code=201, response_model=PlanRequestOut,
             summary="Ask for a larger plan (contract admins)")
def create_plan_request(
    body: PlanRequestIn,
    principal: Annotated[Principal, allow("admin")],
    ctx: Annotated[Context, Depends(get_context)],
) -> PlanRequest:
    return plan_changes.request_plan(ctx.db, principal.contract_id, body.hours,
                                     account_id=principal.account_id, name=principal.name)


@router.get("/plan-requests", response_model=PlanRequestList, summary="The contract's plan requests, newest first")
def list_plan_requests(
    principal: Annotated[Principal, allow("admin", "viewer", "operator")],
    ctx: Annotated[Context, Depends(get_context)],
) -> PlanRequestList:
    with ctx.db.read() as s:
        rows = s.scalars(select(PlanRequest).where(PlanRequest.contract_id == principal.contract_id)
                         .order_by(PlanRequest.requested_at.desc()).limit(200)).all()
        return PlanRequestList(items=[PlanRequestOut.model_validate(r) for r in rows])
