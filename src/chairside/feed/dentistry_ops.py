"""Tooth numbers and notes written at a relay, applied by the cloud (through feed/viewer_ops.py, once per
op_id, in the transaction feed/ops.py opens, with their audit entries).

- media.teeth {id, teeth}: the item's whole set as set at the relay (like tags: the relay's set is applied
  when it arrives).
- note.put {entity_id, kind, text, updated_at, author_id, author_name}: an item's or a patient's note. The
  latest save wins: when the cloud holds a note saved later than `updated_at`, it keeps it (answer
  `applied: false`) and the relay takes the cloud's from the feed.

A foreign or unknown item or patient answers 404 (retried: its upload or creation may still be on its way),
as for no item; bad numbers or text answer 422 (bad-relay-op, through the models' validation).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.db.models import Account, Station
from chairside.domain import notes as note_rules
from chairside.domain import teeth as rules
from chairside.feed import changes
from chairside.media import notes, teeth
from chairside.media.items import not_found as media_not_found
from chairside.patients.service import not_found as patient_not_found
from chairside.tenancy import visibility

KINDS = ("media.teeth", "note.put")


class MediaTeeth(BaseModel):
    id: uuid.UUID
    teeth: list[int] = Field(max_length=rules.MAX_PER_ITEM)

    @field_validator("teeth")
    @classmethod
    def _clean(cls, value: list[int]) -> list[int]:
        return rules.clean(value)


class NotePut(BaseModel):
    entity_id: uuid.UUID
    kind: Literal["media", "patient"]
    text: str = Field(max_length=note_rules.MAX_CHARS * 2)
    updated_at: datetime
    author_id: uuid.UUID | None = None
    author_name: str = Field(default="", max_length=200)

    @field_validator("text")
    @classmethod
    def _clean(cls, value: str) -> str:
        return note_rules.clean_note(value)


MODELS: dict[str, type[BaseModel]] = {"media.teeth": MediaTeeth, "note.put": NotePut}


def _audit(s: Session, principal: Principal, action: str, **kwargs: Any) -> None:
    event = audit.event(principal, action, **kwargs)
    event.actor_kind, event.actor_id = "relay", principal.relay_id
    s.add(event)


def apply(s: Session, principal: Principal, parsed: BaseModel) -> dict[str, Any]:
    if isinstance(parsed, MediaTeeth):
        return _teeth(s, principal, parsed)
    assert isinstance(parsed, NotePut)
    return _note(s, principal, parsed)


def _teeth(s: Session, principal: Principal, body: MediaTeeth) -> dict[str, Any]:
    item = visibility.media_item(s, principal, body.id, include_deleted=True)
    if item is None:
        raise media_not_found()
    if teeth.replace(s, item, body.teeth):
        _audit(s, principal, "media.teeth", patient_id=item.patient_id, media_id=item.id,
               detail={"teeth": body.teeth, "via": "relay"})
        changes.teeth_changed(s, principal.contract_id, item.id, item.patient_id, body.teeth)
    return {"id": str(item.id), "teeth": body.teeth}


def _note(s: Session, principal: Principal, body: NotePut) -> dict[str, Any]:
    if body.kind == "media":
        item = visibility.media_item(s, principal, body.entity_id, include_deleted=True)
        if item is None:
            raise media_not_found()
        patient_id = item.patient_id
    else:
        patient = visibility.patient(s, principal, body.entity_id)
        if patient is None:
            raise patient_not_found()
        patient_id = patient.id
    row = notes.store(s, principal.contract_id, body.kind, body.entity_id, body.text, body.updated_at,
                      _author(s, principal, body.author_id), body.author_name)
    if row is None:  # the cloud holds a later note: kept; the relay takes it from the feed
        return {"entity_id": str(body.entity_id), "applied": False}
    _audit(s, principal, f"{body.kind}.note", patient_id=patient_id,
           media_id=body.entity_id if body.kind == "media" else None,
           detail={"chars": len(body.text), "cleared": not body.text, "via": "relay", "author": body.author_name})
    changes.note_changed(s, row, patient_id)
    return {"entity_id": str(body.entity_id), "applied": True}


def _author(s: Session, principal: Principal, author_id: uuid.UUID | None) -> uuid.UUID | None:
    """The author's account (or station) id when it is one of the contract's; None otherwise."""
    if author_id is None:
        return None
    owners = {row.contract_id for row in (s.get(Account, author_id), s.get(Station, author_id)) if row is not None}
    return author_id if principal.contract_id in owners else None
