"""Fixtures for the relay's follower and cache tests: a live cloud with a tenant and a relay token,
and relay contexts (their own SQLite database and blob folder) that follow it over loopback,
directly or through the WAN emulator (tests/netem.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chairside.client import Client
from chairside.context import Context, build_context
from chairside.relay import cache, follower
from chairside.relay.runtime import attach
from chairside.settings import Settings
from tests.conftest import LiveServer
from tests.factories import make_relay_token, make_tenant

T = TypeVar("T")


@dataclass
class Cloud:
    ctx: Context
    server: LiveServer
    contract_id: uuid.UUID
    clinic_ids: list[uuid.UUID]
    station_tokens: list[str]  # one station per clinic
    relay_token: str  # the relay of clinic 0
    clients: list[Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def station(self, clinic: int = 1) -> Client:
        """An SDK client of clinic `clinic`'s station, talking to the cloud (clinic 1 is 'another branch')."""
        client = Client(self.url, self.station_tokens[clinic])
        self.clients.append(client)
        return client


def make_cloud_tenant(ctx: Context, clinics: int = 2) -> tuple[uuid.UUID, list[uuid.UUID], list[str], str]:
    """A contract with clinics and a station each, every row announced on the changes feed, and a relay token."""
    tenant = make_tenant(ctx, "医療法人 リレー歯科", clinic_names=[f"リレー歯科 {i + 1}号院" for i in range(clinics)])
    relay_token = make_relay_token(ctx, tenant.clinic_ids[0])
    return tenant.contract_id, tenant.clinic_ids, tenant.station_tokens, relay_token


@pytest.fixture
def cloud(ctx: Context, server: LiveServer) -> Iterator[Cloud]:
    contract_id, clinic_ids, tokens, relay_token = make_cloud_tenant(ctx)
    c = Cloud(ctx, server, contract_id, clinic_ids, tokens, relay_token)
    yield c
    for client in c.clients:
        client.close()


class RelayApi(LiveServer):
    """The relay's API on loopback WITHOUT its background tasks (no follower, uploader or janitor), so a test
    decides when the relay talks to the cloud. `LiveServer(rctx)` runs the relay whole."""

    def __init__(self, rctx: Context) -> None:
        super().__init__(rctx)
        app = self.server.config.app

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await cache.close_clients(rctx)  # the cache's client to the cloud, made in this server's loop

        app.router.lifespan_context = lifespan


def relay_context(data_dir: Path, upstream_url: str, token: str, **overrides: Any) -> Context:
    """A relay's context: its own SQLite database and blob folder, following `upstream_url`."""
    options: dict[str, Any] = {"relay_min_free_bytes": 0, "relay_feed_wait_s": 2.0, **overrides}
    settings = Settings.load(environ={}, data_dir=data_dir, upstream_url=upstream_url, relay_token=token, **options)
    rctx = build_context(settings, role="relay")
    attach(rctx, upstream_url, token)
    return rctx


@pytest.fixture
def relay_ctx(tmp_path: Path, cloud: Cloud) -> Iterator[Context]:
    rctx = relay_context(tmp_path / "relay", cloud.url, cloud.relay_token)
    yield rctx
    rctx.db.dispose()


def catch_up(rctx: Context, limit: int = 500) -> int:
    """Apply the cloud's feed until nothing more is waiting (a relay coming back online)."""
    async def go() -> int:
        try:
            return await follower.catch_up(rctx, limit=limit)
        finally:
            await cache.close_clients(rctx)

    return asyncio.run(go())


class BackgroundFollower:
    """`follower.run(ctx)` in its own thread and event loop, as the relay runs it; cancelled on exit."""

    def __init__(self, rctx: Context, limit: int = follower.PAGE_LIMIT) -> None:
        self.ctx = rctx
        self.limit = limit
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: asyncio.Task[None] | None = None
        self.started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(follower.run(self.ctx, limit=self.limit))
        self.started.set()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def __enter__(self) -> BackgroundFollower:
        self.thread.start()
        self.started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.task is not None
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the follower did not stop"


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll until `probe` answers something truthy (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
