"""Notes: free text on a media item or on a patient (the text's rules are domain/notes.py). One note per item
or patient, kept in `notes` by its id; the one write path carries its audit entry, its changes-feed event and,
at a relay, its outbox op.

The latest write wins, wherever it was made. A note carries `updated_at`, the moment it was saved (at the
cloud or at a relay, clocks kept by NTP); when a relay's write reaches the cloud after a later one was saved
there, the cloud keeps its own (`store` answers False) and the relay takes the cloud's from the feed. A
cleared note is kept as "" so an older write cannot bring the old text back. A media item's note follows the
item when it is moved; a purge takes it (foreign key, ON DELETE CASCADE).

The audit trail records each change with the note's length, not its text (`media.note`, `patient.note`),
and each read (`media.note.read`, `patient.note.read`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Note, utcnow
from chairside.domain import notes as rules
from chairside.domain.text import UnsafeText
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media.items import not_found as media_not_found
from chairside.patients.service import not_found as patient_not_found
from chairside.relay import dentistry as relay_dentistry
from chairside.tenancy import visibility

Kind = Literal["media", "patient"]
MAX_CHARS = rules.MAX_CHARS


@dataclass(frozen=True)
class NoteView:
    entity_id: uuid.UUID
    kind: str
    text: str
    updated_at: datetime | None
    author_name: str


def clean(text: str) -> str:
    """The note as stored; a 422 problem staff can act on otherwise."""
    try:
        return rules.clean_note(text)
    except rules.NoteTooLong:
        raise Problem(422, f"メモは {MAX_CHARS} 文字までです。短くしてから保存してください。 / A note is at most "
                      f"{MAX_CHARS} characters. Shorten it and save again.", code="note-too-long",
                      max_chars=MAX_CHARS) from None
    except UnsafeText as e:
        raise Problem(422, "メモに使えない文字（制御文字や文字の向きを変える記号）が含まれています。 / "
                      f"The note contains characters that cannot be stored: it {e}.", code="bad-note") from None


def _patient_of(s: Session, principal: Principal, kind: Kind, entity_id: uuid.UUID, *,
                include_deleted: bool) -> uuid.UUID:
    """The patient the item or patient is (visible to the caller), else the 404 of a missing one."""
    if kind == "media":
        item = visibility.media_item(s, principal, entity_id, include_deleted=include_deleted)
        if item is None:
            raise media_not_found()
        return item.patient_id
    if visibility.patient(s, principal, entity_id) is None:
        raise patient_not_found()
    return entity_id


def _view(kind: str, entity_id: uuid.UUID, row: Note | None) -> NoteView:
    if row is None:
        return NoteView(entity_id, kind, "", None, "")
    return NoteView(entity_id, kind, row.text, row.updated_at, row.author_name)


def get_note(ctx: Context, principal: Principal, kind: Kind, entity_id: uuid.UUID) -> NoteView:
    """A visible item's (trash included) or patient's note ("" when there is none); the read is audited."""
    with ctx.db.read() as s:
        patient_id = _patient_of(s, principal, kind, entity_id, include_deleted=True)
        row = s.get(Note, entity_id)
        view = _view(kind, entity_id, row if row is not None and row.contract_id == principal.contract_id else None)
    audit.record(ctx, principal, f"{kind}.note.read", patient_id=patient_id,
                 media_id=entity_id if kind == "media" else None)
    return view


def store(s: Session, contract_id: uuid.UUID, kind: str, entity_id: uuid.UUID, text: str, updated_at: datetime,
          author_id: uuid.UUID | None, author_name: str) -> Note | None:
    """Write the note unless a later one is stored (latest wins); the row written, or None when kept."""
    row = s.get(Note, entity_id)
    if row is not None and row.updated_at > updated_at:
        return None
    if row is None:
        row = Note(entity_id=entity_id, kind=kind, contract_id=contract_id,
                   media_id=entity_id if kind == "media" else None,
                   patient_id=entity_id if kind == "patient" else None)
        s.add(row)
    row.text, row.updated_at, row.author_id, row.author_name = text, updated_at, author_id, author_name[:200]
    s.flush()
    return row


def set_note(ctx: Context, principal: Principal, kind: Kind, entity_id: uuid.UUID, text: str) -> NoteView:
    """Set a visible item's (not in the trash) or patient's note; "" clears it. Audited with its length, sent
    down the feed, and at a relay carried upstream."""
    cleaned = clean(text)
    with ctx.db.session() as s:
        patient_id = _patient_of(s, principal, kind, entity_id, include_deleted=False)
        before = s.get(Note, entity_id)
        if before is not None and before.text == cleaned:
            return _view(kind, entity_id, before)
        at = utcnow()
        if before is not None and before.updated_at >= at:  # saved after that one was seen: it is later
            at = before.updated_at + timedelta(microseconds=1)
        row = store(s, principal.contract_id, kind, entity_id, cleaned, at,
                    principal.account_id or principal.station_id, principal.name)
        assert row is not None
        audit.add(s, principal, f"{kind}.note", patient_id=patient_id, media_id=entity_id if kind == "media" else None,
                  detail={"chars": len(cleaned), "cleared": not cleaned})
        changes.note_changed(s, row, patient_id)
        if ctx.role.queues_writes_upstream:  # at a relay: carried to the cloud (feed/viewer_ops.py)
            relay_dentistry.note_put(s, row)
        return _view(kind, entity_id, row)
