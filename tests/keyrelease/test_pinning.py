"""Station → relay TLS with the relay's certificate pinned at enrollment (client/_pin.py, agent/relaykey.py):
the pinned certificate is accepted; another certificate, even from the same CA for the same address (a rogue
box on the LAN), is refused in the handshake before anything is sent; plain HTTP is refused (a downgrade)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from typer.testing import CliRunner

from chairside.agent import reasons
from chairside.agent.relaykey import load, resolve_pin
from chairside.app import create_app
from chairside.cli import app as cli
from chairside.client import Client, PinError, fetch_fingerprint
from chairside.client._pin import is_pin_mismatch, pinned_context
from chairside.context import Context, build_context
from chairside.keys.release import cert_fingerprint
from chairside.keys.tls import client_context
from chairside.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.factories import Tenant, make_tenant


class Counted:
    """The app, counting the HTTP requests that reached it."""

    def __init__(self, app: Any) -> None:
        self.app, self.requests = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


class TlsBox(LiveServer):
    def __init__(self, ctx: Context, cert: Path, key: Path) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.app = Counted(create_app(ctx))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical", http="httptools",
                                loop="asyncio", lifespan="on", ssl_certfile=str(cert), ssl_keyfile=str(key))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Context, Tenant]]:
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "data"))
    try:
        yield ctx, make_tenant(ctx, "ピン歯科", clinics=1)
    finally:
        ctx.db.dispose()


@pytest.fixture
def relay_ctx(site: tuple[Context, Tenant]) -> Iterator[Context]:
    """The same data served in the relay role (its stations and patients are there)."""
    ctx = build_context(site[0].settings, role="relay")
    try:
        yield ctx
    finally:
        ctx.db.dispose()


@pytest.fixture
def relay(relay_ctx: Context, pki: dict[str, Path]) -> Iterator[TlsBox]:
    with TlsBox(relay_ctx, pki["relay.crt"], pki["relay.key"]) as box:
        yield box


@pytest.fixture
def rogue(relay_ctx: Context, pki: dict[str, Path]) -> Iterator[TlsBox]:
    """Another box on the LAN with a certificate from the same CA, for the same address."""
    with TlsBox(relay_ctx, pki["rogue.crt"], pki["rogue.key"]) as box:
        yield box


def test_the_pinned_certificate_is_accepted(relay: TlsBox, site: tuple[Context, Tenant],
                                            pki: dict[str, Path]) -> None:
    pin = cert_fingerprint(pki["relay.crt"])
    assert fetch_fingerprint(relay.url) == pin  # what `chairside relay serve` prints is what a station sees
    with Client(relay.url, site[1].token, pin=pin) as station:
        assert station.search_patients() == []
    assert relay.app.requests == 1


def test_another_certificate_of_the_same_ca_is_refused_before_anything_is_sent(
        rogue: TlsBox, site: tuple[Context, Tenant], pki: dict[str, Path], ca: trustme.CA, tmp_path: Path) -> None:
    pin = cert_fingerprint(pki["relay.crt"])
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # Verified the ordinary way (the CA), the rogue passes: that is why the station pins the certificate.
    assert httpx.get(rogue.url + "/api/v1/health", verify=client_context(ca_file)).status_code == 200
    before = rogue.app.requests
    with Client(rogue.url, site[1].token, pin=pin) as station, pytest.raises(httpx.ConnectError) as refused:
        station.search_patients()
    assert is_pin_mismatch(refused.value)
    assert "not the one pinned at enrollment" in str(refused.value) and "なりすまし" in str(refused.value)
    assert rogue.app.requests == before  # refused in the handshake: no request, no token reached it
    ja, en = reasons.for_error(refused.value)
    assert "証明書" in ja and "pinned" in en

    async def through_asyncio() -> None:  # the same check on the asyncio path (ssl.SSLObject)
        async with httpx.AsyncClient(verify=pinned_context(pin)) as client:
            await client.get(rogue.url + "/api/v1/health")

    with pytest.raises(httpx.ConnectError, match="pinned"):
        asyncio.run(through_asyncio())
    assert rogue.app.requests == before


def test_plain_http_is_refused_once_pinned(site: tuple[Context, Tenant], pki: dict[str, Path],
                                           tmp_path: Path) -> None:
    pin = cert_fingerprint(pki["relay.crt"])
    with LiveServer(site[0]) as plain:  # the relay's address answered over plain HTTP (a downgrade)
        with pytest.raises(PinError, match="downgrade"):
            Client(plain.url, site[1].token, pin=pin)
        watch = tmp_path / "station"
        watch.mkdir()
        assert resolve_pin(watch, "https://127.0.0.1:1", pin, print) == pin.replace(":", "").lower()
        with pytest.raises(PinError, match="plain-HTTP"):
            resolve_pin(watch, plain.url, None, print)  # the agent pointed at http:// after enrollment
    with pytest.raises(PinError, match="not a SHA-256"):
        Client("https://127.0.0.1:1", site[1].token, pin="not-a-fingerprint")


def test_the_agent_pins_at_enrollment_and_refuses_a_wrong_expectation(relay: TlsBox, pki: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    watch = tmp_path / "station"
    watch.mkdir()
    wrong = cert_fingerprint(pki["rogue.crt"])
    result = CliRunner().invoke(cli, ["station", "pin", "--watch", str(watch), "--server", relay.url,
                                      "--expect", wrong])
    assert result.exit_code == 2 and "nothing recorded" in result.output
    assert load(watch) == {}
    result = CliRunner().invoke(cli, ["station", "pin", "--watch", str(watch), "--server", relay.url,
                                      "--expect", cert_fingerprint(pki["relay.crt"])])
    assert result.exit_code == 0, result.output
    # A first start without a recorded pin records what it sees (trust on first use, at enrollment) …
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    seen: list[str] = []
    assert resolve_pin(fresh, relay.url, None, seen.append) == load(fresh)["pin"]
    assert load(fresh)["pin"] == load(watch)["pin"] and "pinned" in seen[0]
    # … and afterwards the recorded pin is the one enforced, whatever answers.
    assert resolve_pin(fresh, relay.url, None, seen.append) == load(watch)["pin"]
    assert (fresh / ".chairside" / "relay.json").stat().st_mode & 0o777 == 0o600


def test_the_cloud_is_never_pinned_on_first_contact(site: tuple[Context, Tenant], pki: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """An agent pointed at the cloud (https://, verified by its CA) records no pin: the cloud's certificate is
    renewed every few months, and a pin would stop the station at the first renewal."""
    watch = tmp_path / "station"
    watch.mkdir()
    with TlsBox(site[0], pki["relay.crt"], pki["relay.key"]) as cloud:
        assert resolve_pin(watch, cloud.url, None, print) is None
    assert load(watch) == {}
