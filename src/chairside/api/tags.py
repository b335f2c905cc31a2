"""Tags on media items (e.g. 術前, 術後, 説明用): set an item's tags, list a patient's, to filter the timeline.
The rules and the write are media/tags.py."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from chairside.api.deps import get_context
from chairside.api.patients import READERS, WRITERS
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.media import tags as media_tags
from chairside.media.tags import MAX_TAGS

router = APIRouter(prefix="/api/v1", tags=["tags"])


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: list[str] = Field(max_length=MAX_TAGS, examples=[["術前", "説明用"]])

    @field_validator("tags")
    @classmethod
    def _clean(cls, tags: list[str]) -> list[str]:
        return media_tags.clean_tags(tags)


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
    by_item = media_tags.by_item(ctx, principal, patient_id)
    return PatientTags(items=[MediaTags(media_id=m, tags=t) for m, t in by_item.items()],
                       tags=sorted({tag for t in by_item.values() for tag in t}))


@router.put("/media/{media_id}/tags", response_model=MediaTags, summary="Set an item's tags (replaces them)")
def set_tags(
    media_id: uuid.UUID,
    body: TagsIn,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MediaTags:
    return MediaTags(media_id=media_id, tags=media_tags.set_tags(ctx, principal, media_id, body.tags))
