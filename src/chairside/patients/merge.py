"""Merge flags: the same chart number registered at two relays during an outage, resolved by staff.

A relay that registers a patient offline cannot know that another branch registered the same chart number
meanwhile; the cloud keeps both and flags the later one (`Patient.merge_with`, feed/ops.py). Staff then
decide, at the cloud:

- `merge(flagged → into)`: the same person. Every item of the flagged patient (those in the trash too) is
  filed under the other with the rules of media/move.py (`refile`: audited in both histories, one feed event
  each); drawings, tags and an item's other facts follow the item. Share links and unfinished uploads naming
  the flagged patient are pointed at the other; another patient flagged against the flagged one is flagged
  against the other instead. Fields of the kept patient that are empty (no birth date, sex `unknown`) are
  filled from the flagged one, stamped with a new clock like any edit (patients/service.py); a field the kept
  patient has is never overwritten. The flagged patient's note is added below the kept one's (after a line
  "――"; cut at the note's limit, media/notes.py). Patients have no trash, so the flagged patient is then
  deleted (its search rows with it). Audited as `patient.merge` in the kept patient's history and
  `patient.merged` in the removed one's (`detail.into`): that entry is also what `resolve` follows, so a
  relay's write that still names the removed patient (an upload or a move queued during the outage) lands on
  the kept one. The feed carries the items, the kept patient, and a `patient.merged` tombstone {id, into} for
  followers (relay/follower.py).
- `keep_apart(flagged, chart_no)`: two people. The flagged patient gets another chart number and loses its
  flag (the clinic's unique index covers unflagged patients only, so the number must be free: 409 otherwise).

Both run in one transaction with their audit entries and feed events. They are cloud-only: a merge deletes a
patient, which a relay cannot do safely while other branches may still be sending that patient's items.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import AuditEvent, Base, Media, Note, Patient, PatientSearchTerm, utcnow
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media import notes
from chairside.media.move import refile
from chairside.patients.search import index_patient
from chairside.patients.service import FIELDS, chart_taken, field_json, not_found, stamp
from chairside.tenancy import visibility

MERGED = "patient.merged"  # the audit action on the removed patient; `resolve` follows it
_HOPS = 8  # merges followed by `resolve` (a merged patient merged again)
# Tables naming a patient that merge() handles itself; any other column referring to patients.id is pointed
# at the kept patient (share links, unfinished uploads, and what later features add).
_OWN = frozenset({"patients", "patient_search_terms", "media", "notes"})
NOTE_JOIN = "\n――\n"  # between the kept patient's note and the removed one's, when both had one


def not_flagged() -> Problem:
    return Problem(409, "この患者さんには統合の確認が必要な印がありません。画面を更新してください。"
                   " / This patient is not flagged for a merge (it may have been resolved already). "
                   "Refresh the list.", code="not-flagged")


def into_self() -> Problem:
    return Problem(422, "同じ患者さんどうしは統合できません。統合先にはもう一人の患者さんを選んでください。"
                   " / A patient cannot be merged into itself: choose the other patient.", code="merge-into-self")


@dataclass(frozen=True)
class Flag:
    patient: Patient  # the flagged one (registered later)
    other: Patient | None  # the patient it collides with, when visible to the caller
    patient_items: int
    other_items: int


def _items(s: Session, patient_id: uuid.UUID) -> int:
    return int(s.scalar(select(func.count()).select_from(Media).where(
        Media.patient_id == patient_id, Media.deleted_at.is_(None))) or 0)


def flags(ctx: Context, principal: Principal, limit: int = 200) -> list[Flag]:
    """The caller's flagged patients, oldest first, each with the patient it collides with and item counts."""
    with ctx.db.read() as s:
        rows = s.scalars(visibility.patients(principal).where(Patient.merge_with.is_not(None))
                         .order_by(Patient.created_at, Patient.id).limit(limit)).all()
        out = []
        for p in rows:
            assert p.merge_with is not None
            other = visibility.patient(s, principal, p.merge_with)
            out.append(Flag(p, other, _items(s, p.id), _items(s, other.id) if other is not None else 0))
        return out


def resolve(s: Session, scope: visibility.Scope, patient_id: uuid.UUID) -> Patient | None:
    """The visible patient with this id, or the one it was merged into (following merges); None otherwise."""
    for _ in range(_HOPS):
        patient = visibility.patient(s, scope, patient_id)
        if patient is not None:
            return patient
        detail = s.scalar(select(AuditEvent.detail).where(
            AuditEvent.contract_id == scope.contract_id, AuditEvent.patient_id == patient_id,
            AuditEvent.action == MERGED).order_by(AuditEvent.id.desc()).limit(1))
        into = detail.get("into") if isinstance(detail, dict) else None
        if not isinstance(into, str):
            return None
        patient_id = uuid.UUID(into)
    return None


def _empty(field: str, value: object) -> bool:
    return value is None or value == "" or (field == "sex" and value == "unknown")


def _referrers() -> list[tuple[Any, Any]]:
    """(table, column) of every other column with a foreign key to patients.id."""
    found = []
    for table in Base.metadata.sorted_tables:
        if table.name in _OWN:
            continue
        for column in table.columns:
            if any(fk.column.table.name == "patients" for fk in column.foreign_keys):
                found.append((table, column))
    return found


def repoint(s: Session, gone: uuid.UUID, into: uuid.UUID) -> list[Patient]:
    """Point what names patient `gone` (but its items and search rows) at `into`: share links, unfinished
    uploads, other tables' patient columns, and patients flagged against it. The cloud's merge and a relay
    following it (relay/viewer.py `patient_merged`) both use it. Answers the patients flagged anew."""
    for table, column in _referrers():
        s.execute(update(table).where(column == gone).values({column.key: into}))
    flagged = list(s.scalars(select(Patient).where(Patient.merge_with == gone)))
    for p in flagged:
        p.merge_with = into if p.id != into else None
    return flagged


@dataclass(frozen=True)
class Merged:
    patient: Patient  # the kept one
    merged_id: uuid.UUID
    moved_items: int
    filled_fields: list[str]


def merge(ctx: Context, principal: Principal, patient_id: uuid.UUID, into_id: uuid.UUID) -> Merged:
    """Merge the flagged patient `patient_id` into `into_id` and remove it (module docstring)."""
    with ctx.db.session() as s:
        flagged = s.scalar(visibility.patients(principal).where(Patient.id == patient_id).with_for_update())
        if flagged is None:
            raise not_found()
        if flagged.merge_with is None:
            raise not_flagged()
        if into_id == flagged.id:
            raise into_self()
        kept = s.scalar(visibility.patients(principal).where(Patient.id == into_id).with_for_update())
        if kept is None:
            raise not_found()
        detail = {"via": "merge", "merged_patient_id": str(flagged.id)}
        items = list(s.scalars(select(Media).where(Media.patient_id == flagged.id).order_by(Media.id)))
        for item in items:  # the trash's items too: restoring one later finds it under the kept patient
            refile(s, principal, item, kept.id, detail)
        reflagged = repoint(s, flagged.id, kept.id)
        filled = [f for f in FIELDS if _empty(f, getattr(kept, f)) and not _empty(f, getattr(flagged, f))]
        for f in filled:
            setattr(kept, f, getattr(flagged, f))
        if filled:
            stamp(ctx, s, kept, filled)
        kept.updated_at = utcnow()
        _merge_note(s, principal, flagged.id, kept.id)
        flagged_id, clinic_id, contract_id = flagged.id, flagged.clinic_id, flagged.contract_id
        gone = {f: field_json(getattr(flagged, f)) for f in FIELDS}
        s.execute(delete(PatientSearchTerm).where(PatientSearchTerm.patient_id == flagged_id))
        s.delete(flagged)
        s.flush()
        if filled:
            index_patient(s, kept)
        audit.add(s, principal, "patient.merge", patient_id=kept.id,
                  detail={"merged_patient_id": str(flagged_id), "moved_items": len(items), "filled": filled,
                          "merged": gone})
        audit.add(s, principal, MERGED, patient_id=flagged_id,
                  detail={"into": str(kept.id), "moved_items": len(items), "merged": gone})
        changes.patient_changed(s, kept)
        for other in reflagged:
            if other.id != kept.id:
                changes.patient_changed(s, other)
        changes.patient_merged(s, contract_id, flagged_id, clinic_id, kept.id)
        return Merged(kept, flagged_id, len(items), filled)


def _merge_note(s: Session, principal: Principal, gone: uuid.UUID, kept: uuid.UUID) -> None:
    """The removed patient's note is added under the kept one's (cut to the note's limit); then it goes."""
    theirs = s.scalar(select(Note).where(Note.patient_id == gone))
    if theirs is None:
        return
    if theirs.text:
        mine = s.get(Note, kept)
        text = theirs.text if mine is None or not mine.text else (mine.text + NOTE_JOIN + theirs.text)
        at = max(utcnow(), mine.updated_at + timedelta(microseconds=1)) if mine is not None else utcnow()
        row = notes.store(s, principal.contract_id, "patient", kept, text[:notes.MAX_CHARS], at,
                          principal.account_id or principal.station_id, principal.name)
        if row is not None:
            changes.note_changed(s, row, kept)
    s.delete(theirs)


def keep_apart(ctx: Context, principal: Principal, patient_id: uuid.UUID, chart_no: str) -> Patient:
    """Clear the flag of a patient who is someone else, giving them another chart number (module docstring)."""
    try:
        with ctx.db.session() as s:
            patient = visibility.patient(s, principal, patient_id)
            if patient is None:
                raise not_found()
            if patient.merge_with is None:
                raise not_flagged()
            before, other = patient.chart_no, patient.merge_with
            patient.chart_no, patient.merge_with = chart_no, None
            patient.updated_at = utcnow()
            stamp(ctx, s, patient, ["chart_no"])
            s.flush()  # the unique index answers now: the number must be free in the clinic
            index_patient(s, patient)
            audit.add(s, principal, "patient.keep_apart", patient_id=patient.id,
                      detail={"from_chart_no": before, "chart_no": chart_no, "other_patient_id": str(other)})
            audit.add(s, principal, "patient.keep_apart", patient_id=other,
                      detail={"kept_apart_patient_id": str(patient.id), "chart_no": chart_no})
            changes.patient_changed(s, patient)
    except IntegrityError:
        raise chart_taken(chart_no) from None
    return patient
