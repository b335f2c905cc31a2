"""Annotations over a photo or a paused video frame: the routes. The store (shapes, versions, audit) is
media/annotations.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from chairside.api.deps import get_context
from chairside.api.patients import READERS
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Annotation
from chairside.media import annotations as media_annotations
from chairside.media.annotations import MAX_SHAPES, Shape

router = APIRouter(prefix="/api/v1", tags=["annotations"])
ANNOTATORS = ("admin", "viewer", "station")


class AnnotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    media_time_s: float | None = Field(default=None, ge=0.0, description="The video time the annotation belongs "
                                       "to (a paused frame); null for a photo.", examples=[12.4])
    shapes: list[Shape] = Field(min_length=1, max_length=MAX_SHAPES)


class AnnotationUpdate(AnnotationIn):
    version: int = Field(ge=1, description="The version being replaced; 409 when another device changed it since.")


class AnnotationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    media_id: uuid.UUID
    media_time_s: float | None
    shapes: list[dict[str, Any]]
    version: int
    author_name: str
    created_at: datetime
    updated_at: datetime


class AnnotationList(BaseModel):
    items: list[AnnotationOut]


@router.get("/media/{media_id}/annotations", response_model=AnnotationList,
            summary="The annotations over a photo or video, oldest first")
def list_annotations(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> AnnotationList:
    rows = media_annotations.list_for(ctx, principal, media_id)
    return AnnotationList(items=[AnnotationOut.model_validate(a) for a in rows])


@router.post("/media/{media_id}/annotations", status_code=201, response_model=AnnotationOut,
             summary="Save an annotation as a new layer over a photo or a paused video frame")
def create_annotation(
    media_id: uuid.UUID,
    body: AnnotationIn,
    principal: Annotated[Principal, allow(*ANNOTATORS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Annotation:
    return media_annotations.create(ctx, principal, media_id, body.shapes, body.media_time_s)


@router.put("/annotations/{annotation_id}", response_model=AnnotationOut,
            summary="Replace an annotation's shapes (names the version it replaces)")
def update_annotation(
    annotation_id: uuid.UUID,
    body: AnnotationUpdate,
    principal: Annotated[Principal, allow(*ANNOTATORS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Annotation:
    return media_annotations.update(ctx, principal, annotation_id, body.version, body.shapes, body.media_time_s)


@router.delete("/annotations/{annotation_id}", status_code=204, summary="Delete an annotation (the original is "
               "untouched)")
def delete_annotation(
    annotation_id: uuid.UUID,
    principal: Annotated[Principal, allow(*ANNOTATORS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Response:
    media_annotations.delete(ctx, principal, annotation_id)
    return Response(status_code=204)
