"""The cloud's line-check endpoints (api/netcheck.py): closed without a code, bounded, memory-flat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from chairside.context import Context
from chairside.db.models import NetcheckCode, utcnow
from chairside.netcheck import codes
from tests.admin_cli import run_admin
from tests.conftest import LiveServer
from tests.factories import Tenant

RUNS = "/api/v1/netcheck/runs"


def _problem(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("/" + code)
    detail: str = body["detail"]
    ja, sep, en = detail.partition(" / ")
    assert sep and ja and en  # Japanese first, then English
    return detail


@pytest.fixture
def code(ctx: Context, tenant: Tenant) -> str:
    run = run_admin(ctx, "contract", "netcheck-code", "--contract", str(tenant.contract_id))
    assert run.exit_code == 0, run.stderr
    body = run.json()
    assert set(body) >= {"code", "expires_at"}
    return str(body["code"])


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_the_admin_command_prints_a_code_once_and_refuses_an_unknown_contract(ctx: Context, tenant: Tenant) -> None:
    first = run_admin(ctx, "contract", "netcheck-code", "--contract", str(tenant.contract_id)).json()
    second = run_admin(ctx, "contract", "netcheck-code", "--contract", str(tenant.contract_id)).json()
    assert first["code"] != second["code"] and first["expires_at"].startswith("20")
    missing = run_admin(ctx, "contract", "netcheck-code", "--contract", "6d1f1e4c-0000-4000-8000-000000000000")
    assert missing.exit_code == 2 and "no contract" in missing.stderr


def test_every_endpoint_is_closed_without_a_good_code(http: httpx.Client) -> None:
    bad = {"X-Netcheck-Code": "AAAA-BBBB-CCCC"}
    _problem(http.post(RUNS, json={"minutes": 1}), 401, "bad-netcheck-code")
    _problem(http.post(RUNS, json={"minutes": 1}, headers=bad), 401, "bad-netcheck-code")
    for method, path in (("GET", "/api/v1/netcheck/ping"), ("GET", "/api/v1/netcheck/download?seconds=1"),
                         ("POST", "/api/v1/netcheck/upload")):
        _problem(http.request(method, path), 401, "bad-netcheck-code")
        _problem(http.request(method, path, headers=bad), 401, "bad-netcheck-code")


def test_a_stale_code_is_refused_with_403(http: httpx.Client, ctx: Context, code: str) -> None:
    with ctx.db.session() as s:
        row = s.query(NetcheckCode).one()
        row.expires_at = row.created_at - timedelta(seconds=1)
    detail = _problem(http.post(RUNS, json={"minutes": 1}, headers={"X-Netcheck-Code": code}), 403,
                      "netcheck-code-expired")
    assert "新しいコード" in detail and "new one" in detail


def test_measurements_need_a_started_run(http: httpx.Client, code: str) -> None:
    headers = {"X-Netcheck-Code": code}
    _problem(http.get("/api/v1/netcheck/ping", headers=headers), 403, "netcheck-run-ended")
    r = http.post(RUNS, json={"minutes": 0.5}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["runs_left"] == 4 and r.json()["max_stream_s"] == 30
    assert http.get("/api/v1/netcheck/ping", headers=headers).json() == {"ok": True}


def test_the_streams_are_bounded_by_time_and_the_upload_sink_takes_a_large_chunked_body(
        http: httpx.Client, code: str) -> None:
    headers = {"X-Netcheck-Code": code}
    assert http.post(RUNS, json={"minutes": 1}, headers=headers).status_code == 201
    assert http.get("/api/v1/netcheck/download?seconds=31", headers=headers).status_code == 422  # at most 30 s
    start = time.monotonic()
    with http.stream("GET", "/api/v1/netcheck/download?seconds=0.5", headers=headers) as r:
        assert r.status_code == 200
        got = sum(len(piece) for piece in r.iter_raw())
    assert got > 0 and time.monotonic() - start < 20  # it ended by itself

    def body() -> Iterator[bytes]:  # chunked, 24 MiB: far over the JSON body limit of other routes
        for _ in range(96):
            yield b"\x5a" * (256 * 1024)

    r = http.post("/api/v1/netcheck/upload", content=body(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["bytes"] == 96 * 256 * 1024


def test_a_used_up_code_is_refused(http: httpx.Client, ctx: Context, code: str) -> None:
    headers = {"X-Netcheck-Code": code}
    for _ in range(ctx.settings.netcheck_code_runs):
        assert http.post(RUNS, json={"minutes": 0.1}, headers=headers).status_code == 201
    _problem(http.post(RUNS, json={"minutes": 0.1}, headers=headers), 403, "netcheck-code-used")
    assert codes.admitted_cached(code)  # the runs already started still measure


def test_the_command_refuses_to_run_with_a_bad_or_stale_code_and_says_why(server: LiveServer, ctx: Context,
                                                                          code: str) -> None:
    from typer.testing import CliRunner

    from chairside.cli import app

    bad = CliRunner().invoke(app, ["netcheck", "--server", server.url, "--code", "AAAA-BBBB-CCCC", "--json"])
    assert bad.exit_code == 2 and "not right" in bad.stderr and bad.stdout == ""
    with ctx.db.session() as s:
        s.query(NetcheckCode).one().expires_at = utcnow() - timedelta(seconds=1)
    stale = CliRunner().invoke(app, ["netcheck", "--server", server.url, "--code", code, "--minutes", "0.1"])
    assert stale.exit_code == 2 and "有効期限" in stale.stderr and "expired" in stale.stderr
    unreachable = CliRunner().invoke(app, ["netcheck", "--server", "http://127.0.0.1:9", "--code", code])
    assert unreachable.exit_code == 2 and "Cannot reach the server" in unreachable.stderr
    nonsense = CliRunner().invoke(app, ["netcheck", "--server", "ftp://x", "--code", code])
    assert nonsense.exit_code == 2 and "http:// or https://" in nonsense.stderr
