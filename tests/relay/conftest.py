"""Fixtures for the relay's runtime tests: a live cloud, the WAN emulator, and the relay as a real
`chairside relay serve` subprocess (so a kill -9 is a real one).

The relay's data folder is seeded with copies of the cloud's rows (contract, clinic, station,
patient) through feed/rows.py, so a station's token works at the relay from its first second;
the feed follower, when it runs, applies the same rows again (idempotent upserts).

The cloud runs on SQLite unless a test is marked `@on_both_clouds`, which runs it on SQLite and
on PostgreSQL (the session's database, emptied first). The relay is always on SQLite, its own box.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context, build_context
from chairside.db.models import Clinic, Contract, Patient, Station
from chairside.feed.rows import to_json, upsert
from chairside.settings import Settings
from tests.conftest import DATABASES, LiveServer, empty_pg_database, free_port
from tests.factories import make_relay_token, make_tenant
from tests.netem import Faults, WanProxy

BIN = Path(sys.executable).parent
CHUNK = 256 * 1024  # the relay's upload chunk in these tests: files of a few MB make many chunks
T = TypeVar("T")
_CONTRACT_PRIVATE = frozenset({"contact_emails", "cancellation_notice_on", "feed_seq"})
# Runs a test with its cloud on SQLite and on PostgreSQL (for the tests of what the cloud does with the
# relay's writes and uploads; the slow WAN and bandwidth tests keep the SQLite cloud only).
on_both_clouds = pytest.mark.parametrize("cloud_database", DATABASES, indirect=True)


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class UpCloud:
    ctx: Context
    server: LiveServer
    contract_id: uuid.UUID
    clinic_id: uuid.UUID
    station_id: uuid.UUID
    station_token: str
    relay_token: str
    patient_id: uuid.UUID

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> Client:
        return Client(self.url, self.station_token)

    def media(self, media_id: str | uuid.UUID) -> dict[str, Any] | None:
        r = httpx.get(f"{self.url}/api/v1/media/{media_id}", headers={"Authorization": f"Bearer {self.station_token}"})
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def make_upcloud(ctx: Context, server: LiveServer, *, plan_hours: int = 100) -> UpCloud:
    tenant = make_tenant(ctx, "医療法人 リレー歯科", plan_hours=plan_hours, clinic_names=["リレー歯科 本院"])
    clinic_id = tenant.clinic_ids[0]
    relay_token = make_relay_token(ctx, clinic_id, "本院 relay")
    with Client(server.url, tenant.token) as c:
        patient = c.create_patient(clinic_id, "00001", "山田 太郎", "ヤマダ タロウ", birth_date="1980-04-01",
                                   sex="male")
    return UpCloud(ctx, server, tenant.contract_id, clinic_id, tenant.station_ids[0], tenant.token, relay_token,
                   uuid.UUID(patient["id"]))


@pytest.fixture
def cloud_database(request: pytest.FixtureRequest) -> str | None:
    """The cloud's database URL: None (SQLite in its data folder) unless `@on_both_clouds` asks for "postgres"."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    return empty_pg_database(request)


@pytest.fixture
def upcloud(tmp_path: Path, cloud_database: str | None) -> Iterator[UpCloud]:
    """The cloud (in this process) with one contract, clinic, station, patient and a relay token."""
    settings = Settings.load(environ={}, data_dir=tmp_path / "cloud", database_url=cloud_database)
    ctx = build_context(settings)
    try:
        with LiveServer(ctx) as server:
            yield make_upcloud(ctx, server)
    finally:
        ctx.db.dispose()


def seed_relay(cloud: UpCloud, data_dir: Path) -> None:
    """Copy the cloud's rows the relay needs into the relay's database (what the feed would bring)."""
    seed_relay_from(cloud.ctx, cloud.contract_id, data_dir)


def seed_relay_from(cloud: Context, contract_id: uuid.UUID, data_dir: Path) -> None:
    """`seed_relay` for any cloud context: the contract, its clinics, stations and patients."""
    rctx = build_context(Settings.load(environ={}, data_dir=data_dir), role="relay")
    try:
        with cloud.db.read() as s:
            contract = s.get(Contract, contract_id)
            assert contract is not None
            rows: list[tuple[type[Any], dict[str, Any]]] = [(Contract, to_json(contract, exclude=_CONTRACT_PRIVATE))]
            for model in (Clinic, Station, Patient):
                rows += [(model, to_json(r)) for r in s.scalars(select(model).filter_by(contract_id=contract_id))]
        with rctx.db.session() as s:
            for model, body in rows:
                upsert(s, model, body)
                s.flush()
    finally:
        rctx.db.dispose()


@dataclass
class RelayProcess:
    """`chairside relay serve` in a subprocess on a loopback port."""

    data_dir: Path
    upstream_url: str
    token: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"relay-{self.port}.log"

    def start(self) -> RelayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAIRSIDE_")}
        env.update({"CHAIRSIDE_RELAY_UPLOAD_CHUNK_BYTES": str(CHUNK), "CHAIRSIDE_RELAY_OFFLINE_AFTER_S": "10",
                    "CHAIRSIDE_RELAY_MIN_FREE_BYTES": "0", "CHAIRSIDE_RELAY_FEED_WAIT_S": "2", **self.env})
        args = [str(BIN / "chairside"), "relay", "serve", "--data", str(self.data_dir), "--upstream",
                self.upstream_url, "--token", self.token, "--host", "127.0.0.1", "--port", str(self.port)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"relay did not start:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def status(self, token: str) -> dict[str, Any]:
        r = httpx.get(self.url + "/api/v1/relay/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@dataclass
class RelaySetup:
    cloud: UpCloud
    wan: WanProxy
    relay: RelayProcess

    def station(self, **kwargs: Any) -> Client:
        """The clinic's station, talking to its relay."""
        return Client(self.relay.url, self.cloud.station_token, **kwargs)

    def status(self) -> dict[str, Any]:
        return self.relay.status(self.cloud.station_token)

    def drained(self, timeout: float = 120.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            with contextlib.suppress(httpx.HTTPError):
                st = self.status()
                if st["pending_items"] == 0:
                    return st
            return None

        return wait_for(probe, "the relay's outbox to drain", timeout=timeout, every=0.25)


@pytest.fixture
def make_relay(upcloud: UpCloud, tmp_path: Path) -> Iterator[Callable[..., RelaySetup]]:
    """Build (and clean up) a relay behind a WAN proxy: make_relay(faults=…, env={…}, start=True)."""
    made: list[RelaySetup] = []

    def make(faults: Faults | None = None, env: dict[str, str] | None = None, start: bool = True) -> RelaySetup:
        data_dir = tmp_path / f"relay{len(made)}"
        seed_relay(upcloud, data_dir)
        wan = WanProxy(upcloud.server.port, faults or Faults()).__enter__()
        relay = RelayProcess(data_dir, wan.url, upcloud.relay_token, env=env or {})
        setup = RelaySetup(upcloud, wan, relay)
        made.append(setup)
        if start:
            relay.start()
        return setup

    yield make
    for setup in made:
        setup.relay.stop()
        setup.wan.__exit__(None, None, None)


@pytest.fixture(scope="session")
def big_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real H.264 MP4s of about 3 MB each (many chunks of CHUNK), each different."""
    from chairside.mediafile.generate import make_long_video
    d = tmp_path_factory.mktemp("relay-media")
    paths = []
    for i in range(8):
        path = d / f"rec{i}.mp4"
        make_long_video(path, target_bytes=3 << 20, width=640, height=360, seed=i + 1, label=f"rec {i}")
        paths.append(path)
    return paths
