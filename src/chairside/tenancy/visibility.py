"""Who may see what, enforced where the data is read.

Every read of patients and media goes through these selects. An id that is out of the
caller's scope, or belongs to another contract, is indistinguishable from one that does
not exist: the caller gets None, and the API answers 404.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from chairside.db.models import Clinic, Media, Patient


class Scope(Protocol):
    @property
    def contract_id(self) -> uuid.UUID: ...

    @property
    def clinic_ids(self) -> frozenset[uuid.UUID] | None: ...


def patients(scope: Scope) -> Select[Patient]:
    q = select(Patient).where(Patient.contract_id == scope.contract_id)
    if scope.clinic_ids is not None:
        q = q.where(Patient.clinic_id.in_(scope.clinic_ids))
    return q


def media(scope: Scope, *, include_deleted: bool = False) -> Select[Media]:
    q = select(Media).where(Media.contract_id == scope.contract_id)
    if scope.clinic_ids is not None:
        # A media item is as visible as its patient; Media.clinic_id only says where it was taken.
        q = q.where(Media.patient_id.in_(select(Patient.id).where(Patient.clinic_id.in_(scope.clinic_ids))))
    if not include_deleted:
        q = q.where(Media.deleted_at.is_(None))
    return q


def patient(session: Session, scope: Scope, patient_id: uuid.UUID) -> Patient | None:
    return session.scalar(patients(scope).where(Patient.id == patient_id))


def media_item(
    session: Session, scope: Scope, media_id: uuid.UUID, *, include_deleted: bool = False
) -> Media | None:
    return session.scalar(media(scope, include_deleted=include_deleted).where(Media.id == media_id))


def clinic(session: Session, scope: Scope, clinic_id: uuid.UUID) -> Clinic | None:
    if scope.clinic_ids is not None and clinic_id not in scope.clinic_ids:
        return None
    return session.scalar(
        select(Clinic).where(Clinic.id == clinic_id, Clinic.contract_id == scope.contract_id)
    )
