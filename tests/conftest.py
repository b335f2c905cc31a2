"""Shared fixtures: real SQLite files and a real PostgreSQL, a real server on loopback, real media.

Every test that takes `ctx` (or anything built on it) runs twice: on SQLite and on
PostgreSQL. PostgreSQL is skipped when none is reachable, except when
CHAIRSIDE_REQUIRE_POSTGRES=1 (CI sets it), where its absence fails the run. A test that
needs a database of its own, empty (a migration test), takes `fresh_database_url`.

The data fixtures (`tenant`, `admin`, …) call tests/factories.py, which seeds through the services.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn
from sqlalchemy import text

from chairside.app import create_app
from chairside.client import Client
from chairside.context import Context, build_context
from chairside.db import migrate
from chairside.db.engine import make_engine
from chairside.db.models import Base
from chairside.settings import Settings
from tests.factories import Tenant, Viewer, make_account, make_tenant

PG_ADMIN = os.environ.get("CHAIRSIDE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def require_postgres() -> None:
    """Skip the test without a reachable PostgreSQL; fail it instead when CHAIRSIDE_REQUIRE_POSTGRES=1 (CI)."""
    if not _pg_reachable():
        if os.environ.get("CHAIRSIDE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable at {PG_ADMIN}")
        pytest.skip("no PostgreSQL reachable")


@contextlib.contextmanager
def scratch_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (no tables), dropped afterwards: answers its URL."""
    require_postgres()
    name = f"chairside_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, built by the migrations."""
    with scratch_pg_database() as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def empty_pg_database(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL database with every table emptied for this test (skipped without one)."""
    url: str = request.getfixturevalue("pg_database")
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()
    return url


@pytest.fixture(params=DATABASES)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own with no tables yet, on SQLite and on PostgreSQL (a scratch database,
    dropped afterwards): for the tests that build an old schema and migrate it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with scratch_pg_database() as url:
        yield url


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chairside.db'}"
    return empty_pg_database(request)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings.load(environ={}, data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    context = build_context(settings)
    yield context
    context.db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """The real app under uvicorn on a loopback port, in a thread."""

    def __init__(self, ctx: Context) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(ctx), host="127.0.0.1", port=self.port, log_level="warning",
                                http="httptools", loop="asyncio", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def server(ctx: Context) -> Iterator[LiveServer]:
    with LiveServer(ctx) as live:
        yield live


@pytest.fixture
def tenant(ctx: Context) -> Tenant:
    return make_tenant(ctx)


@pytest.fixture
def other_tenant(ctx: Context) -> Tenant:
    return make_tenant(ctx, name="よその歯科", clinics=1)


@pytest.fixture
def api(server: LiveServer, tenant: Tenant) -> Iterator[Client]:
    with Client(server.url, tenant.token) as client:
        yield client


@pytest.fixture
def patient(api: Client, tenant: Tenant) -> dict[str, object]:
    return api.create_patient(tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ",
                              birth_date="1980-04-01", sex="male")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real media made once per session: small H.264 clips, photos, and broken files."""
    from chairside.mediafile import generate
    d = tmp_path_factory.mktemp("media")
    generate.make_video(d / "clip.mp4", seconds=1.0, width=640, height=360, fps=30)
    generate.make_video(d / "clip2.mp4", seconds=1.0, width=640, height=360, fps=30, label="two")
    generate.make_jpeg(d / "photo.jpg", width=800, height=600)
    generate.make_heic(d / "photo.heic", width=640, height=480)
    generate.make_png(d / "photo.png", width=320, height=240)
    data = (d / "clip.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "jpeg-named.mp4").write_bytes((d / "photo.jpg").read_bytes())
    (d / "notes.txt").write_text("歯科メモ: これは写真ではありません\n" * 50)
    return d


def sign_in(server: LiveServer, viewer: Viewer, device: str = "Reception PC", takeover: bool = False) -> str:
    import httpx

    r = httpx.post(f"{server.url}/api/v1/sessions", json={"login": viewer.login, "password": viewer.password,
                                                           "device_name": device, "takeover": takeover})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


@pytest.fixture
def admin(ctx: Context, tenant: Tenant) -> Viewer:
    return make_account(ctx, tenant, "admin-a", admin=True)


@pytest.fixture
def viewer(ctx: Context, tenant: Tenant) -> Viewer:
    return make_account(ctx, tenant, "viewer-a")
