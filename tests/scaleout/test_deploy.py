"""`chairside deploy nginx-config`: the file nginx accepts, refusals an operator can act on, TLS as promised."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import trustme
from typer.testing import CliRunner

from chairside.cli import app
from chairside.context import build_context
from chairside.deploy.nginx import NginxOptions, render, upstream_address
from chairside.settings import Settings
from tests.conftest import LiveServer
from tests.scaleout.cluster import CHAIRSIDE, NGINX, Nginx

needs_nginx = pytest.mark.skipif(not NGINX.exists(), reason="Debian's nginx is not installed")


@pytest.mark.parametrize(("url", "address"), [
    ("http://127.0.0.1:8001", "127.0.0.1:8001"), ("10.0.0.5:9000", "10.0.0.5:9000"),
    ("http://app.internal", "app.internal:80"), ("http://[::1]:8001/", "[::1]:8001"),
])
def test_upstream_addresses(url: str, address: str) -> None:
    assert upstream_address(url) == address


@pytest.mark.parametrize("url", ["https://10.0.0.5:8001", "http://x:1/path", "http://x:1/?a=b", "ftp://x"])
def test_an_upstream_that_is_not_an_app_servers_address_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="upstream is an app server"):
        upstream_address(url)


def test_the_command_refuses_with_a_message_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "nginx-config", "--listen", "8080", "--upstream", "ftp://x"])
    assert result.exit_code == 2 and "upstream" in result.output
    half = CliRunner().invoke(app, ["deploy", "nginx-config", "--listen", "8080", "--upstream", "127.0.0.1:1",
                                    "--tls-cert", str(tmp_path / "c.pem")])
    assert half.exit_code == 2 and "TLS" in half.output
    with pytest.raises(ValueError, match="at least one upstream"):
        render(NginxOptions(listen=8080, upstreams=[]))
    with pytest.raises(ValueError, match="not usable in an nginx configuration"):
        render(NginxOptions(listen=8080, upstreams=["127.0.0.1:1"], blob_dir=Path('/srv/"; evil')))


def test_without_data_there_is_no_byte_offload(tmp_path: Path) -> None:
    text = render(NginxOptions(listen=8080, upstreams=["127.0.0.1:8001", "127.0.0.1:8002"]))
    assert "X-Accel" not in text and "_chairside" not in text
    assert text.count("server 127.0.0.1:800") == 2 and "least_conn" in text


@needs_nginx
def test_nginx_accepts_the_file_and_keeps_everything_in_its_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    made = subprocess.run([str(CHAIRSIDE), "deploy", "nginx-config", "--listen", "18080", "--upstream",
                           "http://127.0.0.1:8001", "--upstream", "127.0.0.1:8002", "--data", str(tmp_path / "data"),
                           "--user", "root"], capture_output=True, text=True, check=True)
    conf = prefix / "nginx.conf"
    conf.write_text(made.stdout)
    ok = subprocess.run([str(NGINX), "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    text = conf.read_text()
    assert str((tmp_path / "data" / "blobs").resolve()) in text
    for line in ("pid nginx.pid;", "error_log logs/error.log", "access_log logs/access.log;",
                 "client_body_temp_path tmp/", "proxy_temp_path tmp/"):
        assert line in text
    assert "/etc/nginx" not in text and "/var/" not in text


@needs_nginx
def test_tls_offers_1_3_and_accepts_1_2(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "data"))  # SQLite: TLS is nginx's part
    server = LiveServer(ctx).__enter__()
    nginx = Nginx(tmp_path / "tls", [server.url], None, tls=(cert_file, key_file))
    nginx.start()
    try:
        url = f"https://127.0.0.1:{nginx.port}/api/v1/health"
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with httpx.Client(verify=context) as client:
            r = client.get(url)
            assert r.status_code == 200
            assert r.headers["strict-transport-security"].startswith("max-age=")
            stream = r.extensions["network_stream"]
            assert stream.get_extra_info("ssl_object").version() == "TLSv1.3"
        only_12 = ssl.create_default_context()
        ca.configure_trust(only_12)
        only_12.maximum_version = ssl.TLSVersion.TLSv1_2
        with httpx.Client(verify=only_12) as client:
            assert client.get(url).status_code == 200
        # Below 1.2: this client's OpenSSL refuses TLS 1.1 by itself, so the file is what can be checked.
        assert "ssl_protocols TLSv1.2 TLSv1.3;" in nginx.conf.read_text()
    finally:
        nginx.stop()
        server.__exit__(None, None, None)
        ctx.db.dispose()
