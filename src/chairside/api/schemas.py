"""Request and response bodies of the public API (they make up the OpenAPI document)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    clinic_id: uuid.UUID
    chart_no: str
    name: str
    name_kana: str
    birth_date: date | None
    sex: str
    created_at: datetime
    updated_at: datetime
    # Set when this patient was registered (offline, at a relay) under a chart number another patient of
    # the clinic already had: staff should merge the two. Null for every ordinary patient.
    merge_with: uuid.UUID | None = None


class PatientList(BaseModel):
    items: list[PatientOut]


class MediaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    patient_id: uuid.UUID
    clinic_id: uuid.UUID
    kind: Literal["video", "image"]
    mime: str
    filename: str
    sha256: str
    size: int
    captured_at: datetime
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    codec: str | None
    bitrate: int | None
    orientation: int | None
    source: str
    station_id: uuid.UUID | None
    created_at: datetime
    deleted_at: datetime | None = Field(description="Set while the item is in the trash.")
    teeth: list[int] = Field(default_factory=list, description="The teeth the item shows, FDI two-digit numbers, "
                             "sorted (PUT /api/v1/media/{id}/teeth).")


class MediaList(BaseModel):
    items: list[MediaOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


class Health(BaseModel):
    status: Literal["ok"]
    role: str
    version: str
    # The mirror site (docs/disaster-recovery.md): a cloud's epoch and each mirror's lag, or a mirror's own figures.
    epoch: int | None = None
    fenced: bool | None = None
    primary: str | None = Field(default=None, description="At a mirror or a fenced cloud: the primary's URL")
    deployment_id: str | None = None
    lag_s: float | None = Field(default=None, description="At a mirror: age of the oldest change not yet here")
    blobs_behind: int | None = None
    metadata_lag_s: float | None = None
    notice: str | None = None
    mirrors: list[dict[str, Any]] | None = None
