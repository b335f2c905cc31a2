"""The viewer at a relay: its writes carried upstream, and the one-device rule kept with the cloud.

A relay serves the viewer to its clinic's LAN (roles.py `serves_viewer`, app.py `RELAY_VIEWER_API`),
against its replica: accounts travel in the changes feed with their argon2id hash (feed/changes.py
`account_changed`), so a tablet signs in at the relay with the same login and password while the
cloud is away. What the viewer writes there commits locally first, with an outbox op in the same
transaction (like a station's writes), and the uploader carries it to the cloud, which applies it
once (feed/viewer_ops.py):

- a drawing saved or changed: annotation.put (the whole drawing, by its id); deleted: annotation.delete;
- an item's tags set: media.tags (the whole set);
- a sign-in: session.signin.

Ops name the media item as their entity, so a drawing on a recording made here waits for that
recording's upload (relay/uploader.py orders ops per entity).

The one-device rule (docs/relay.md): the latest sign-in wins, wherever it happened.
- At the relay, sign-in is always decided locally (auth/accounts.py, the same code as the cloud's):
  a second device gets 409 account-in-use, or takes over.
- A relay's sign-in reaches the cloud as session.signin: the cloud ends its sessions of the account
  that started earlier; if the cloud has one that started later, its answer says so and the relay
  ends its own session here (`superseded`).
- A sign-in at the cloud (or another relay's, once the cloud applied it) comes down the feed as a
  `session` event: the relay ends its sessions of the account that started earlier (`session_event`).
Both sides compare the times of sign-in (the relay's and the cloud's clocks, kept by NTP).

Drawings and tags made at the cloud or another branch come down the feed (`annotation`,
`annotation.deleted`, `media.tags` events; `drawing_or_tags_event`), unless a change made here to
the same item is still on its way up.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from chairside.db.models import Annotation, DeviceSession, Media, MediaTag, OutboxOp, Patient, PatientSearchTerm, utcnow
from chairside.feed.rows import upsert
from chairside.patients import merge
from chairside.relay import outbox

log = logging.getLogger(__name__)


def annotation_put(s: Session, row: Annotation) -> None:
    """Record the drawing as it now is, to be made or replaced at the cloud."""
    outbox.record(s, "annotation.put", row.media_id, {
        "id": str(row.id), "media_id": str(row.media_id), "media_time_s": row.media_time_s,
        "shapes": list(row.shapes), "author_name": row.author_name,
        "author_id": str(row.author_id) if row.author_id else None,
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    })


def annotation_delete(s: Session, row: Annotation) -> None:
    outbox.record(s, "annotation.delete", row.media_id, {"id": str(row.id), "media_id": str(row.media_id)})


def tags_set(s: Session, media_id: uuid.UUID, tags: list[str]) -> None:
    outbox.record(s, "media.tags", media_id, {"id": str(media_id), "tags": list(tags)})


def signed_in(s: Session, session: DeviceSession) -> None:
    """Record a sign-in made here, for the cloud to reconcile the one-device rule."""
    outbox.record(s, "session.signin", session.account_id, {
        "account_id": str(session.account_id), "session_id": str(session.id),
        "device_name": session.device_name, "at": session.created_at.isoformat(),
    })


def end_older(s: Session, account_id: uuid.UUID, before: datetime, by_device: str,
              keep: uuid.UUID | None = None) -> int:
    """End this relay's active sessions of the account that started before `before` (signed in elsewhere)."""
    query = select(DeviceSession.id).where(DeviceSession.account_id == account_id, DeviceSession.ended_at.is_(None),
                                           DeviceSession.created_at < before)
    if keep is not None:
        query = query.where(DeviceSession.id != keep)
    ids = list(s.scalars(query))
    if ids:
        s.execute(update(DeviceSession).where(DeviceSession.id.in_(ids))
                  .values(ended_at=utcnow(), end_reason="takeover", ended_by_device=by_device[:100]))
        log.info("account %s signed in on %s: %d older session(s) here ended", account_id, by_device, len(ids))
    return len(ids)


def session_event(s: Session, body: dict[str, Any]) -> None:
    """The feed's `session` event: the account's latest sign-in elsewhere ends the older sessions here."""
    account_id, session_id = uuid.UUID(str(body["account_id"])), uuid.UUID(str(body["session_id"]))
    if s.get(DeviceSession, session_id) is not None:
        return  # this relay's own sign-in, come back from the cloud
    end_older(s, account_id, datetime.fromisoformat(str(body["created_at"])), str(body.get("device_name") or ""),
              keep=session_id)


def _pending(s: Session, media_id: uuid.UUID, kinds: tuple[str, ...]) -> bool:
    return s.scalar(select(OutboxOp.id).where(
        OutboxOp.entity_id == media_id, OutboxOp.kind.in_(kinds), OutboxOp.done_at.is_(None),
        OutboxOp.failed_at.is_(None)).limit(1)) is not None


def drawing_or_tags_event(s: Session, kind: str, body: dict[str, Any]) -> None:
    """Drawings and tags made at the cloud (or another branch) come down the feed. A change made here and not
    yet sent for the same item is newer: kept (it is on its way up, and its own event follows)."""
    if kind == "media.tags":
        media_id = uuid.UUID(str(body["id"]))
        if s.get(Media, media_id) is None or _pending(s, media_id, ("media.tags",)):
            return
        wanted = set(str(t) for t in body.get("tags") or [])
        have = set(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == media_id)))
        if wanted != have:
            item = s.get(Media, media_id)
            assert item is not None
            s.execute(delete(MediaTag).where(MediaTag.media_id == media_id, MediaTag.tag.in_(have - wanted)))
            s.add_all(MediaTag(media_id=media_id, tag=t, contract_id=item.contract_id, created_at=utcnow())
                      for t in sorted(wanted - have))
        return
    media_id = uuid.UUID(str(body["media_id"]))
    if s.get(Media, media_id) is None or _pending(s, media_id, ("annotation.put", "annotation.delete")):
        return
    if kind == "annotation.deleted":
        s.execute(delete(Annotation).where(Annotation.id == uuid.UUID(str(body["id"]))))
    else:
        upsert(s, Annotation, body)


def move_pending(s: Session, media_id: uuid.UUID) -> bool:
    """A move of the item made here and not yet answered by the cloud: the feed's patient for it is older."""
    return _pending(s, media_id, ("media.move",))


def moved(s: Session, body: dict[str, Any], result: dict[str, Any]) -> None:
    """The cloud's answer to a media.move: its patient for the item wins (it differs when the item was moved at
    the cloud meanwhile: media/move.py). Taken when that patient is known here."""
    answer = result.get("patient_id")
    if not isinstance(answer, str):
        return
    item, patient_id = s.get(Media, uuid.UUID(str(body["id"]))), uuid.UUID(answer)
    if item is not None and item.patient_id != patient_id and s.get(Patient, patient_id) is not None:
        log.info("media %s: moved here to %s, the cloud keeps it under %s", item.id, body.get("patient_id"), answer)
        item.patient_id = patient_id


def patient_merged(s: Session, body: dict[str, Any]) -> None:
    """The feed's `patient.merged` tombstone (patients/merge.py): what this relay holds of the removed patient
    goes to the kept one, then the patient goes. When the kept one is not replicated here, nothing changes."""
    gone, into = uuid.UUID(str(body["id"])), uuid.UUID(str(body["into"]))
    row = s.get(Patient, gone)
    if row is None:
        return
    if s.get(Patient, into) is None:
        log.warning("patient %s was merged into %s, which this relay does not replicate; kept here", gone, into)
        return
    s.execute(update(Media).where(Media.patient_id == gone).values(patient_id=into)
              .execution_options(synchronize_session="fetch"))
    merge.repoint(s, gone, into)
    s.execute(delete(PatientSearchTerm).where(PatientSearchTerm.patient_id == gone))
    s.delete(row)


def superseded(s: Session, body: dict[str, Any], result: dict[str, Any]) -> None:
    """The cloud's answer to a session.signin: when it holds a later sign-in, this relay's session ends."""
    newer = result.get("superseded_by")
    if not isinstance(newer, dict):
        return
    session_id = uuid.UUID(str(body["session_id"]))
    s.execute(update(DeviceSession).where(DeviceSession.id == session_id, DeviceSession.ended_at.is_(None))
              .values(ended_at=utcnow(), end_reason="takeover",
                      ended_by_device=str(newer.get("device_name") or "")[:100]))
