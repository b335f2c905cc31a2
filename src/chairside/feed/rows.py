"""Rows as JSON and back: how the changes feed carries a row, and how a follower stores it.

One serializer for both ends keeps the cloud and its followers (relays, later the mirror)
exact copies of each other: every mapped column goes out, and comes back with its type.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from chairside.db.models import Base, UTCDateTime

M = TypeVar("M", bound=Base)


def to_json(row: Base, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every column of `row` as JSON-ready values (UUIDs and dates as ISO strings)."""
    out: dict[str, Any] = {}
    for attr in inspect(type(row)).column_attrs:
        if attr.key in exclude:
            continue
        value = getattr(row, attr.key)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, (datetime, date)):
            value = value.isoformat()
        out[attr.key] = value
    return out


def from_json(model: type[M], body: dict[str, Any]) -> dict[str, Any]:
    """The column values of `model` found in `body`, typed back from JSON (unknown keys ignored)."""
    values: dict[str, Any] = {}
    for attr in inspect(model).column_attrs:
        if attr.key not in body:
            continue
        value = body[attr.key]
        if value is not None:
            python_type = _python_type(attr)
            if python_type is uuid.UUID:
                value = uuid.UUID(value)
            elif python_type is datetime:
                value = datetime.fromisoformat(value)
            elif python_type is date:
                value = date.fromisoformat(value)
        values[attr.key] = value
    return values


def upsert(s: Session, model: type[M], body: dict[str, Any]) -> M:
    """Insert the row, or overwrite every column given in `body` when its primary key exists."""
    values = from_json(model, body)
    mapper = inspect(model)
    key = tuple(values[mapper.get_property_by_column(c).key] for c in mapper.primary_key)
    row = s.get(model, key if len(key) > 1 else key[0])
    if row is None:
        row = model(**values)
        s.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    return row


def _python_type(attr: Any) -> type | None:
    column = attr.columns[0]
    if isinstance(column.type, UTCDateTime):
        return datetime
    try:
        python_type: type = column.type.python_type
        return python_type
    except NotImplementedError:
        return None
