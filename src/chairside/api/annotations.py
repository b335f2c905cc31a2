"""Annotations over a photo or a paused video frame: the routes. The store (shapes, versions, audit) is
media/annotations.py."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chairside.api.deps import get_context
from chairside.api.openapi import body_doc
from chairside.api.patients import READERS
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Annotation
from chairside.media import annotations as media_annotations
from chairside.media import heavy
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


M = TypeVar("M", bound=BaseModel)


def off_the_loop(model: type[M]) -> Callable[..., Awaitable[M]]:
    """The body, checked in a worker thread holding a slot of heavy work (media/heavy.py): tens of thousands
    of points take long enough to check that the event loop must not do it (what the body may weigh is
    bounded before, by limit_drawing_body_bytes in api/limits.py). Invalid bodies answer 422 as usual."""
    async def checked(request: Request, ctx: Annotated[Context, Depends(get_context)]) -> M:
        raw = await request.body()

        def validate() -> M:
            with heavy.slot(ctx.settings.heavy_work_parallel):
                return model.model_validate_json(raw)

        try:
            return await anyio.to_thread.run_sync(validate)
        except ValidationError as e:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err.get("loc", ()))} for err in e.errors(include_url=False)]) from None

    return checked


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
             summary="Save an annotation as a new layer over a photo or a paused video frame",
             openapi_extra=body_doc(AnnotationIn))
def create_annotation(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*ANNOTATORS)],
    body: Annotated[AnnotationIn, Depends(off_the_loop(AnnotationIn))],
    ctx: Annotated[Context, Depends(get_context)],
) -> Annotation:
    return media_annotations.create(ctx, principal, media_id, body.shapes, body.media_time_s)


@router.put("/annotations/{annotation_id}", response_model=AnnotationOut,
            summary="Replace an annotation's shapes (names the version it replaces)",
            openapi_extra=body_doc(AnnotationUpdate))
def update_annotation(
    annotation_id: uuid.UUID,
    principal: Annotated[Principal, allow(*ANNOTATORS)],
    body: Annotated[AnnotationUpdate, Depends(off_the_loop(AnnotationUpdate))],
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
