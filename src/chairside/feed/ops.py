"""Writes made at a relay, applied by the cloud once (the route: `POST /api/v1/relay/ops`, api/relay_ops.py).

A relay records each write its clinic makes (relay/outbox.py) and sends it here with the
`op_id` it made. The op is applied, its `applied_ops` row inserted, its feed event and audit
entry added, all in one transaction: a retry (the answer was lost on the WAN) finds the row
and answers "duplicate" with the stored result, changing nothing.

Patient fields merge last-writer-wins per field by hybrid logical clock (domain.hlc): a field
is taken only when the op's clock for it is newer than the one stored. A patient created at a
relay with a chart number another patient of the clinic already has is kept, flagged with
`merge_with` for staff to merge, never joined. Rules: docs/replication.md.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import AppliedOp, Patient, utcnow
from chairside.domain.hlc import is_valid, newer
from chairside.errors import Problem
from chairside.feed import changes, viewer_ops
from chairside.media import trash
from chairside.patients import merge
from chairside.patients.fields import PatientPatch
from chairside.patients.search import index_patient
from chairside.patients.service import FIELDS, field_json
from chairside.patients.service import not_found as patient_not_found
from chairside.tenancy import visibility

KINDS = ("patient.create", "patient.update", "media.trash", "media.restore", *viewer_ops.KINDS)
_ATTEMPTS = 3  # a race with a concurrent op (same id, same chart number) is retried, then answered


def _clocks(value: dict[str, str]) -> dict[str, str]:
    for name, ts in value.items():
        if name not in FIELDS:
            raise ValueError(f"'{name}' is not a patient field with a clock ({', '.join(FIELDS)})")
        if not is_valid(ts):
            raise ValueError(f"the clock of '{name}' is not a hybrid logical clock timestamp")
    return value


class PatientCreateBody(BaseModel):
    id: uuid.UUID
    clinic_id: uuid.UUID
    chart_no: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=200)
    name_kana: str = Field(min_length=1, max_length=200)
    birth_date: date | None = None
    sex: Literal["male", "female", "other", "unknown"] = "unknown"
    created_at: datetime | None = None
    field_clocks: dict[str, str] = Field(default_factory=dict)

    _check_clocks = field_validator("field_clocks")(_clocks)


class PatientUpdateBody(BaseModel):
    id: uuid.UUID
    fields: dict[str, Any]
    clocks: dict[str, str]

    _check_clocks = field_validator("clocks")(_clocks)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        checked = PatientPatch.model_validate(value).model_dump(exclude_unset=True)
        for name, v in checked.items():
            if v is None and name != "birth_date":
                raise ValueError(f"{name} cannot be emptied")
        return {k: v.strip() if isinstance(v, str) else v for k, v in checked.items()}


class MediaBody(BaseModel):
    id: uuid.UUID
    at: datetime | None = None


def _invalid(kind: str, e: ValidationError) -> Problem:
    fields = "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ())) or 'body'}: {err.get('msg', 'invalid')}"
                       for err in e.errors()[:5])
    return Problem(422, f"The relay sent a {kind} operation this server cannot apply — {fields}. Update the relay's "
                   "software; the operation stays in its outbox.", code="bad-relay-op")


def _audit(s: Session, principal: Principal, action: str, **kwargs: Any) -> None:
    event = audit.event(principal, action, **kwargs)
    event.actor_kind, event.actor_id = "relay", principal.relay_id
    s.add(event)


def _chart_holder(s: Session, patient: Patient) -> uuid.UUID | None:
    """Another unflagged patient of the clinic with this patient's chart number, if any."""
    return s.scalar(select(Patient.id).where(
        Patient.clinic_id == patient.clinic_id, Patient.chart_no == patient.chart_no,
        Patient.merge_with.is_(None), Patient.id != patient.id,
    ).limit(1))


def _merge_fields(
    ctx: Context, s: Session, principal: Principal, patient: Patient, fields: dict[str, Any], clocks: dict[str, str],
) -> list[str]:
    """Take each field whose clock is newer than the stored one; answer the fields taken."""
    clock = ctx.clock.get(s)
    stored = dict(patient.field_clocks or {})
    taken = []
    for name in sorted(fields):
        ts = clocks.get(name)
        if ts is None:
            continue  # a value without a clock cannot be ordered: kept out
        clock.observe(ts)  # later edits made at the cloud are newer than this one
        if newer(ts, stored.get(name)):
            setattr(patient, name, fields[name])
            stored[name] = ts
            taken.append(name)
    if not taken:
        return taken
    patient.field_clocks = stored
    patient.updated_at = utcnow()
    if "chart_no" in taken:
        # Crossing edits may give two patients one chart number: flag, never fail (the relay cannot undo it).
        with s.no_autoflush:  # the flag must be set before the new number reaches the unique index
            holder = _chart_holder(s, patient)
        if holder is not None and patient.merge_with is None:
            patient.merge_with = holder
        elif holder is None and patient.merge_with is not None:
            patient.merge_with = None  # the number was corrected: nothing left to merge
    s.flush()
    index_patient(s, patient)
    _audit(s, principal, "patient.update", patient_id=patient.id, detail={"fields": taken, "via": "relay"})
    changes.patient_changed(s, patient)
    return taken


def _patient_result(patient: Patient, taken: list[str]) -> dict[str, Any]:
    return {"id": str(patient.id), "merge_with": str(patient.merge_with) if patient.merge_with else None,
            "applied_fields": taken}


def _patient_create(ctx: Context, s: Session, principal: Principal, body: PatientCreateBody) -> dict[str, Any]:
    fields = {f: getattr(body, f) for f in FIELDS}
    existing = s.get(Patient, body.id)
    if existing is not None:
        if existing.contract_id != principal.contract_id:
            raise patient_not_found()
        # Already here (sent before, or made by another path): merge it like an edit, by its clocks.
        return _patient_result(existing, _merge_fields(ctx, s, principal, existing, fields, body.field_clocks))
    if visibility.clinic(s, principal, body.clinic_id) is None:
        raise Problem(422, "The clinic given for this patient is not one of this contract's clinics. Check the "
                      "relay's settings (it may be registered to another contract).", code="unknown-clinic")
    clock = ctx.clock.get(s)
    for ts in body.field_clocks.values():
        clock.observe(ts)
    now = utcnow()
    patient = Patient(
        id=body.id, contract_id=principal.contract_id, clinic_id=body.clinic_id, **fields,
        created_at=body.created_at or now, updated_at=now, field_clocks=dict(body.field_clocks),
    )
    patient.merge_with = _chart_holder(s, patient)
    s.add(patient)
    s.flush()
    index_patient(s, patient)
    _audit(s, principal, "patient.create", patient_id=patient.id,
           detail={"via": "relay", **({"merge_with": str(patient.merge_with)} if patient.merge_with else {})})
    changes.patient_changed(s, patient)
    return _patient_result(patient, sorted(fields))


def _patient_update(ctx: Context, s: Session, principal: Principal, body: PatientUpdateBody) -> dict[str, Any]:
    patient = visibility.patient(s, principal, body.id)
    if patient is None:
        kept = merge.resolve(s, principal, body.id)
        if kept is not None:  # merged meanwhile (patients/merge.py): the edit of a removed patient changes nothing
            return {"id": str(body.id), "merged_into": str(kept.id), "merge_with": None, "applied_fields": []}
        raise patient_not_found()
    return _patient_result(patient, _merge_fields(ctx, s, principal, patient, body.fields, body.clocks))


def _media(ctx: Context, s: Session, principal: Principal, body: MediaBody, *, to_trash: bool) -> dict[str, Any]:
    if to_trash:
        item, changed = trash.trash(ctx, s, principal, body.id, at=body.at, detail={"via": "relay"})
    else:
        item, changed = trash.restore(ctx, s, principal, body.id, detail={"via": "relay"})
    return {"id": str(item.id), "deleted_at": field_json(item.deleted_at), "changed": changed}


def _parse(kind: str, body: dict[str, Any]) -> BaseModel:
    models: dict[str, type[BaseModel]] = {"patient.create": PatientCreateBody, "patient.update": PatientUpdateBody,
                                          **viewer_ops.MODELS}  # the viewer's writes at a relay (feed/viewer_ops.py)
    model = models.get(kind, MediaBody)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise _invalid(kind, e) from None


def _apply(ctx: Context, s: Session, principal: Principal, kind: str, parsed: BaseModel) -> dict[str, Any]:
    if isinstance(parsed, PatientCreateBody):
        return _patient_create(ctx, s, principal, parsed)
    if isinstance(parsed, PatientUpdateBody):
        return _patient_update(ctx, s, principal, parsed)
    if kind in viewer_ops.KINDS:
        return viewer_ops.apply(s, principal, parsed)
    assert isinstance(parsed, MediaBody)
    return _media(ctx, s, principal, parsed, to_trash=kind == "media.trash")


def _stored(ctx: Context, principal: Principal, op_id: uuid.UUID) -> AppliedOp | None:
    with ctx.db.read() as s:
        done = s.get(AppliedOp, op_id)
    if done is not None and done.contract_id != principal.contract_id:
        # Said without naming whose it is: an id of another contract tells nothing (docs/security.md).
        raise Problem(409, "This operation id was already used for another operation. The relay must make a new "
                      "id for each operation.", code="op-id-conflict")
    return done


def apply(ctx: Context, principal: Principal, op_id: uuid.UUID, kind: str,
          body: dict[str, Any]) -> tuple[Literal["applied", "duplicate"], dict[str, Any]]:
    """Apply a relay's op once: the first time in one transaction with its `applied_ops` row; a replay
    answers "duplicate" with the stored result and changes nothing."""
    parsed = _parse(kind, body)
    for attempt in range(_ATTEMPTS):
        done = _stored(ctx, principal, op_id)
        if done is not None:
            return "duplicate", done.result or {}
        try:
            with ctx.db.session() as s:
                result = _apply(ctx, s, principal, kind, parsed)
                s.add(AppliedOp(op_id=op_id, contract_id=principal.contract_id, kind=kind, result=result))
                s.flush()  # a concurrent copy of this op fails here, rolling its change back
            return "applied", result
        except IntegrityError:
            # The same op applied meanwhile (answered as a duplicate above), or a chart number taken by a
            # concurrent create (flagged on the next attempt).
            if attempt == _ATTEMPTS - 1:
                raise Problem(409, "This operation conflicted with others applied at the same moment. The relay "
                              "sends it again.", code="op-conflict") from None
    raise AssertionError("unreachable")  # pragma: no cover
