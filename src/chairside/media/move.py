"""Moving a mis-filed item to the right patient: the one write path for it.

The item and the patient it goes to must both be visible to the caller (so: the same contract, and a clinic
in the caller's scope). The move carries its audit entry in both patients' histories (the patient it left and
the one it joined) and its changes-feed event in one transaction. `Media.clinic_id` keeps where the item was
taken. Drawings and tags follow the item (they name the item, not the patient); a share link made for the
former patient stops showing it (sharing/links.py opens only its patient's items).

At a relay (the role queues writes upstream) the move is made locally first, like the viewer's other writes,
with a `media.move` outbox op in the same transaction: {id, patient_id, from_patient_id, at}. The cloud applies
it once (feed/viewer_ops.py). The conflict rule — the item was moved at the cloud meanwhile — is "the cloud's
answer wins": the op names the patient it moved the item *from*; when the cloud has the item under a third
patient by then, the relay's move is not applied (audited as `media.move.conflict`) and the relay takes the
cloud's patient back (relay/viewer.py `moved`, and the feed). Rules: docs/viewer.md.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Media, utcnow
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media.items import not_found
from chairside.relay import outbox
from chairside.tenancy import visibility


def unknown_patient() -> Problem:
    return Problem(422, "The patient to move this item to was not found. Search for the patient again "
                   "and choose them from the list.", code="unknown-patient")


def refile(s: Session, principal: Principal, item: Media, patient_id: uuid.UUID,
           detail: dict[str, Any] | None = None) -> uuid.UUID:
    """File `item` under `patient_id` (both already checked by the caller): audited in both patients'
    histories, one changes-feed event. Answers the patient it left."""
    before = item.patient_id
    item.patient_id = patient_id
    info = {"from_patient_id": str(before), "to_patient_id": str(patient_id), **(detail or {})}
    audit.add(s, principal, "media.move", patient_id=patient_id, media_id=item.id, detail=info)
    audit.add(s, principal, "media.move", patient_id=before, media_id=item.id, detail=info)
    changes.media_changed(s, item)
    return before


def move(ctx: Context, principal: Principal, media_id: uuid.UUID, patient_id: uuid.UUID) -> Media:
    """File a visible item under another visible patient; moving it where it already is changes nothing."""
    with ctx.db.session() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise not_found()
        target = visibility.patient(s, principal, patient_id)
        if target is None:
            raise unknown_patient()
        if item.patient_id == target.id:
            return item
        before = refile(s, principal, item, target.id)
        if ctx.role.queues_writes_upstream:  # carried to the cloud like the viewer's other writes at a relay
            outbox.record(s, "media.move", item.id, {"id": str(item.id), "patient_id": str(target.id),
                                                     "from_patient_id": str(before), "at": utcnow().isoformat()})
        return item
