"""Fixtures for the viewer at a relay: a live cloud (SQLite and PostgreSQL), a WAN line that can go down,
and the relay whole (follower, uploader, cache) on loopback behind it."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import Account, OutboxOp
from chairside.relay import queue
from tests.conftest import LiveServer
from tests.factories import Viewer, make_account
from tests.netem import WanProxy
from tests.relay.follow_fixtures import Cloud, cloud, relay_context, wait_for  # noqa: F401  (fixtures)


@dataclass
class Clinic:
    """A cloud, its relay behind a WAN line, and a viewer account of the contract."""

    cloud: Cloud
    wan: WanProxy
    relay_ctx: Context
    relay: LiveServer
    viewer: Viewer

    def synced_account(self, login: str) -> Account:
        def probe() -> Account | None:
            with self.relay_ctx.db.read() as s:
                return s.scalar(select(Account).where(Account.login == login))
        return wait_for(probe, f"the account {login} at the relay")

    def outbox_drained(self, kind: str | None = None) -> None:
        def probe() -> bool:
            if kind is not None:
                with self.relay_ctx.db.read() as s:
                    waiting = s.scalar(select(OutboxOp.id).where(OutboxOp.kind == kind, OutboxOp.done_at.is_(None))
                                       .limit(1))
                return waiting is None
            return int(queue.status_figures(self.relay_ctx)["pending_items"]) == 0
        wait_for(probe, "the relay's outbox to drain", timeout=60)


def sign_in(base: str, viewer: Viewer, device: str, *, takeover: bool = False) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/sessions", json={"login": viewer.login, "password": viewer.password,
                                                        "device_name": device, "takeover": takeover}, timeout=30)


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return {"Authorization": f"Bearer {token}"}


def get(base: str, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers=headers, params=params, timeout=30)


@pytest.fixture
def clinic(cloud: Cloud, tmp_path: Path) -> Iterator[Clinic]:
    viewer = make_account(cloud.ctx, cloud.contract_id, f"reception-{uuid.uuid4().hex[:6]}")
    with WanProxy(cloud.server.port) as wan:
        rctx = relay_context(tmp_path / "relay", wan.url, cloud.relay_token, relay_offline_after_s=3.0,
                             relay_feed_wait_s=1.0)
        try:
            with LiveServer(rctx) as relay:
                c = Clinic(cloud, wan, rctx, relay, viewer)
                c.synced_account(viewer.login)
                yield c
        finally:
            rctx.db.dispose()
