"""Tooth numbers on media items: an item's set of FDI numbers (the rules are domain/teeth.py), the one write
path (with its audit entry, its changes-feed event, and at a relay its outbox op), the teeth of a page of
items, the timeline's filter, and each clinic's display choice (FDI or Zsigmondy–Palmer).

Storage is `media_teeth` (media_id, tooth), primary key on both: an item's teeth are one index range, and
"does this item show tooth 16" — the timeline filter, applied to the patient's items as they are read in
(patient_id, captured_at) order — is one index probe per item. Teeth follow the item when it is moved to
another patient (they name the item); a purge removes them (ON DELETE CASCADE, and deleted with the item).

Like tags, an item's teeth travel as the whole set: set at a relay, the set is carried to the cloud
(`media.teeth` op, feed/viewer_ops.py) and applied when it arrives; set at the cloud, it comes down the feed
(`media.teeth` event) to the relays, which keep their own set while one made there is still on its way up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Clinic, Media, MediaTooth
from chairside.domain import teeth as rules
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media.items import not_found as media_not_found
from chairside.relay import dentistry as relay_dentistry
from chairside.tenancy import visibility


def bad_teeth(why: str) -> Problem:
    return Problem(422, "歯の番号が正しくありません。FDI の 2 桁の番号（永久歯 11〜48、乳歯 51〜85）で"
                   "指定してください。 / "
                   f"A tooth number is not valid ({why}). Use FDI two-digit numbers: 11–48 for permanent teeth, "
                   "51–85 for deciduous teeth.", code="bad-tooth")


def clean(values: Iterable[object]) -> list[int]:
    """The set as stored (sorted, each once); a 422 problem naming the first bad number."""
    try:
        return rules.clean(values)
    except rules.InvalidTooth as e:
        raise bad_teeth(str(e)) from None


def of_items(s: Session, media_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[int]]:
    """The teeth of each of these items that has any, sorted (one query, by the primary key)."""
    out: dict[uuid.UUID, list[int]] = {}
    if not media_ids:
        return out
    for chunk in range(0, len(media_ids), 500):
        rows = s.execute(select(MediaTooth.media_id, MediaTooth.tooth)
                         .where(MediaTooth.media_id.in_(media_ids[chunk:chunk + 500]))
                         .order_by(MediaTooth.media_id, MediaTooth.tooth)).all()
        for media_id, tooth in rows:
            out.setdefault(media_id, []).append(tooth)
    return out


def shows_any(teeth: Sequence[int]) -> ColumnElement[bool]:
    """A filter on Media: the item shows one of these teeth (an index probe per item)."""
    return exists().where(MediaTooth.media_id == Media.id, MediaTooth.tooth.in_(list(teeth)))


def replace(s: Session, item: Media, wanted: list[int]) -> bool:
    """Make the item's stored set `wanted` (already clean); True when it changed. No audit, no feed: the
    callers (set_teeth here, the relay op at the cloud, the feed at a relay) add what their side needs."""
    before = set(s.scalars(select(MediaTooth.tooth).where(MediaTooth.media_id == item.id)))
    if before == set(wanted):
        return False
    gone = before - set(wanted)
    if gone:
        s.execute(delete(MediaTooth).where(MediaTooth.media_id == item.id, MediaTooth.tooth.in_(gone)))
    s.add_all(MediaTooth(media_id=item.id, tooth=t, contract_id=item.contract_id)
              for t in sorted(set(wanted) - before))
    return True


def set_teeth(ctx: Context, principal: Principal, media_id: uuid.UUID, values: Iterable[object]) -> list[int]:
    """Replace a visible item's teeth; a change is audited (`media.teeth`), sent down the feed, and at a relay
    carried upstream. Answers the item's teeth, sorted."""
    wanted = clean(values)
    with ctx.db.session() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise media_not_found()
        if replace(s, item, wanted):
            audit.add(s, principal, "media.teeth", patient_id=item.patient_id, media_id=item.id,
                      detail={"teeth": wanted})
            changes.teeth_changed(s, item.contract_id, item.id, item.patient_id, wanted)  # to the relays
            if ctx.role.queues_writes_upstream:  # at a relay: carried to the cloud (feed/viewer_ops.py)
                relay_dentistry.teeth_set(s, item.id, wanted)
    return wanted


def notation(s: Session, clinic_id: uuid.UUID) -> str:
    return s.scalar(select(Clinic.tooth_notation).where(Clinic.id == clinic_id)) or rules.DEFAULT_NOTATION


def set_notation(ctx: Context, principal: Principal, clinic_id: uuid.UUID, value: str) -> Clinic:
    """A clinic's display of tooth numbers (admin, at the cloud: clinics travel down the feed to relays)."""
    if value not in rules.NOTATIONS:
        raise Problem(422, "歯式の表示は fdi（FDI）か palmer（ジグモンディ・パーマー）から選んでください。 / "
                      "The tooth notation is fdi or palmer.", code="bad-notation")
    if ctx.role.queues_writes_upstream:
        raise Problem(409, "医院の設定はクラウドの画面で変更してください（この院内サーバーでは変更できません）。 / "
                      "Clinic settings are changed at the cloud, not at the clinic's relay.",
                      code="setting-at-cloud")
    with ctx.db.session() as s:
        clinic = visibility.clinic(s, principal, clinic_id)
        if clinic is None:
            raise Problem(404, "この医院は見つかりません。 / This clinic was not found.", code="clinic-not-found")
        if clinic.tooth_notation != value:
            before = clinic.tooth_notation
            clinic.tooth_notation = value
            audit.add(s, principal, "clinic.tooth_notation",
                      detail={"clinic_id": str(clinic.id), "from": before, "to": value})
            changes.clinic_changed(s, clinic)
        s.flush()
        s.expunge(clinic)
    return clinic
