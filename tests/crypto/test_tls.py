"""TLS with certificates made by trustme: the server side (`--tls-cert/--tls-key`), HSTS and Secure
cookies, and the relay's check of the cloud's certificate. A wrong certificate, an expired one, an
old protocol and plain HTTP on the TLS port are each refused."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from typer.testing import CliRunner

from chairside.app import create_app
from chairside.cli import app as cli
from chairside.context import Context, build_context
from chairside.keys.tls import TlsError, client_context, server_options
from chairside.relay.runtime import attach
from chairside.settings import Settings
from tests.conftest import LiveServer, free_port
from tests.factories import Tenant, Viewer, make_relay_token

HEALTH = "/api/v1/health"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """TLS is the same whatever the database: these tests run on SQLite only."""
    return f"sqlite:///{tmp_path / 'chairside.db'}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files: the CA bundle, a good pair for 127.0.0.1, one for another host, an expired one, another CA's."""
    d = tmp_path_factory.mktemp("pki")
    files: dict[str, Path] = {"ca": d / "ca.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    now = datetime.now(UTC)
    leaves = {
        "good": ca.issue_cert("127.0.0.1", "localhost"),
        "other-host": ca.issue_cert("cloud.other.example"),
        "expired": ca.issue_cert("127.0.0.1", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)),
        "other-ca": trustme.CA().issue_cert("127.0.0.1"),
    }
    for name, leaf in leaves.items():
        files[f"{name}.crt"] = d / f"{name}.crt"
        files[f"{name}.key"] = d / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(files[f"{name}.crt"]))
        leaf.private_key_pem.write_to_path(str(files[f"{name}.key"]))
    return files


class TlsServer(LiveServer):
    """The real app under uvicorn with the same TLS options `serve --tls-cert/--tls-key` gives it."""

    def __init__(self, ctx: Context, tls: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(ctx), host="127.0.0.1", port=self.port, log_level="critical",
                                http="httptools", loop="asyncio", lifespan="on", **tls)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


def serve(ctx: Context, pki: dict[str, Path], name: str) -> TlsServer:
    tls = {"ssl_certfile": str(pki[f"{name}.crt"]), "ssl_keyfile": str(pki[f"{name}.key"])}
    if name == "good":
        tls = server_options(pki["good.crt"], pki["good.key"])
    return TlsServer(ctx, tls)


@pytest.fixture
def tls_server(ctx: Context, pki: dict[str, Path]) -> Iterator[LiveServer]:
    with serve(ctx, pki, "good") as live:
        yield live


def test_https_prefers_tls13_and_sends_hsts(tls_server: LiveServer, pki: dict[str, Path]) -> None:
    with httpx.Client(verify=client_context(pki["ca"])) as client:
        r = client.get(tls_server.url + HEALTH)
        assert r.status_code == 200
        assert r.headers["strict-transport-security"] == "max-age=31536000"
        assert r.extensions["network_stream"].get_extra_info("ssl_object").version() == "TLSv1.3"


def test_tls12_is_accepted_with_forward_secret_aead_only(tls_server: LiveServer, pki: dict[str, Path]) -> None:
    context = client_context(pki["ca"])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=context) as client:
        r = client.get(tls_server.url + HEALTH)
        cipher = r.extensions["network_stream"].get_extra_info("ssl_object").cipher()
    assert r.status_code == 200 and cipher[1] == "TLSv1.2" and cipher[0].startswith("ECDHE-") and "GCM" in cipher[0]
    weak = client_context(pki["ca"])
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA256:AES256-SHA")  # no forward secrecy, CBC
    with pytest.raises(httpx.ConnectError, match=r"HANDSHAKE_FAILURE|NO_SHARED_CIPHER|UNEXPECTED_EOF"):
        httpx.get(tls_server.url + HEALTH, verify=weak)


def test_tls11_is_refused_by_the_server(tls_server: LiveServer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError) as refused:
        old.wrap_socket(raw, server_hostname="127.0.0.1")
    # The server hung up on the TLS 1.1 hello (this client giving up on its own would be NO_PROTOCOLS_AVAILABLE).
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)


def test_session_cookie_is_secure_over_tls_only(ctx: Context, tls_server: LiveServer, server: LiveServer,
                                                viewer: Viewer, pki: dict[str, Path]) -> None:
    body = {"login": viewer.login, "password": viewer.password, "device_name": "Reception"}
    with httpx.Client(verify=client_context(pki["ca"])) as client:
        r = client.post(tls_server.url + "/api/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    assert "secure" in r.headers["set-cookie"].lower()
    plain = httpx.post(server.url + "/api/v1/sessions", json={**body, "takeover": True})
    assert plain.status_code == 201, plain.text
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert "strict-transport-security" not in plain.headers


@pytest.mark.parametrize(("cert", "why"), [("other-host", "match"), ("other-ca", "unable to get local issuer"),
                                            ("expired", "expired")])
def test_a_wrong_or_expired_certificate_is_refused(ctx: Context, pki: dict[str, Path], cert: str, why: str) -> None:
    with serve(ctx, pki, cert) as live, pytest.raises(httpx.ConnectError, match=f"CERTIFICATE_VERIFY_FAILED.*{why}"):
        httpx.get(live.url + HEALTH, verify=client_context(pki["ca"]))


def test_plain_http_on_the_tls_port_gets_nothing(tls_server: LiveServer) -> None:
    with pytest.raises(httpx.HTTPError):  # no answer at all: the TLS server hangs up on a plain request
        httpx.get(f"http://127.0.0.1:{tls_server.port}{HEALTH}", timeout=10)


def test_the_server_refuses_to_start_with_a_bad_pair(pki: dict[str, Path]) -> None:
    with pytest.raises(TlsError, match="expired"):
        server_options(pki["expired.crt"], pki["expired.key"])
    with pytest.raises(TlsError, match="do not match"):
        server_options(pki["good.crt"], pki["other-ca.key"])
    with pytest.raises(TlsError, match="both"):
        server_options(pki["good.crt"], None)
    runner = CliRunner()
    for args, why in [(["--tls-cert", str(pki["expired.crt"]), "--tls-key", str(pki["expired.key"])], "expired"),
                      (["--tls-cert", str(pki["good.crt"])], "both"),
                      (["--tls-cert", str(pki["good.crt"]), "--tls-key", str(pki["other-ca.key"])], "do not match")]:
        for command in (["cloud", "serve"], ["relay", "serve", "--upstream", "https://x", "--token", "t"]):
            result = runner.invoke(cli, [*command, *args])
            assert result.exit_code == 2 and why in result.output, (command, args, result.output)


def test_the_relay_verifies_the_clouds_certificate(ctx: Context, tenant: Tenant, tls_server: LiveServer,
                                                    pki: dict[str, Path], tmp_path: Path) -> None:
    token = make_relay_token(ctx, tenant.clinic_ids[0])
    for ca_bundle, works in [(str(pki["ca"]), True), (None, False)]:
        settings = Settings.load(environ={}, data_dir=tmp_path / f"relay-{works}", ca_bundle=ca_bundle)
        rctx = build_context(settings, role="relay")
        try:
            attach(rctx, tls_server.url, token)
            assert rctx.relay is not None
            with rctx.relay.upstream.sync_client() as client:
                if works:
                    assert client.get(HEALTH).status_code == 200
                else:  # the system's roots do not know the test CA: refused, never sent
                    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                        client.get(HEALTH)
        finally:
            rctx.db.dispose()


def test_a_missing_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="no CA bundle file"):
        client_context(tmp_path / "nope.pem")


def test_the_relays_clients_never_follow_a_redirect(ctx: Context, tenant: Tenant, tmp_path: Path) -> None:
    """A redirect from https:// to http:// (a downgrade) is an error answer to the relay, never followed."""
    settings = Settings.load(environ={}, data_dir=tmp_path / "relay")
    rctx = build_context(settings, role="relay")
    try:
        attach(rctx, "https://cloud.example", make_relay_token(ctx, tenant.clinic_ids[0]))
        assert rctx.relay is not None
        with rctx.relay.upstream.sync_client() as client:
            assert client.follow_redirects is False
        assert rctx.relay.upstream.async_client().follow_redirects is False
    finally:
        rctx.db.dispose()
