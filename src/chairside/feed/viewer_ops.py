"""The viewer's writes made at a relay, applied by the cloud (called from feed/ops.py, once per op_id).

A relay serves the viewer to its clinic's LAN (docs/relay.md, "The viewer at the relay"); what the
viewer writes there is recorded in the relay's outbox (relay/viewer.py) and arrives here:

- annotation.put     {id, media_id, media_time_s, shapes, author_id, author_name, created_at, updated_at}
  The drawing as the relay has it now: made with its id, or its shapes replaced (version + 1). The
  relay's drawing is the newer one: it was saved after the version it replaced was seen there.
- annotation.delete  {id, media_id}
- media.tags         {id, tags}              the item's whole tag set, as set at the relay
- media.move         {id, patient_id, from_patient_id, at}   an item moved to another patient (media/move.py);
  the cloud's answer wins when the item was moved here meanwhile (`_media_move`)
- session.signin     {account_id, session_id, device_name, at}
  The one-device rule across the relay and the cloud, latest sign-in wins: the cloud's sessions of
  the account started before `at` end ("signed in elsewhere", naming the relay's device); when the
  cloud holds a session started after `at`, the answer names it and the relay ends its own.
  Either way a `session` feed event tells every relay of the contract the latest sign-in.

Each runs in the transaction feed/ops.py opens, with its audit entry.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.db.models import Account, Annotation, DeviceSession, MediaTag, Station, utcnow
from chairside.feed import changes, dentistry_ops
from chairside.media import move
from chairside.media.annotations import MAX_SHAPES, Shape
from chairside.media.items import not_found as media_not_found
from chairside.media.tags import MAX_TAGS, clean_tags
from chairside.patients import merge
from chairside.tenancy import visibility

KINDS = ("annotation.put", "annotation.delete", "media.tags", "session.signin", "media.move",
         *dentistry_ops.KINDS)  # tooth numbers and notes: feed/dentistry_ops.py


class AnnotationPut(BaseModel):
    id: uuid.UUID
    media_id: uuid.UUID
    media_time_s: float | None = Field(default=None, ge=0.0)
    shapes: list[Shape] = Field(min_length=1, max_length=MAX_SHAPES)  # checked as the viewer's API checks them
    author_name: str = Field(default="", max_length=200)
    author_id: uuid.UUID | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AnnotationDelete(BaseModel):
    id: uuid.UUID
    media_id: uuid.UUID


class MediaTags(BaseModel):
    id: uuid.UUID
    tags: list[str] = Field(max_length=MAX_TAGS)


class MediaMove(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    from_patient_id: uuid.UUID | None = None
    at: datetime | None = None


class SessionSignIn(BaseModel):
    account_id: uuid.UUID
    session_id: uuid.UUID
    device_name: str = Field(min_length=1, max_length=100)
    at: datetime


MODELS: dict[str, type[BaseModel]] = {"annotation.put": AnnotationPut, "annotation.delete": AnnotationDelete,
                                      "media.tags": MediaTags, "session.signin": SessionSignIn,
                                      "media.move": MediaMove, **dentistry_ops.MODELS}


def _audit(s: Session, principal: Principal, action: str, **kwargs: Any) -> None:
    event = audit.event(principal, action, **kwargs)
    event.actor_kind, event.actor_id = "relay", principal.relay_id
    s.add(event)


def apply(s: Session, principal: Principal, parsed: BaseModel) -> dict[str, Any]:
    if type(parsed) in dentistry_ops.MODELS.values():
        return dentistry_ops.apply(s, principal, parsed)
    if isinstance(parsed, AnnotationPut):
        return _annotation_put(s, principal, parsed)
    if isinstance(parsed, AnnotationDelete):
        return _annotation_delete(s, principal, parsed)
    if isinstance(parsed, MediaTags):
        return _media_tags(s, principal, parsed)
    if isinstance(parsed, MediaMove):
        return _media_move(s, principal, parsed)
    assert isinstance(parsed, SessionSignIn)
    return _session_signin(s, principal, parsed)


def _annotation_put(s: Session, principal: Principal, body: AnnotationPut) -> dict[str, Any]:
    item = visibility.media_item(s, principal, body.media_id, include_deleted=True)
    if item is None:
        raise media_not_found()  # 404: retried (its upload may still be on its way)
    shapes = [shape.model_dump(mode="json") for shape in body.shapes]
    row = s.get(Annotation, body.id)
    now = utcnow()
    if row is not None and (row.contract_id != principal.contract_id or row.media_id != item.id):
        raise media_not_found()
    if row is None:
        row = Annotation(id=body.id, contract_id=principal.contract_id, media_id=item.id,
                         media_time_s=body.media_time_s, shapes=shapes, version=1,
                         author_id=_author(s, principal, body), author_name=body.author_name,
                         created_at=body.created_at or now, updated_at=body.updated_at or now)
        s.add(row)
        action = "annotation.create"
    else:
        row.shapes, row.media_time_s = shapes, body.media_time_s
        row.version += 1
        row.updated_at = body.updated_at or now
        action = "annotation.update"
    s.flush()
    changes.annotation_changed(s, row, item.patient_id)
    _audit(s, principal, action, patient_id=item.patient_id, media_id=item.id,
           detail={"annotation_id": str(row.id), "version": row.version, "shapes": len(shapes), "via": "relay",
                   "author": body.author_name})
    return {"id": str(row.id), "version": row.version}


def _author(s: Session, principal: Principal, body: AnnotationPut) -> uuid.UUID | None:
    """The author's account (or station) id when it is one of the contract's; None otherwise."""
    if body.author_id is None:
        return None
    account, station = s.get(Account, body.author_id), s.get(Station, body.author_id)
    owners = {row.contract_id for row in (account, station) if row is not None}
    return body.author_id if principal.contract_id in owners else None


def _annotation_delete(s: Session, principal: Principal, body: AnnotationDelete) -> dict[str, Any]:
    row = s.get(Annotation, body.id)
    if row is None or row.contract_id != principal.contract_id:
        return {"id": str(body.id), "deleted": False}  # never arrived, or deleted at the cloud too
    item = visibility.media_item(s, principal, row.media_id, include_deleted=True)
    if item is None:
        return {"id": str(body.id), "deleted": False}
    _audit(s, principal, "annotation.delete", patient_id=item.patient_id, media_id=item.id,
           detail={"annotation_id": str(row.id), "version": row.version, "via": "relay"})
    changes.annotation_deleted(s, row, item.patient_id)
    s.delete(row)
    return {"id": str(body.id), "deleted": True}


def _media_tags(s: Session, principal: Principal, body: MediaTags) -> dict[str, Any]:
    item = visibility.media_item(s, principal, body.id, include_deleted=True)
    if item is None:
        raise media_not_found()
    wanted = clean_tags(body.tags)
    before = set(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == item.id)))
    if before != set(wanted):
        s.execute(delete(MediaTag).where(MediaTag.media_id == item.id, MediaTag.tag.in_(before - set(wanted))))
        s.add_all(MediaTag(media_id=item.id, tag=t, contract_id=principal.contract_id, created_at=utcnow())
                  for t in sorted(set(wanted) - before))
        _audit(s, principal, "media.tags", patient_id=item.patient_id, media_id=item.id,
               detail={"tags": wanted, "via": "relay"})
        changes.tags_changed(s, principal.contract_id, item.id, item.patient_id, wanted)
    return {"id": str(item.id), "tags": wanted}


def _media_move(s: Session, principal: Principal, body: MediaMove) -> dict[str, Any]:
    """A move made at the relay (media/move.py). The cloud's answer wins: when the item is no longer under the
    patient the relay moved it from (moved here meanwhile), the relay's move is not applied; the answer and a
    feed event give the relay the cloud's patient back. A target merged meanwhile is followed to the kept one."""
    item = visibility.media_item(s, principal, body.id, include_deleted=True)
    if item is None:
        raise media_not_found()  # 404: retried (its upload may still be on its way)
    target = merge.resolve(s, principal, body.patient_id)
    if target is None:
        raise move.unknown_patient()  # 422: the relay marks the op failed (its patient never reached the cloud)
    if item.patient_id == target.id:
        return {"id": str(item.id), "patient_id": str(item.patient_id), "moved": False}
    source = merge.resolve(s, principal, body.from_patient_id) if body.from_patient_id is not None else None
    if body.from_patient_id is not None and (source is None or source.id != item.patient_id):
        _audit(s, principal, "media.move.conflict", patient_id=item.patient_id, media_id=item.id,
               detail={"via": "relay", "from_patient_id": str(body.from_patient_id),
                       "to_patient_id": str(target.id), "kept_patient_id": str(item.patient_id)})
        changes.media_changed(s, item)  # the relay skipped the cloud's events while its move was pending
        return {"id": str(item.id), "patient_id": str(item.patient_id), "moved": False, "conflict": True}
    move.refile(s, principal, item, target.id, {"via": "relay"})
    return {"id": str(item.id), "patient_id": str(target.id), "moved": True}


def _session_signin(s: Session, principal: Principal, body: SessionSignIn) -> dict[str, Any]:
    account = s.get(Account, body.account_id)
    if account is None or account.contract_id != principal.contract_id:
        return {"superseded_by": None, "ended": 0}  # an account deleted meanwhile: nothing to reconcile
    s.scalar(select(Account).where(Account.id == account.id).with_for_update())
    at = body.at
    newer = s.scalar(select(DeviceSession).where(
        DeviceSession.account_id == account.id, DeviceSession.ended_at.is_(None), DeviceSession.created_at > at,
    ).order_by(DeviceSession.created_at.desc()).limit(1))
    device = f"{body.device_name} (院内 relay {principal.name})"[:100]
    older = list(s.scalars(select(DeviceSession.id).where(
        DeviceSession.account_id == account.id, DeviceSession.ended_at.is_(None), DeviceSession.created_at <= at)))
    if older:
        s.execute(update(DeviceSession).where(DeviceSession.id.in_(older))
                  .values(ended_at=utcnow(), end_reason="takeover", ended_by_device=device))
    ended = len(older)
    _audit(s, principal, "session.signin", detail={"via": "relay", "device": body.device_name,
                                                   "at": at.isoformat(), "ended_here": ended,
                                                   "superseded": newer is not None},
           contract_id=account.contract_id)
    if newer is not None:
        return {"superseded_by": {"device_name": newer.device_name, "at": newer.created_at.isoformat()},
                "ended": ended}
    changes.session_started(s, account.contract_id, account.id, body.session_id, body.device_name, at)
    return {"superseded_by": None, "ended": ended}
