"""`POST /api/v1/relay/ops`: a write made at a relay, applied by the cloud once (feed/ops.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.feed import ops

router = APIRouter(prefix="/api/v1/relay", tags=["relay"])


class OpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op_id: uuid.UUID = Field(description="Made by the relay when it recorded the write; the cloud applies it once")
    kind: Literal["patient.create", "patient.update", "media.trash", "media.restore", "annotation.put",
                  "annotation.delete", "media.tags", "session.signin", "media.teeth", "note.put",
                  "media.move"]
    body: dict[str, Any] = Field(description="As documented in docs/replication.md for each kind")


class OpOut(BaseModel):
    op_id: uuid.UUID
    status: Literal["applied", "duplicate"]
    result: dict[str, Any]


@router.post("/ops", response_model=OpOut, summary="Apply one write made at a relay (once, whatever the retries)")
def post_op(
    op: OpIn,
    principal: Annotated[Principal, allow("relay")],
    ctx: Annotated[Context, Depends(get_context)],
) -> OpOut:
    status, result = ops.apply(ctx, principal, op.op_id, op.kind, op.body)
    return OpOut(op_id=op.op_id, status=status, result=result)
