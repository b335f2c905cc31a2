"""Fixtures of the merge tests: a signed-in viewer as an HTTP client, and a pair of patients with one chart number
(the first registered at the cloud, the second by a relay that was offline), the second flagged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pytest

from chairside.context import Context
from chairside.domain.hlc import Clock
from chairside.tenancy.service import create_relay
from tests.conftest import LiveServer, sign_in
from tests.factories import Viewer, make_patient


@pytest.fixture
def dr(server: LiveServer, viewer: Viewer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {sign_in(server, viewer)}"}) as client:
        yield client


@dataclass
class Pair:
    kept: uuid.UUID  # registered first, at the cloud
    flagged: uuid.UUID  # the same chart number, registered later at a relay: merge_with = kept
    relay_token: str


def relay_op(server: LiveServer, token: str, kind: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/relay/ops", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                      json={"op_id": str(uuid.uuid4()), "kind": kind, "body": body})


class Tenancy(Protocol):
    contract_id: uuid.UUID
    clinic_ids: list[uuid.UUID]


def flag_pair(ctx: Context, server: LiveServer, tenant: Tenancy, chart_no: str = "01234", *,
              clinic: int = 0) -> Pair:
    """The kept patient has no birth date and sex unknown; the flagged one has both (to fill the kept one's)."""
    clinic_id = tenant.clinic_ids[clinic]
    kept = make_patient(ctx, tenant.contract_id, clinic_id, chart_no, "山田 太郎", "ヤマダ タロウ", sex="unknown")
    _, token = create_relay(ctx, clinic_id)
    stamp = Clock("feed0001").now()
    body: dict[str, Any] = {
            "id": str(uuid.uuid4()), "clinic_id": str(clinic_id), "chart_no": chart_no, "name": "山田 太朗",
            "name_kana": "ヤマダ タロウ", "birth_date": "1980-04-01", "sex": "male",
            "created_at": "2026-12-01T10:00:00+09:00",
            "field_clocks": {f: stamp for f in ("chart_no", "name", "name_kana", "birth_date", "sex")}}
    r = relay_op(server, token, "patient.create", body)
    assert r.status_code == 200 and r.json()["result"]["merge_with"] == str(kept.id), r.text
    return Pair(kept.id, uuid.UUID(body["id"]), token)
