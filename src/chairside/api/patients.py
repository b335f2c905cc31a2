"""Patients: create, search (chart number, name, kana), read, update."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside import audit
from chairside.api.context import Context, get_context
from chairside.api.principal import Principal, allow
from chairside.api.schemas import PatientIn, PatientList, PatientOut, PatientPatch
from chairside.db import visibility
from chairside.db.models import Patient, PatientSearchTerm, utcnow
from chairside.domain.kana import prefix_upper_bound, search_key, search_terms
from chairside.errors import Problem

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])
READERS = ("operator", "admin", "viewer", "station", "relay")
WRITERS = ("admin", "viewer", "station", "relay")


def not_found() -> Problem:
    return Problem(404, "This patient was not found. They may be at a branch you cannot see, or the "
                   "link is out of date: search for the patient again.", code="patient-not-found")


def index_patient(s: Session, patient: Patient) -> None:
    s.execute(delete(PatientSearchTerm).where(PatientSearchTerm.patient_id == patient.id))
    for term in sorted(search_terms(patient.chart_no, patient.name, patient.name_kana)):
        s.add(PatientSearchTerm(patient_id=patient.id, contract_id=patient.contract_id, term=term[:200]))


def _chart_taken(chart_no: str) -> Problem:
    return Problem(409, f"Chart number {chart_no} is already used by another patient of this clinic. "
                   "Open that patient instead, or check the number.", code="chart-no-taken")


@router.post("", status_code=201, response_model=PatientOut, summary="Register a patient")
def create_patient(
    body: PatientIn,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Patient:
    try:
        with ctx.db.session() as s:
            if visibility.clinic(s, principal, body.clinic_id) is None:
                raise Problem(422, "The clinic given for this patient is not one of yours. Choose one of "
                              "your contract's clinics.", code="unknown-clinic")
            patient = Patient(contract_id=principal.contract_id, **body.model_dump())
            s.add(patient)
            s.flush()
            index_patient(s, patient)
            audit.add(s, principal, "patient.create", patient_id=patient.id)
    except IntegrityError:
        raise _chart_taken(body.chart_no) from None
    return patient


@router.get("", response_model=PatientList, summary="Search patients, or list the most recently updated")
def search_patients(
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
    q: Annotated[str | None, Query(max_length=100, description="Chart number, name or kana (any width, "
                                   "hiragana or katakana); matches the start of each word")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PatientList:
    with ctx.db.read() as s:
        query = visibility.patients(principal)
        key = search_key(q or "")
        if key:
            matching = (
                select(PatientSearchTerm.patient_id)
                .where(and_(
                    PatientSearchTerm.contract_id == principal.contract_id,
                    PatientSearchTerm.term >= key,
                    PatientSearchTerm.term < prefix_upper_bound(key),
                ))
                .limit(1000)
            )
            query = query.where(Patient.id.in_(matching)).order_by(Patient.name_kana, Patient.id)
        else:
            query = query.order_by(Patient.updated_at.desc(), Patient.id)
        rows = s.scalars(query.limit(min(limit, ctx.settings.search_limit * 4))).all()
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
            raise not_found()
    audit.record(ctx, principal, "patient.read", patient_id=patient_id)
    return patient


@router.patch("/{patient_id}", response_model=PatientOut, summary="Correct a patient's details")
def update_patient(
    patient_id: uuid.UUID,
    body: PatientPatch,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Patient:
    changes = body.model_dump(exclude_unset=True)
    try:
        with ctx.db.session() as s:
            patient = visibility.patient(s, principal, patient_id)
            if patient is None:
                raise not_found()
            for field, value in changes.items():
                if value is None and field != "birth_date":
                    raise Problem(422, f"{field} cannot be emptied.", code="invalid")
                setattr(patient, field, value.strip() if isinstance(value, str) else value)
            patient.updated_at = utcnow()
            s.flush()
            index_patient(s, patient)
            audit.add(s, principal, "patient.update", patient_id=patient.id, detail={"fields": sorted(changes)})
    except IntegrityError:
        raise _chart_taken(str(changes.get("chart_no"))) from None
    return patient
