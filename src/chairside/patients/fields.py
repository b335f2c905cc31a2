"""What a patient's registration or correction may contain, checked once at the edge (API body or relay op)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chairside.domain.text import UnsafeText, visible_text


class PatientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clinic_id: uuid.UUID
    chart_no: str = Field(min_length=1, max_length=40, examples=["00123"])
    name: str = Field(min_length=1, max_length=200, examples=["山田 太郎"])
    name_kana: str = Field(min_length=1, max_length=200, examples=["ヤマダ タロウ"])
    birth_date: date | None = Field(default=None, examples=["1980-04-01"])
    sex: Literal["male", "female", "other", "unknown"] = "unknown"

    @field_validator("chart_no", "name", "name_kana")
    @classmethod
    def _strip(cls, v: str) -> str:
        return _visible(v)


class PatientPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chart_no: str | None = Field(default=None, min_length=1, max_length=40)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    name_kana: str | None = Field(default=None, min_length=1, max_length=200)
    birth_date: date | None = None
    sex: Literal["male", "female", "other", "unknown"] | None = None

    @field_validator("chart_no", "name", "name_kana")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return None if v is None else _visible(v)


def _visible(v: str) -> str:
    """NFC, stripped; refused when empty, invisible-only, or holding bidi or control characters (domain/text.py)."""
    try:
        return visible_text(v)
    except UnsafeText as e:
        raise ValueError(f"must be visible text: it {e}") from None
