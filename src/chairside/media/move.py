"""Moving a mis-filed item to the right patient: the one write path for it.

The item and the patient it goes to must both be visible to the caller (so: the same contract, and a clinic
in the caller's scope); an item in the trash is restored first. The move carries its audit entry (the patient
it left and the one it joined) and its changes-feed event in one transaction. `Media.clinic_id` keeps where
the item was taken. Drawings and tags follow the item (they name the item, not the patient); a share link
made for the former patient stops showing it (sharing/links.py opens only its patient's items).

A relay does not move items yet: its outbox has no operation for it, so a move is made where it cannot be
lost, at the cloud (the relay follows it through the feed).
"""

from __future__ import annotations

import uuid

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Media
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media.items import not_found
from chairside.tenancy import visibility


def move(ctx: Context, principal: Principal, media_id: uuid.UUID, patient_id: uuid.UUID) -> Media:
    """File a visible item under another visible patient; moving it where it already is changes nothing."""
    if ctx.role.queues_writes_upstream:
        raise Problem(409, "写真・動画の患者の付け替えは、インターネット接続のあるクラウドの画面で行ってください。"
                      " / Moving an item to another patient is done at the cloud's viewer, not at the clinic's relay.",
                      code="move-at-cloud")
    with ctx.db.session() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise not_found()
        target = visibility.patient(s, principal, patient_id)
        if target is None:
            raise Problem(422, "The patient to move this item to was not found. Search for the patient again "
                          "and choose them from the list.", code="unknown-patient")
        if item.patient_id == target.id:
            return item
        before = item.patient_id
        item.patient_id = target.id
        audit.add(s, principal, "media.move", patient_id=target.id, media_id=item.id,
                  detail={"from_patient_id": str(before), "to_patient_id": str(target.id)})
        audit.add(s, principal, "media.move", patient_id=before, media_id=item.id,
                  detail={"from_patient_id": str(before), "to_patient_id": str(target.id)})
        changes.media_changed(s, item)
        return item
