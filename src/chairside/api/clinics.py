"""The clinics the caller may see: names for the viewer's clinic filter and the patients' branch."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from chairside.api.deps import get_context
from chairside.api.patients import READERS
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Clinic

router = APIRouter(prefix="/api/v1", tags=["clinics"])


class ClinicOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    tooth_notation: str = Field(default="fdi", description="How tooth numbers are shown for this clinic's "
                                "patients: fdi (16) or palmer (6┘); PUT /api/v1/clinics/{id}/tooth-notation")


class ClinicList(BaseModel):
    items: list[ClinicOut]


@router.get("/clinics", response_model=ClinicList, summary="The clinics of the contract this caller may see")
def list_clinics(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> ClinicList:
    q = select(Clinic).where(Clinic.contract_id == principal.contract_id)
    if principal.clinic_ids is not None:
        q = q.where(Clinic.id.in_(principal.clinic_ids))
    with ctx.db.read() as s:
        return ClinicList(items=[ClinicOut.model_validate(c) for c in s.scalars(q.order_by(Clinic.created_at,
                                                                                             Clinic.name))])
