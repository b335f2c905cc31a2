"""The contract's video quota: plan hours, stored hours, room left, and when the plan will be full."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.quota import usage

router = APIRouter(prefix="/api/v1", tags=["quota"])
READERS = ("operator", "admin", "viewer", "station", "relay")


class QuotaOut(BaseModel):
    plan_hours: int = Field(description="Video hours in the contract's plan.", examples=[300])
    used_hours: float = Field(
        description="Hours of video stored, to 0.01 h rounded up. Videos in the trash still count: they free "
        "their hours only when the trash is emptied (purged). Photos never count.", examples=[241.37])
    remaining_hours: float = Field(description="Hours of video that still fit, to 0.01 h rounded down; 0 at or "
                                   "over the limit.", examples=[58.63])
    percent: float = Field(description="Percent of the plan used, to 0.1 rounded down (may exceed 100: a "
                           "recording that started below the limit is saved in full).", examples=[80.4])
    forecast_full_on: date | None = Field(
        description="The day the plan will be full at the net recording rate of the last 30 days (recorded "
        "minus purged); today when already full; null when the stored hours are not growing.")
    note: str = Field(description="How the figures are counted, for display.")


NOTE = ("Stored hours count every video of the contract, those in the trash included, until the trash is "
        "emptied. Photos are unlimited. At or over the plan, new videos are refused; a recording already "
        "uploading is saved in full.")


@router.get("/quota", response_model=QuotaOut, summary="The contract's video hours: plan, used, left, forecast")
def get_quota(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> QuotaOut:
    with ctx.db.read() as s:
        q = usage.quota_of(s, principal.contract_id, window_days=ctx.settings.quota_forecast_days)
    return QuotaOut(**q.as_json(), note=NOTE)
