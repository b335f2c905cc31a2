"""Tags on media items (e.g. 術前, 術後, 説明用): set an item's tags, list a patient's, to filter the timeline."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select

from chairside.api.deps import get_context
from chairside.api.patients import READERS, WRITERS
from chairside.api.principal import allow
from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Media, MediaTag, utcnow
from chairside.media.items import not_found as media_not_found
from chairside.patients.service import not_found as patient_not_found
from chairside.tenancy import visibility

router = APIRouter(prefix="/api/v1", tags=["tags"])
MAX_TAGS = 20


def clean_tag(raw: str) -> str:
    tag = " ".join(unicodedata.normalize("NFKC", raw).split())
    if not tag or len(tag) > 40 or any(unicodedata.category(c).startswith("C") for c in tag):
        raise ValueError("a tag is 1 to 40 characters of text")
    return tag


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: list[str] = Field(max_length=MAX_TAGS, examples=[["術前", "説明用"]])

    @field_validator("tags")
    @classmethod
    def _clean(cls, tags: list[str]) -> list[str]:
        return sorted({clean_tag(t) for t in tags})


class MediaTags(BaseModel):
    media_id: uuid.UUID
    tags: list[str]


class PatientTags(BaseModel):
    items: list[MediaTags] = Field(description="The items that have tags, with their tags.")
    tags: list[str] = Field(description="Every tag used on this patient's items, sorted.")


@router.get("/patients/{patient_id}/tags", response_model=PatientTags, summary="The tags on a patient's items")
def patient_tags(
    patient_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> PatientTags:
    with ctx.db.read() as s:
        if visibility.patient(s, principal, patient_id) is None:
            raise patient_not_found()
        rows = s.execute(
            select(MediaTag.media_id, MediaTag.tag).join(Media, Media.id == MediaTag.media_id)
            .where(Media.patient_id == patient_id, Media.contract_id == principal.contract_id)
            .order_by(MediaTag.media_id, MediaTag.tag)
        ).all()
    by_item: dict[uuid.UUID, list[str]] = {}
    for media_id, tag in rows:
        by_item.setdefault(media_id, []).append(tag)
    return PatientTags(items=[MediaTags(media_id=m, tags=t) for m, t in by_item.items()],
                       tags=sorted({tag for _, tag in rows}))


@router.put("/media/{media_id}/tags", response_model=MediaTags, summary="Set an item's tags (replaces them)")
def set_tags(
    media_id: uuid.UUID,
    body: TagsIn,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MediaTags:
    with ctx.db.session() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise media_not_found()
        before = set(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == media_id)))
        wanted = set(body.tags)
        if before != wanted:
            s.execute(delete(MediaTag).where(MediaTag.media_id == media_id, MediaTag.tag.in_(before - wanted)))
            s.add_all(MediaTag(media_id=media_id, tag=t, contract_id=principal.contract_id, created_at=utcnow())
                      for t in sorted(wanted - before))
            audit.add(s, principal, "media.tags", patient_id=item.patient_id, media_id=item.id,
                      detail={"tags": body.tags})
    return MediaTags(media_id=media_id, tags=body.tags)
