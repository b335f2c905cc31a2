"""The relay's outbox: each write made at the relay, recorded in the write's own transaction.

The uploader (relay/uploader.py) carries them to the cloud in `id` order. Each carries an
`op_id` made here, so the cloud applies it once however often it is sent. Bodies:

- patient.create  {id, clinic_id, chart_no, name, name_kana, birth_date, sex, created_at, field_clocks}
- patient.update  {id, fields: {name: value}, clocks: {name: hlc}}
- media.trash     {id, at}            media.restore  {id, at}
- media.move      {id, patient_id, from_patient_id, at}   (media/move.py)
- media.upload    {id, patient_id, sha256, size, filename, captured_at, station_id, kind, duration_ms}
- annotation.put, annotation.delete, media.tags, session.signin: the viewer's, relay/viewer.py
- media.teeth, note.put: tooth numbers and notes written in the viewer, relay/dentistry.py

All but media.upload go to `POST /api/v1/relay/ops` as {op_id, kind, body}; a media.upload
goes with tus to `/api/v1/uploads/`, idempotent by its media id.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from chairside.db.models import OutboxOp
from chairside.ids import uuid7  # not chairside.client: the cloud never needs httpx

KINDS = ("patient.create", "patient.update", "media.trash", "media.restore", "media.upload",
         "annotation.put", "annotation.delete", "media.tags", "session.signin",  # the viewer's: relay/viewer.py
         "media.move",  # media/move.py
         "media.teeth", "note.put")  # tooth numbers and notes: relay/dentistry.py


def record(s: Session, kind: str, entity_id: uuid.UUID, body: dict[str, Any], *, size: int = 0) -> OutboxOp:
    assert kind in KINDS, kind
    op = OutboxOp(op_id=uuid7(), kind=kind, entity_id=entity_id, body=body, size=size)
    s.add(op)
    return op
