"""Annotations over a photo or a paused video frame: a versioned layer of vector shapes, never burnt into
the original. The one write path for them.

Coordinates are fractions (0..1) of the picture as shown upright, so an annotation lands on
the same spot on a phone, a tablet and a 4K screen. An annotation is as visible as its media
item; every change is a write in the audit trail, recorded in the same transaction. A change
names the version it replaces, so two devices editing the same annotation never overwrite
each other unseen.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, select

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Annotation, Media, utcnow
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media.items import not_found as media_not_found
from chairside.relay import viewer as relay_viewer
from chairside.tenancy import visibility

MAX_SHAPES = 500
MAX_POINTS = 5000

# -- shapes: what an annotation may contain, checked once at the edge (the API body) ---------------

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


# -- the store --------------------------------------------------------------------------------------

def check_points(shapes: Sequence[Shape], limit: int) -> None:
    """A drawing layer has at most `limit` points in all its pen strokes (settings.limit_drawing_points): what
    every device downloads and draws stays small."""
    points = sum(len(shape.points) for shape in shapes if isinstance(shape, Pen))
    if points > limit:
        raise Problem(422, f"この書き込みは点が多すぎます（{points} 点、上限 {limit} 点）。"
                      "線を減らして保存してください。 / "
                      f"This drawing has too many points ({points}; at most {limit}). Draw fewer or shorter strokes, "
                      "then save again.", code="drawing-too-large", points=points, limit=limit)


def not_found() -> Problem:
    return Problem(404, "This annotation was not found. It may have been deleted on another device, or belong to "
                   "a photo or video you cannot see.", code="annotation-not-found")


def _stored(shapes: Sequence[Shape]) -> list[dict[str, Any]]:
    return [shape.model_dump(mode="json") for shape in shapes]


def _visible(principal: Principal, annotation_id: uuid.UUID) -> Select[Annotation, Media]:
    """The annotation with its media item, when the principal sees the item and it is not in the trash."""
    return (
        select(Annotation, Media)
        .join(Media, Media.id == Annotation.media_id)
        .where(Annotation.id == annotation_id, Annotation.contract_id == principal.contract_id,
               Media.id.in_(visibility.media(principal).with_only_columns(Media.id)))
    )


def list_for(ctx: Context, principal: Principal, media_id: uuid.UUID) -> list[Annotation]:
    """A visible item's annotations (the item may be in the trash), oldest first."""
    with ctx.db.read() as s:
        if visibility.media_item(s, principal, media_id, include_deleted=True) is None:
            raise media_not_found()
        return list(s.scalars(select(Annotation).where(Annotation.media_id == media_id)
                              .order_by(Annotation.created_at, Annotation.id)))


def create(ctx: Context, principal: Principal, media_id: uuid.UUID, shapes: Sequence[Shape],
           media_time_s: float | None = None) -> Annotation:
    """A new annotation at version 1 over a visible item not in the trash (at `media_time_s` of a video)."""
    check_points(shapes, ctx.settings.limit_drawing_points)
    with ctx.db.session() as s:
        item = visibility.media_item(s, principal, media_id)
        if item is None:
            raise media_not_found()
        now = utcnow()
        row = Annotation(contract_id=principal.contract_id, media_id=item.id, media_time_s=media_time_s,
                         shapes=_stored(shapes), version=1, author_id=principal.account_id or principal.station_id,
                         author_name=principal.name[:200], created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        audit.add(s, principal, "annotation.create", patient_id=item.patient_id, media_id=item.id,
                  detail={"annotation_id": str(row.id), "shapes": len(row.shapes)})
        changes.annotation_changed(s, row, item.patient_id)  # to the relays (feed/changes.py)
        if ctx.role.queues_writes_upstream:  # at a relay: carried to the cloud (relay/viewer.py)
            relay_viewer.annotation_put(s, row)
        return row


def update(ctx: Context, principal: Principal, annotation_id: uuid.UUID, version: int, shapes: Sequence[Shape],
           media_time_s: float | None = None) -> Annotation:
    """Replace the shapes of the annotation at `version` (409 when it has moved on since); answers it at the
    next version."""
    check_points(shapes, ctx.settings.limit_drawing_points)
    with ctx.db.session() as s:
        found = s.execute(_visible(principal, annotation_id).with_for_update(of=Annotation)).first()
        if found is None:
            raise not_found()
        row, item = found
        if row.version != version:
            raise Problem(409, f"This annotation was changed on another device (it is now at version {row.version}, "
                          f"not {version}). Reload it, then draw your change again.",
                          code="annotation-changed", version=row.version)
        row.shapes, row.media_time_s = _stored(shapes), media_time_s
        row.version += 1
        row.updated_at = utcnow()
        audit.add(s, principal, "annotation.update", patient_id=item.patient_id, media_id=item.id,
                  detail={"annotation_id": str(row.id), "version": row.version, "shapes": len(row.shapes)})
        s.flush()
        changes.annotation_changed(s, row, item.patient_id)
        if ctx.role.queues_writes_upstream:
            relay_viewer.annotation_put(s, row)
        return row


def delete(ctx: Context, principal: Principal, annotation_id: uuid.UUID) -> None:
    """Delete a visible annotation (the original is untouched)."""
    with ctx.db.session() as s:
        found = s.execute(_visible(principal, annotation_id)).first()
        if found is None:
            raise not_found()
        row, item = found
        audit.add(s, principal, "annotation.delete", patient_id=item.patient_id, media_id=item.id,
                  detail={"annotation_id": str(row.id), "version": row.version})
        changes.annotation_deleted(s, row, item.patient_id)
        if ctx.role.queues_writes_upstream:
            relay_viewer.annotation_delete(s, row)
        s.delete(row)
