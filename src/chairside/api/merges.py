"""Merge flags: list the patients flagged when a chart number was registered twice offline; merge or keep apart.

The rules are patients/merge.py's. Cloud only (a merge removes a patient; app.py mounts this in FULL_API).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.api.schemas import PatientOut
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.patients import merge
from chairside.patients.fields import PatientPatch

router = APIRouter(prefix="/api/v1", tags=["patients"])
STAFF = ("admin", "viewer")


class MergeFlag(BaseModel):
    patient: PatientOut = Field(description="The flagged patient (registered later, at a relay while offline).")
    other: PatientOut | None = Field(description="The patient with the same chart number it collides with "
                                     "(null when out of the caller's sight).")
    patient_items: int = Field(description="Photos and videos of the flagged patient (not in the trash).")
    other_items: int


class MergeFlagList(BaseModel):
    items: list[MergeFlag]


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: uuid.UUID = Field(description="The patient to keep; usually the flagged patient's `merge_with`.")


class MergeOut(BaseModel):
    patient: PatientOut = Field(description="The patient kept, as it now is.")
    merged_id: uuid.UUID = Field(description="The flagged patient, now removed.")
    moved_items: int
    filled_fields: list[str] = Field(description="Empty fields of the kept patient filled from the removed one.")


class KeepApartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chart_number: str = Field(min_length=1, max_length=40, description="A chart number not used in the clinic.")

    @field_validator("chart_number")
    @classmethod
    def _visible(cls, v: str) -> str:
        return str(PatientPatch(chart_no=v).chart_no)  # the same text rules as a patient's chart number


@router.get("/merge-flags", response_model=MergeFlagList, summary="Patients flagged for a merge, with their pair")
def list_merge_flags(
    principal: Annotated[Principal, allow(*STAFF)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MergeFlagList:
    return MergeFlagList(items=[
        MergeFlag(patient=PatientOut.model_validate(f.patient),
                  other=PatientOut.model_validate(f.other) if f.other is not None else None,
                  patient_items=f.patient_items, other_items=f.other_items)
        for f in merge.flags(ctx, principal)])


@router.post("/patients/{patient_id}/merge", response_model=MergeOut,
             summary="Merge a flagged patient into another (items, links, empty fields), removing it")
def merge_patient(
    patient_id: uuid.UUID,
    body: MergeIn,
    principal: Annotated[Principal, allow(*STAFF)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MergeOut:
    done = merge.merge(ctx, principal, patient_id, body.into)
    return MergeOut(patient=PatientOut.model_validate(done.patient), merged_id=done.merged_id,
                    moved_items=done.moved_items, filled_fields=done.filled_fields)


@router.post("/patients/{patient_id}/keep-apart", response_model=PatientOut,
             summary="Keep a flagged patient as another person, under a new chart number")
def keep_apart(
    patient_id: uuid.UUID,
    body: KeepApartIn,
    principal: Annotated[Principal, allow(*STAFF)],
    ctx: Annotated[Context, Depends(get_context)],
) -> PatientOut:
    return PatientOut.model_validate(merge.keep_apart(ctx, principal, patient_id, body.chart_number))
