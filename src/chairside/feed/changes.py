"""The changes feed: each write to what a follower keeps appends one event, in the same transaction.

An event carries the row as it now is (`sync.rows.to_json`), or a tombstone for a row that
is gone for good. Its `seq` comes from the contract's counter, taken by an atomic UPDATE:
on PostgreSQL the row lock it takes is held to the commit, so a later event of the same
contract cannot commit before an earlier one, and a follower reading `seq > cursor` never
skips an event. `clinic_id` is the clinic whose visibility governs the event (for a media
item, its patient's clinic), None for contract-wide events.

Kinds: contract, clinic, station, account, session (an account's latest sign-in), patient, media,
media.purged (a tombstone), annotation, annotation.deleted (a tombstone), media.tags (an item's whole
set), patient.merged (a tombstone: merged into another patient), media.teeth (an item's whole set of
tooth numbers), note (an item's or a patient's note). Accounts travel with their password hash, so a
relay signs its clinic's viewer accounts in while the internet is down (docs/relay.md, "The viewer at the relay").
Followers read it through `GET /api/v1/feed` (api/feed.py, `read`); docs/replication.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chairside.db.engine import Database
from chairside.db.models import Account, Annotation, Change, Clinic, Contract, Media, Note, Patient, Station
from chairside.feed.rows import to_json

_Row = TypeVar("_Row", Patient, Media)
KINDS = ("contract", "clinic", "station", "account", "session", "patient", "media", "media.purged", "annotation",
         "annotation.deleted", "media.tags", "patient.merged", "media.teeth", "note")
# Contract fields a follower needs (its quota, by name); not the contacts or the billing facts.
_CONTRACT_PRIVATE = frozenset({"contact_emails", "cancellation_notice_on", "feed_seq"})


def emit(
    s: Session, contract_id: uuid.UUID, kind: str, entity_id: uuid.UUID, body: dict[str, Any],
    clinic_id: uuid.UUID | None = None,
) -> int:
    """Append one event to the contract's feed; answer its seq."""
    assert kind in KINDS, kind
    seq = s.execute(
        update(Contract).where(Contract.id == contract_id)
        .values(feed_seq=Contract.feed_seq + 1).returning(Contract.feed_seq)
    ).scalar_one()
    s.add(Change(contract_id=contract_id, seq=seq, kind=kind, entity_id=entity_id, clinic_id=clinic_id, body=body))
    return int(seq)


def contract_changed(s: Session, contract_id: uuid.UUID) -> int:
    s.flush()
    contract = s.get(Contract, contract_id, populate_existing=True)
    assert contract is not None
    return emit(s, contract.id, "contract", contract.id, to_json(contract, exclude=_CONTRACT_PRIVATE))


def clinic_changed(s: Session, clinic: Clinic) -> int:
    s.flush()
    return emit(s, clinic.contract_id, "clinic", clinic.id, to_json(clinic), clinic_id=None)


def station_changed(s: Session, station: Station) -> int:
    """Stations travel with their token hash: a relay authenticates its clinic's stations offline."""
    s.flush()
    return emit(s, station.contract_id, "station", station.id, to_json(station), clinic_id=station.clinic_id)


def account_changed(s: Session, account: Account) -> int:
    """Viewer accounts travel with their argon2id hash: a relay signs the clinic's accounts in offline.

    Contract-wide (no clinic): an account may sign in at any of the contract's relays; what it then sees is
    still its clinic scope. Every write to an account (created, password, scope, disabled) must emit this.
    """
    s.flush()
    return emit(s, account.contract_id, "account", account.id, to_json(account), clinic_id=None)


def session_started(s: Session, contract_id: uuid.UUID, account_id: uuid.UUID, session_id: uuid.UUID,
                    device_name: str, at: datetime) -> int:
    """An account's latest sign-in (at the cloud, or at a relay once it reached the cloud): every relay ends
    its own sessions of the account that started earlier (one device at a time; relay/viewer.py)."""
    return emit(s, contract_id, "session", session_id,
                {"account_id": str(account_id), "session_id": str(session_id), "device_name": device_name,
                 "created_at": at.isoformat()}, clinic_id=None)


def patient_changed(s: Session, patient: Patient) -> int:
    s.flush()
    return emit(s, patient.contract_id, "patient", patient.id, to_json(patient), clinic_id=patient.clinic_id)


def patient_merged(s: Session, contract_id: uuid.UUID, patient_id: uuid.UUID, clinic_id: uuid.UUID,
                   into: uuid.UUID) -> int:
    """A tombstone: the patient was merged into `into` and removed (patients/merge.py); its items were moved
    by their own events first. Followers move what they still hold of it, then drop it."""
    return emit(s, contract_id, "patient.merged", patient_id, {"id": str(patient_id), "into": str(into)},
                clinic_id=clinic_id)


def media_changed(s: Session, item: Media) -> int:
    s.flush()
    return emit(s, item.contract_id, "media", item.id, to_json(item), clinic_id=_patient_clinic(s, item.patient_id))


def media_purged(s: Session, item: Media, patient_clinic_id: uuid.UUID | None = None) -> int:
    """A tombstone: the item is gone for good (its hours are freed; its blob may be collected)."""
    clinic = patient_clinic_id or _patient_clinic(s, item.patient_id)
    return emit(s, item.contract_id, "media.purged", item.id,
                {"id": str(item.id), "sha256": item.sha256, "patient_id": str(item.patient_id)}, clinic_id=clinic)


def annotation_changed(s: Session, row: Annotation, patient_id: uuid.UUID) -> int:
    """A drawing made or changed: relays show the cloud's drawings too (relay/follower.py)."""
    s.flush()
    return emit(s, row.contract_id, "annotation", row.id, to_json(row), clinic_id=_patient_clinic(s, patient_id))


def annotation_deleted(s: Session, row: Annotation, patient_id: uuid.UUID) -> int:
    return emit(s, row.contract_id, "annotation.deleted", row.id, {"id": str(row.id), "media_id": str(row.media_id)},
                clinic_id=_patient_clinic(s, patient_id))


def tags_changed(s: Session, contract_id: uuid.UUID, media_id: uuid.UUID, patient_id: uuid.UUID,
                 tags: list[str]) -> int:
    """An item's whole tag set, as it now is."""
    return emit(s, contract_id, "media.tags", media_id, {"id": str(media_id), "tags": list(tags)},
                clinic_id=_patient_clinic(s, patient_id))


def teeth_changed(s: Session, contract_id: uuid.UUID, media_id: uuid.UUID, patient_id: uuid.UUID,
                  teeth: list[int]) -> int:
    """An item's whole set of tooth numbers, as it now is (media/teeth.py)."""
    return emit(s, contract_id, "media.teeth", media_id, {"id": str(media_id), "teeth": list(teeth)},
                clinic_id=_patient_clinic(s, patient_id))


def note_changed(s: Session, row: Note, patient_id: uuid.UUID) -> int:
    """An item's or a patient's note as it now is ("" when cleared; media/notes.py)."""
    s.flush()
    return emit(s, row.contract_id, "note", row.entity_id, to_json(row), clinic_id=_patient_clinic(s, patient_id))


def _patient_clinic(s: Session, patient_id: uuid.UUID) -> uuid.UUID | None:
    return s.scalar(select(Patient.clinic_id).where(Patient.id == patient_id))


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: Sequence[Change]  # the events the caller may see, in seq order
    next: int  # the last seq examined (visible or not), or `after` when none
    more: bool  # events exist after `next`
    head: int  # the contract's last seq


def head(s: Session, contract_id: uuid.UUID) -> int:
    return int(s.scalar(select(Contract.feed_seq).where(Contract.id == contract_id)) or 0)


def read(
    s: Session, contract_id: uuid.UUID, after: int, limit: int, clinic_ids: frozenset[uuid.UUID] | None = None,
) -> Page:
    """Up to `limit` events after `after`, those outside `clinic_ids` (None: all) left out but passed over.

    Filtering after the LIMIT keeps every page an index range scan of (contract_id, seq), however
    few of the events a scoped caller may see; `next` moves past the hidden ones all the same.
    """
    rows = s.scalars(
        select(Change).where(Change.contract_id == contract_id, Change.seq > after).order_by(Change.seq).limit(limit)
    ).all()
    last = rows[-1].seq if rows else after
    top = max(head(s, contract_id), last)  # read after the rows: never behind what they show
    visible = [r for r in rows if clinic_ids is None or r.clinic_id is None or r.clinic_id in clinic_ids]
    return Page(items=visible, next=int(last), more=top > last, head=top)


# --- backfill ------------------------------------------------------------------------------------


def backfill(db: Database, contract_id: uuid.UUID, batch: int = 1000) -> int:
    """Append an event for every row of the contract as it now is (contracts made before the feed existed).

    Followers store rows by upsert, so events for rows they already hold are harmless. Each batch
    locks the contract's row before reading, so a concurrent write cannot slip a newer event in
    before this batch's older view of the same row. Answers the events written.
    """
    written = 0
    with db.session() as s:
        _lock(s, contract_id)
        contract_changed(s, contract_id)
        for clinic in s.scalars(select(Clinic).where(Clinic.contract_id == contract_id).order_by(Clinic.id)):
            clinic_changed(s, clinic)
            written += 1
        for station in s.scalars(select(Station).where(Station.contract_id == contract_id).order_by(Station.id)):
            station_changed(s, station)
            written += 1
        for account in s.scalars(select(Account).where(Account.contract_id == contract_id).order_by(Account.id)):
            account_changed(s, account)
            written += 1
    written += 1
    written += _backfill_rows(db, contract_id, batch, Patient, patient_changed)
    written += _backfill_rows(db, contract_id, batch, Media, media_changed)
    return written


def _backfill_rows(
    db: Database, contract_id: uuid.UUID, batch: int, model: type[_Row], changed: Callable[[Session, _Row], int],
) -> int:
    written, last = 0, None
    while True:
        with db.session() as s:
            _lock(s, contract_id)
            q = select(model).where(model.contract_id == contract_id)
            if last is not None:
                q = q.where(model.id > last)
            rows = s.scalars(q.order_by(model.id).limit(batch)).all()
            for row in rows:
                changed(s, row)
            written += len(rows)
        if len(rows) < batch:
            return written
        last = rows[-1].id


def _lock(s: Session, contract_id: uuid.UUID) -> None:
    if s.scalar(select(Contract.id).where(Contract.id == contract_id).with_for_update()) is None:
        raise LookupError(f"no contract {contract_id}")
