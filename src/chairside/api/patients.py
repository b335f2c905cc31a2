"""Patients: register, search (chart number, name, kana), read, correct. The write path is patients/service.py."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.api.schemas import PatientList, PatientOut
from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Patient
from chairside.domain.kana import search_key
from chairside.patients import search as patient_search
from chairside.patients import service
from chairside.patients.fields import PatientIn, PatientPatch
from chairside.tenancy import visibility

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])
READERS = ("operator", "admin", "viewer", "station", "relay")
WRITERS = ("admin", "viewer", "station", "relay")


@router.post("", status_code=201, response_model=PatientOut, summary="Register a patient")
def create_patient(
    body: PatientIn,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Patient:
    return service.create(ctx, principal, **body.model_dump())


@router.get("", response_model=PatientList, summary="Search patients, or list the most recently updated")
def search_patients(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    q: Annotated[str | None, Query(max_length=100, description="Chart number, name or kana (any width, "
                                   "hiragana or katakana); matches the start of each word")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PatientList:
    limit = min(limit, ctx.settings.search_limit * 4)
    with ctx.db.read() as s:
        key = search_key(q or "")
        if key:  # the first patients by kana (folded) then id: one index walk, see patients/search.py
            rows = patient_search.find_patients(s, principal, key, limit)
        else:
            # Newest first, ties by id (same direction): a backward walk of (contract_id, updated_at, id).
            query = visibility.patients(principal).order_by(Patient.updated_at.desc(), Patient.id.desc())
            rows = list(s.scalars(query.limit(limit)).all())
        return PatientList(items=[PatientOut.model_validate(p) for p in rows])


@router.get("/{patient_id}", response_model=PatientOut, summary="One patient")
def get_patient(
    patient_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Patient:
    with ctx.db.read() as s:
        patient = visibility.patient(s, principal, patient_id)
        if patient is None:
            raise service.not_found()
    audit.record(ctx, principal, "patient.read", patient_id=patient_id)
    return patient


@router.patch("/{patient_id}", response_model=PatientOut, summary="Correct a patient's details")
def update_patient(
    patient_id: uuid.UUID,
    body: PatientPatch,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Patient:
    return service.update(ctx, principal, patient_id, body.model_dump(exclude_unset=True))
