"""Tags on media items (e.g. 術前, 術後, 説明用): what a tag is, setting an item's tags (the one write path,
with its audit entry), and a patient's tags by item, to filter the timeline."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterable

from sqlalchemy import delete, select

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Media, MediaTag, utcnow
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media.items import not_found as media_not_found
from chairside.patients.service import not_found as patient_not_found
from chairside.relay import viewer as relay_viewer
from chairside.tenancy import visibility

MAX_TAGS = 20


def clean_tag(raw: str) -> str:
    """The tag as stored: NFKC, runs of white space as one space; ValueError unless 1 to 40 characters of text."""
    tag = " ".join(unicodedata.normalize("NFKC", raw).split())
    if not tag or len(tag) > 40 or any(unicodedata.category(c).startswith("C") for c in tag):
        raise ValueError("a tag is 1 to 40 characters of text")
    return tag


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Each tag cleaned, the same tag once, sorted (ValueError for a tag that is not text)."""
    return sorted({clean_tag(t) for t in tags})


def by_item(ctx: Context, principal: Principal, patient_id: uuid.UUID) -> dict[uuid.UUID, list[str]]:
    """The tags on a visible patient's items, sorted, for each item that has any."""
    with ctx.db.read() as s:
        if visibility.patient(s, principal, patient_id) is None:
            raise patient_not_found()
        rows = s.execute(
            select(MediaTag.media_id, MediaTag.tag).join(Media, Media.id == MediaTag.media_id)
            .where(Media.patient_id == patient_id, Media.contract_id == principal.contract_id)
            .order_by(MediaTag.media_id, MediaTag.tag)
        ).all()
    tags: dict[uuid.UUID, list[str]] = {}
    for media_id, tag in rows:
        tags.setdefault(media_id, []).append(tag)
    return tags


def set_tags(ctx: Context, principal: Principal, media_id: uuid.UUID, tags: Iterable[str]) -> list[str]:
    """Replace a visible item's tags (cleaned, at most MAX_TAGS); a change is recorded in the audit trail.
    Answers the item's tags, sorted."""
    try:
        wanted = clean_tags(tags)
    except ValueError:
        raise Problem(422, "A tag is 1 to 40 characters of text.", code="bad-tag") from None
    if len(wanted) > MAX_TAGS:
        raise Problem(422, f"An item has at most {MAX_TAGS} tags.", code="too-many-tags")
    with ctx.db.session() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise media_not_found()
        before = set(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == media_id)))
        if before != set(wanted):
            s.execute(delete(MediaTag).where(MediaTag.media_id == media_id, MediaTag.tag.in_(before - set(wanted))))
            s.add_all(MediaTag(media_id=media_id, tag=t, contract_id=principal.contract_id, created_at=utcnow())
                      for t in sorted(set(wanted) - before))
            audit.add(s, principal, "media.tags", patient_id=item.patient_id, media_id=item.id,
                      detail={"tags": wanted})
            changes.tags_changed(s, item.contract_id, item.id, item.patient_id, wanted)  # to the relays
            if ctx.role.queues_writes_upstream:  # at a relay: carried to the cloud (relay/viewer.py)
                relay_viewer.tags_set(s, item.id, wanted)
    return wanted
