"""What keeps a server's event loop free while a drawing of 20 000 points is stored (issue 15, health p99):
JSON columns written by pydantic-core (one `json.dumps` of such a drawing held the GIL for ~40 ms), and the
server's long-lived objects frozen out of the garbage collector's full collections (each walked ~150 000
objects, 100–500 ms on a loaded machine, every few such requests). The latency itself is measured, not
asserted, in tests/hostile/test_abuse.py (docs/benchmarks.md, "Hostile input").
"""

from __future__ import annotations

import gc
import json
import math
from typing import Any

import pytest
import uvicorn
from sqlalchemy import JSON, bindparam, select, type_coerce

from chairside.app import create_app
from chairside.cli import cloud
from chairside.context import Context
from chairside.db.engine import json_text

VALUES: list[Any] = [
    {"shapes": [{"type": "pen", "color": "#e53935", "width": 0.006, "points": [[i / 5000, 0.5] for i in range(50)]}]},
    {"name": "山田 花子", "note": "歯科\u200d", "n": 1e-05, "big": 12345678901234567890, "t": True, "z": None},
    [1, 2.5, "three", [], {}],
    "text",
]


@pytest.mark.parametrize("value", VALUES)
def test_json_text_is_the_json_that_json_dumps_would_write(value: Any) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))
    assert math.isnan(json.loads(json_text({"x": float("nan")}))["x"])  # as json.dumps: NaN, not null


def test_json_columns_are_written_by_json_text_and_read_back_equal(ctx: Context) -> None:
    assert ctx.db.engine.dialect._json_serializer is json_text
    with ctx.db.engine.connect() as conn:
        for value in VALUES[:3]:
            param = bindparam("v", value, type_=JSON)
            assert conn.execute(select(type_coerce(param, JSON))).scalar_one() == value


def test_a_served_process_freezes_its_long_lived_objects_before_it_serves(ctx: Context,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    gc.unfreeze()
    seen: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.append(gc.get_freeze_count()))
    try:
        cloud.run(create_app(ctx), "127.0.0.1", 0, settings=ctx.settings)
    finally:
        gc.unfreeze()
    assert seen and seen[0] > 10_000, seen
