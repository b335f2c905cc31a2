"""Dentistry on items and patients: an item's tooth numbers (FDI), notes on an item and on a patient, and a
clinic's display of tooth numbers. The rules and writes are media/teeth.py and media/notes.py; the numbering is
domain/teeth.py. A timeline is filtered by tooth with `GET /api/v1/patients/{id}/media?tooth=16` (api/media.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from chairside.api.deps import get_context
from chairside.api.patients import READERS, WRITERS
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.domain import teeth as rules
from chairside.media import notes, teeth
from chairside.media.notes import MAX_CHARS, NoteView

router = APIRouter(prefix="/api/v1", tags=["dentistry"])


class TeethIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teeth: list[int] = Field(max_length=rules.MAX_PER_ITEM * 2, examples=[[16, 17]],
                             description="FDI two-digit numbers: 11–48 permanent, 51–85 deciduous. Replaces the "
                                         "item's set; [] clears it. Each number once, at most 32.")


class MediaTeeth(BaseModel):
    media_id: uuid.UUID
    teeth: list[int] = Field(description="The item's teeth, FDI, sorted.")


@router.put("/media/{media_id}/teeth", response_model=MediaTeeth, summary="Set the teeth an item shows (replaces)")
def set_teeth(
    media_id: uuid.UUID,
    body: TeethIn,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> MediaTeeth:
    return MediaTeeth(media_id=media_id, teeth=teeth.set_teeth(ctx, principal, media_id, body.teeth))


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=MAX_CHARS * 4, examples=["右下6 根管治療の説明に使用"],
                      description=f"Free text, several lines; at most {MAX_CHARS} characters once normalised "
                                  "(NFC, line ends trimmed). \"\" clears the note.")


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    entity_id: uuid.UUID = Field(description="The media item's or the patient's id")
    kind: Literal["media", "patient"]
    text: str = Field(description="\"\" when there is no note")
    updated_at: datetime | None = Field(description="When it was last saved; null when never")
    author_name: str = Field(description="Who saved it last (the account's name)")


def _out(view: NoteView) -> NoteOut:
    return NoteOut.model_validate(view)


@router.get("/media/{media_id}/note", response_model=NoteOut, summary="An item's note")
def get_media_note(
    media_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> NoteOut:
    return _out(notes.get_note(ctx, principal, "media", media_id))


@router.put("/media/{media_id}/note", response_model=NoteOut, summary="Set an item's note (\"\" clears it)")
def set_media_note(
    media_id: uuid.UUID,
    body: NoteIn,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> NoteOut:
    return _out(notes.set_note(ctx, principal, "media", media_id, body.text))


@router.get("/patients/{patient_id}/note", response_model=NoteOut, summary="A patient's note")
def get_patient_note(
    patient_id: uuid.UUID,
    principal: Annotated[Principal, allow(*READERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> NoteOut:
    return _out(notes.get_note(ctx, principal, "patient", patient_id))


@router.put("/patients/{patient_id}/note", response_model=NoteOut, summary="Set a patient's note (\"\" clears it)")
def set_patient_note(
    patient_id: uuid.UUID,
    body: NoteIn,
    principal: Annotated[Principal, allow(*WRITERS)],
    ctx: Annotated[Context, Depends(get_context)],
) -> NoteOut:
    return _out(notes.set_note(ctx, principal, "patient", patient_id, body.text))


class NotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tooth_notation: str = Field(examples=["palmer"], description="fdi (16, the default) or palmer (6┘: the "
                                                                 "Japanese Zsigmondy–Palmer form)")


class ClinicNotation(BaseModel):
    id: uuid.UUID
    tooth_notation: str


@router.put("/clinics/{clinic_id}/tooth-notation", response_model=ClinicNotation,
            summary="How the viewer shows tooth numbers for a clinic's patients (admin, at the cloud)")
def set_notation(
    clinic_id: uuid.UUID,
    body: NotationIn,
    principal: Annotated[Principal, allow("admin")],
    ctx: Annotated[Context, Depends(get_context)],
) -> ClinicNotation:
    clinic = teeth.set_notation(ctx, principal, clinic_id, body.tooth_notation)
    return ClinicNotation(id=clinic.id, tooth_notation=clinic.tooth_notation)
