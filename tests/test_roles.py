"""The role policy (roles.py): what differs between cloud, relay and mirror is decided there, and only there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

import chairside
from chairside.app import create_app
from chairside.context import Context, build_context
from chairside.roles import CLOUD, MIRROR, RELAY, ROLES, role_named
from chairside.settings import Settings

SRC = Path(chairside.__file__).parent


def test_no_code_compares_the_process_role_to_a_name() -> None:
    """Behaviour asks the policy a named question (ctx.role.queues_writes_upstream), so a new role touches no route."""
    offenders = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bctx\.role\s*(==|!=|in\b)|\brole\.name\s*(==|!=|in\b)", line)
    ]
    assert offenders == []


def test_role_named_knows_the_three_roles_and_refuses_others() -> None:
    assert [role_named(n) for n in ("cloud", "relay", "mirror")] == [CLOUD, RELAY, MIRROR]
    assert set(ROLES) == {"cloud", "relay", "mirror"}
    with pytest.raises(ValueError, match="unknown role 'edge'"):
        role_named("edge")


def test_the_relay_is_the_only_role_that_queues_upstream_and_the_mirror_the_only_read_only_one() -> None:
    assert [r.name for r in ROLES.values() if r.queues_writes_upstream] == ["relay"]
    assert [r.name for r in ROLES.values() if r.read_only] == ["mirror"]
    assert [r.name for r in ROLES.values() if r.sends_notices] == ["cloud"]
    assert RELAY.clock_node is None and CLOUD.clock_node == MIRROR.clock_node == "cloud"


@pytest.fixture
def mirror(settings: Settings) -> Iterator[Context]:
    ctx = build_context(settings, role="mirror")
    yield ctx
    ctx.db.dispose()


def test_a_read_only_role_refuses_every_write_with_a_problem_and_still_reads(mirror: Context) -> None:
    async def visit() -> None:
        transport = httpx.ASGITransport(app=create_app(mirror))
        async with httpx.AsyncClient(transport=transport, base_url="http://mirror") as client:
            health = await client.get("/api/v1/health")
            assert health.status_code == 200 and health.json()["role"] == "mirror"
            for method, path in (("POST", "/api/v1/patients"), ("PATCH", "/api/v1/uploads/abc"),
                                 ("DELETE", "/api/v1/media/00000000-0000-0000-0000-000000000000"),
                                 ("POST", "/api/v1/sessions")):
                r = await client.request(method, path, json={})
                assert r.status_code == 503, (method, path)
                assert r.headers["content-type"].startswith("application/problem+json")
                body = r.json()
                assert body["type"].endswith("/read-only") and body["status"] == 503
                assert body["detail"].startswith("現在は予備サイト")  # Japanese first, English after
                assert "standby copy" in body["detail"]
                assert r.headers["retry-after"] == "300"

    anyio.run(visit)


def test_the_app_mounts_what_the_role_serves(settings: Settings) -> None:
    cloud = build_context(settings)
    relay = build_context(settings, role="relay", upgrade=False)
    try:
        cloud_app, relay_app = create_app(cloud), create_app(relay)
        cloud_paths, relay_paths = set(cloud_app.openapi()["paths"]), set(relay_app.openapi()["paths"])
        cloud_page, relay_page = (anyio.run(_get_page, app) for app in (cloud_app, relay_app))
    finally:
        cloud.db.dispose()
        relay.db.dispose()
    assert "/api/v1/sessions" in cloud_paths and "/api/v1/sessions" in relay_paths  # the viewer on the LAN
    assert "/api/v1/relay/ops" in cloud_paths and "/api/v1/relay/ops" not in relay_paths
    assert {"/api/v1/patients", "/api/v1/uploads/", "/api/v1/relay/status"} <= relay_paths
    assert (cloud_page, relay_page) == (200, 200)  # the viewer's page, at the cloud and on the clinic's LAN
    assert "/api/v1/accounts" not in relay_paths  # accounts are managed at the cloud only


async def _get_page(app: FastAPI) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server") as client:
        return (await client.get("/")).status_code
