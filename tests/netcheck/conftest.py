"""A cloud for the line check's WAN tests: the real app on loopback, its own SQLite database, one code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chairside.context import Context, build_context
from chairside.netcheck import codes
from chairside.settings import Settings
from tests.conftest import LiveServer
from tests.factories import make_tenant
from tests.netem import Faults, WanProxy, _Link


class BucketLink(_Link):
    """tests/netem.py's line with a token bucket of BURST_S: a proxy woken late (a busy machine) catches up
    instead of losing that time on the line, as a real shaper does (tbf has a burst too). The mean rate stays
    the configured rate exactly; a piece never leaves before it arrived."""

    BURST_S = 0.02

    def depart(self, nbytes: int, rate_bps: float | None) -> float:
        now = time.monotonic()
        if not rate_bps:
            return now
        start = max(now - self.BURST_S, self.free_at)
        self.free_at = start + nbytes * 8 / rate_bps
        return max(self.free_at, now)  # never before now: the delay line's latency is kept whole


class Line(WanProxy):
    """The project's WAN emulator with the bucketed line."""

    def __init__(self, target_port: int, faults: Faults) -> None:
        super().__init__(target_port, faults)
        self._links = {True: BucketLink(), False: BucketLink()}


@dataclass
class Cloud:
    ctx: Context
    server: LiveServer
    contract_id: object

    def code(self) -> str:
        code, _ = codes.new_code(self.ctx, self.contract_id)  # type: ignore[arg-type]
        return code


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "cloud"))
    try:
        tenant = make_tenant(ctx, "回線 チェック歯科", clinics=1)
        with LiveServer(ctx) as server:
            yield Cloud(ctx, server, tenant.contract_id)
    finally:
        ctx.db.dispose()
