"""Patients: create, search (chart number, name, kana), read, update.

Every write stamps the fields it sets with the hybrid logical clock (`Patient.field_clocks`), so
that edits made at the cloud and at relays merge field by field, last writer winning
(api/relay_ops.py); every write appends its changes-feed event; at a relay it also records the
outbox operation that carries it to the cloud (relay/outbox.py), all in the write's transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.api.principal import Principal, allow
from chairside.api.schemas import PatientIn, PatientList, PatientOut, PatientPatch
from chairside.auth import audit
from chairside.clock import clock_for
from chairside.context import Context, get_context
from chairside.db.models import Patient, PatientSearchTerm, utcnow
from chairside.domain.kana import search_key
from chairside.errors import Problem
from chairside.feed import changes as feed
from chairside.patients import search as patient_search
from chairside.relay import outbox
from chairside.tenancy import visibility

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])
READERS = ("operator", "admin", "viewer", "station", "relay")
WRITERS = ("admin", "viewer", "station", "relay")
# The fields merged last-writer-wins, each with its own clock.
FIELDS = ("chart_no", "name", "name_kana", "birth_date", "sex")


def field_json(value: object) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def stamp(ctx: Context, s: Session, patient: Patient, fields: list[str] | tuple[str, ...]) -> str:
    """Stamp `fields` of `patient` with a new clock tick, newer than every clock the patient carries."""
    clock = clock_for(ctx, s)
    clocks = dict(patient.field_clocks or {})
    for seen in clocks.values():
        if isinstance(seen, str):
            with contextlib.suppress(ValueError):
                clock.observe(seen)  # an edit made after seeing a relay's edit is newer than it
    now = clock.now()
    clocks.update({f: now for f in fields})
    patient.field_clocks = clocks  # a new dict: the JSON column sees the change
    return now


def create_body(patient: Patient) -> dict[str, Any]:
    """The outbox body of a patient.create (relay/outbox.py)."""
    return {"id": str(patient.id), "clinic_id": str(patient.clinic_id), "created_at": patient.created_at.isoformat(),
            **{f: field_json(getattr(patient, f)) for f in FIELDS}, "field_clocks": dict(patient.field_clocks or {})}


def not_found() -> Problem:
    return Problem(404, "This patient was not found. They may be at a branch you cannot see, or the "
                   "link is out of date: search for the patient again.", code="patient-not-found")


def index_patient(s: Session, patient: Patient) -> None:
    """(Re)write the patient's search rows: every prefix of its terms, with its kana sort key (patients/search.py)."""
    s.execute(delete(PatientSearchTerm).where(PatientSearchTerm.patient_id == patient.id))
    s.execute(insert(PatientSearchTerm), patient_search.index_rows(
        patient.id, patient.contract_id, patient.chart_no, patient.name, patient.name_kana))


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
            stamp(ctx, s, patient, FIELDS)
            s.add(patient)
            s.flush()
            index_patient(s, patient)
            audit.add(s, principal, "patient.create", patient_id=patient.id)
            feed.patient_changed(s, patient)
            if ctx.role == "relay":  # carried to the cloud by the relay's uploader
                outbox.record(s, "patient.create", patient.id, create_body(patient))
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
    fields = body.model_dump(exclude_unset=True)
    try:
        with ctx.db.session() as s:
            patient = visibility.patient(s, principal, patient_id)
            if patient is None:
                raise not_found()
            for field, value in fields.items():
                if value is None and field != "birth_date":
                    raise Problem(422, f"{field} cannot be emptied.", code="invalid")
                setattr(patient, field, value.strip() if isinstance(value, str) else value)
            patient.updated_at = utcnow()
            tick = stamp(ctx, s, patient, sorted(fields))
            s.flush()
            index_patient(s, patient)
            audit.add(s, principal, "patient.update", patient_id=patient.id, detail={"fields": sorted(fields)})
            feed.patient_changed(s, patient)
            if ctx.role == "relay" and fields:
                outbox.record(s, "patient.update", patient.id, {
                    "id": str(patient.id), "fields": {f: field_json(getattr(patient, f)) for f in sorted(fields)},
                    "clocks": {f: tick for f in sorted(fields)}})
    except IntegrityError:
        raise _chart_taken(str(fields.get("chart_no"))) from None
    return patient
