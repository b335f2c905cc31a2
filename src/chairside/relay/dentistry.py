"""Tooth numbers and notes at a relay: written by the viewer on the clinic's LAN and carried upstream, and
what the cloud (or another branch) wrote, applied from the changes feed.

Upstream (outbox ops, applied once at the cloud by feed/viewer_ops.py):
- media.teeth  {id, teeth}   an item's whole set, as set here (entity: the item, so it waits for the item's
  upload when the item was recorded here);
- note.put     {entity_id, kind, text, updated_at, author_id, author_name}   an item's or a patient's note
  (entity: the item or the patient). The cloud keeps a note saved there later than this one.

Down the feed (relay/follower.py): a `media.teeth` event, unless teeth set here for the same item are still
on its way up (they are newer; their own event follows). A `note` event is taken when it is not older than
the note here, whether or not that one is still on its way up: both ends decide by the time of saving, so a
note saved at the cloud after the one written here during an outage replaces it here at once, and the cloud
refuses the older one when it arrives.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from chairside.db.models import Media, MediaTooth, Note, OutboxOp, Patient
from chairside.relay import outbox


def teeth_set(s: Session, media_id: uuid.UUID, teeth: list[int]) -> None:
    outbox.record(s, "media.teeth", media_id, {"id": str(media_id), "teeth": list(teeth)})


def note_put(s: Session, row: Note) -> None:
    outbox.record(s, "note.put", row.entity_id, {
        "entity_id": str(row.entity_id), "kind": row.kind, "text": row.text,
        "updated_at": row.updated_at.isoformat(), "author_name": row.author_name,
        "author_id": str(row.author_id) if row.author_id else None,
    })


def _pending(s: Session, entity_id: uuid.UUID, kind: str) -> bool:
    return s.scalar(select(OutboxOp.id).where(
        OutboxOp.entity_id == entity_id, OutboxOp.kind == kind, OutboxOp.done_at.is_(None),
        OutboxOp.failed_at.is_(None)).limit(1)) is not None


def feed_event(s: Session, kind: str, body: dict[str, Any]) -> None:
    """A `media.teeth` or `note` event from the cloud's feed."""
    if kind == "media.teeth":
        media_id = uuid.UUID(str(body["id"]))
        item = s.get(Media, media_id)
        if item is None or _pending(s, media_id, "media.teeth"):
            return
        wanted = {int(t) for t in body.get("teeth") or []}
        have = set(s.scalars(select(MediaTooth.tooth).where(MediaTooth.media_id == media_id)))
        if wanted != have:
            s.execute(delete(MediaTooth).where(MediaTooth.media_id == media_id, MediaTooth.tooth.in_(have - wanted)))
            s.add_all(MediaTooth(media_id=media_id, tooth=t, contract_id=item.contract_id)
                      for t in sorted(wanted - have))
        return
    assert kind == "note", kind
    entity_id = uuid.UUID(str(body["entity_id"]))
    owner = Media if body.get("kind") == "media" else Patient
    if s.get(owner, entity_id) is None:
        return  # not in this relay's replica (another branch's)
    row = s.get(Note, entity_id)
    updated_at = datetime.fromisoformat(str(body["updated_at"]))
    if row is not None and row.updated_at > updated_at:
        return  # saved here later: on its way up, where it wins too
    if row is None:
        row = Note(entity_id=entity_id, kind=str(body["kind"]), contract_id=uuid.UUID(str(body["contract_id"])),
                   media_id=entity_id if owner is Media else None, patient_id=entity_id if owner is Patient else None)
        s.add(row)
    row.text, row.updated_at = str(body.get("text") or ""), updated_at
    row.author_name = str(body.get("author_name") or "")[:200]
    row.author_id = uuid.UUID(str(body["author_id"])) if body.get("author_id") else None
