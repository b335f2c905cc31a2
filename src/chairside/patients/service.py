"""Patients: the one write path for registering and correcting a patient.

Every write stamps the fields it sets with the hybrid logical clock (`Patient.field_clocks`),
so that edits made at the cloud and at relays merge field by field, last writer winning
(feed/ops.py); rewrites the search rows (patients/search.py); records the audit entry;
appends the changes-feed event; and, where the role queues writes upstream (a relay), records
the outbox operation that carries it to the cloud (relay/outbox.py) — all in one transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import date
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Patient, utcnow
from chairside.errors import Problem
from chairside.feed import changes
from chairside.patients.search import index_patient
from chairside.relay import outbox
from chairside.tenancy import visibility

# The fields merged last-writer-wins, each with its own clock.
FIELDS = ("chart_no", "name", "name_kana", "birth_date", "sex")


def field_json(value: object) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def not_found() -> Problem:
    return Problem(404, "This patient was not found. They may be at a branch you cannot see, or the "
                   "link is out of date: search for the patient again.", code="patient-not-found")


def chart_taken(chart_no: str) -> Problem:
    return Problem(409, f"Chart number {chart_no} is already used by another patient of this clinic. "
                   "Open that patient instead, or check the number.", code="chart-no-taken")


def stamp(ctx: Context, s: Session, patient: Patient, fields: list[str] | tuple[str, ...]) -> str:
    """Stamp `fields` of `patient` with a new clock tick, newer than every clock the patient carries."""
    clock = ctx.clock.get(s)
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


def create(ctx: Context, principal: Principal, clinic_id: uuid.UUID, chart_no: str, name: str, name_kana: str,
           birth_date: date | None = None, sex: str = "unknown") -> Patient:
    """Register a patient at one of the caller's clinics (422 when it is not one; 409 for a chart number taken)."""
    try:
        with ctx.db.session() as s:
            if visibility.clinic(s, principal, clinic_id) is None:
                raise Problem(422, "The clinic given for this patient is not one of yours. Choose one of "
                              "your contract's clinics.", code="unknown-clinic")
            patient = Patient(contract_id=principal.contract_id, clinic_id=clinic_id, chart_no=chart_no, name=name,
                              name_kana=name_kana, birth_date=birth_date, sex=sex)
            stamp(ctx, s, patient, FIELDS)
            s.add(patient)
            s.flush()
            index_patient(s, patient)
            audit.add(s, principal, "patient.create", patient_id=patient.id)
            changes.patient_changed(s, patient)
            if ctx.role.queues_writes_upstream:
                outbox.record(s, "patient.create", patient.id, create_body(patient))
    except IntegrityError:
        raise chart_taken(chart_no) from None
    return patient


def update(ctx: Context, principal: Principal, patient_id: uuid.UUID, fields: dict[str, Any]) -> Patient:
    """Correct some of a visible patient's fields (a name, a birth date); only birth_date may be emptied."""
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
            changes.patient_changed(s, patient)
            if ctx.role.queues_writes_upstream and fields:
                outbox.record(s, "patient.update", patient.id, {
                    "id": str(patient.id), "fields": {f: field_json(getattr(patient, f)) for f in sorted(fields)},
                    "clocks": {f: tick for f in sorted(fields)}})
    except IntegrityError:
        raise chart_taken(str(fields.get("chart_no"))) from None
    return patient
