"""Drawings over a photo or a paused video frame: a layer of vector shapes, never burnt into the original.

Coordinates are fractions (0..1) of the picture as shown upright, so a drawing lands on
the same spot on a phone, a tablet and a 4K screen. A drawing is as visible as its media
item; every change is a write in the audit trail, recorded in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from chairside.api.deps import get_context
from chairside.api.patients import READERS
from chairside.api.principal import allow
from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Annotation, Media, utcnow
from chairside.errors import Problem
from chairside.media.items import not_found as media_not_found
from chairside.tenancy import visibility

router = APIRouter(prefix="/api/v1", tags=["annotations"])
DRAWERS = ("admin", "viewer", "station")
MAX_SHAPES = 500
MAX_POINTS = 5000

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Unit, Unit]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", examples=["#e53935"])]
Width = Annotated[float, Field(gt=0.0, le=0.1, description="Line width as a fraction of the picture's width.")]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")
    color: Color
    width: Width = 0.006


class Pen(_Shape):
    type: Literal["pen"]
    points: list[Point] = Field(min_length=1, max_length=MAX_POINTS)


class Arrow(_Shape):
    type: Literal["arrow"]
    start: Point
    end: Point


class Circle(_Shape):
    """An ellipse inscribed in the box from `start` to `end` (opposite corners)."""

    type: Literal["circle"]
    start: Point
    end: Point


class Text(_Shape):
    type: Literal["text"]
    at: Point = Field(description="The text's top-left corner.")
    text: str = Field(min_length=1, max_length=500)
    size: float = Field(default=0.04, gt=0.0, le=0.3, description="Letter height as a fraction of the picture's "
                        "height.")


Shape = Annotated[Pen | Arrow | Circle | Text, Field(discriminator="type")]


class AnnotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    media_time_s: float | None = Field(default=None, ge=0.0, description="The video time the drawing belongs "
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


def not_found() -> Problem:
    return Problem(404, "This drawing was not found. It may have been deleted on another device, or belong to "
                   "a photo or video you cannot see.", code="annotation-not-found")


def _shapes(body: AnnotationIn) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json") for s in body.shapes]


def _visible_annotation(principal: Principal, annotation_id: uuid.UUID) -> Any:
    return (
        select(Annotation, Media)
        .join(Media, Media.id == Annotation.media_id)
        .where(Annotation.id == annotation_id, Annotation.contract_id == principal.contract_id,
               Media.id.in_(visibility.media(principal).with_only_columns(Media.id)))
    )


@router.get("/media/{media_id}/annotations", response_model=AnnotationList,
            summary="The drawings over a photo or video, oldest first")
def list_annotations(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> AnnotationList:
    with ctx.db.read() as s:
        if visibility.media_item(s, principal, media_id, include_deleted=True) is None:
            raise media_not_found()
        rows = s.scalars(select(Annotation).where(Annotation.media_id == media_id)
                         .order_by(Annotation.created_at, Annotation.id)).all()
        return AnnotationList(items=[AnnotationOut.model_validate(a) for a in rows])


@router.post("/media/{media_id}/annotations", status_code=201, response_model=AnnotationOut,
             summary="Save a drawing as a new layer over a photo or a paused video frame")
def create_annotation(
    media_id: uuid.UUID,
    body: AnnotationIn,
    principal: Annotated[Principal, allow(*DRAWERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Annotation:
    with ctx.db.session() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise media_not_found()
        now = utcnow()
        row = Annotation(contract_id=principal.contract_id, media_id=item.id, media_time_s=body.media_time_s,
                         shapes=_shapes(body), version=1, author_id=principal.account_id or principal.station_id,
                         author_name=principal.name[:200], created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        audit.add(s, principal, "annotation.create", patient_id=item.patient_id, media_id=item.id,
                  detail={"annotation_id": str(row.id), "shapes": len(row.shapes)})
        return row


@router.put("/annotations/{annotation_id}", response_model=AnnotationOut,
            summary="Replace a drawing's shapes (names the version it replaces)")
def update_annotation(
    annotation_id: uuid.UUID,
    body: AnnotationUpdate,
    principal: Annotated[Principal, allow(*DRAWERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Annotation:
    with ctx.db.session() as s:
        found = s.execute(_visible_annotation(principal, annotation_id).with_for_update(of=Annotation)).first()
        if found is None:
            raise not_found()
        row: Annotation = found[0]
        item: Media = found[1]
        if row.version != body.version:
            raise Problem(409, f"This drawing was changed on another device (it is now at version {row.version}, "
                          f"not {body.version}). Reload it, then draw your change again.",
                          code="annotation-changed", version=row.version)
        row.shapes, row.media_time_s = _shapes(body), body.media_time_s
        row.version += 1
        row.updated_at = utcnow()
        audit.add(s, principal, "annotation.update", patient_id=item.patient_id, media_id=item.id,
                  detail={"annotation_id": str(row.id), "version": row.version, "shapes": len(row.shapes)})
        s.flush()
        return row


@router.delete("/annotations/{annotation_id}", status_code=204, summary="Delete a drawing (the original is "
               "untouched)")
def delete_annotation(
    annotation_id: uuid.UUID,
    principal: Annotated[Principal, allow(*DRAWERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> Response:
    with ctx.db.session() as s:
        found = s.execute(_visible_annotation(principal, annotation_id)).first()
        if found is None:
            raise not_found()
        row, item = found[0], found[1]
        audit.add(s, principal, "annotation.delete", patient_id=item.patient_id, media_id=item.id,
                  detail={"annotation_id": str(row.id), "version": row.version})
        s.delete(row)
    return Response(status_code=204)
