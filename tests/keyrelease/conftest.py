"""Fixtures for the relay box's key release and the stations' pin (keys/release.py, relay/keyboot.py,
client/_pin.py, agent/relaykey.py): a cloud with a master key in this process, a relay token, trustme
certificates, and `chairside relay serve` in a subprocess (locked boots need the real process)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme
from typer.testing import CliRunner

from chairside.cli import app as cli
from chairside.context import Context, build_context
from chairside.keys import MasterKey
from chairside.settings import Settings
from chairside.tenancy.service import create_relay
from tests.conftest import LiveServer, free_port
from tests.factories import Tenant, make_tenant

BIN = Path(sys.executable).parent


@dataclass
class Cloud:
    ctx: Context
    server: LiveServer
    tenant: Tenant
    relay_id: uuid.UUID
    relay_token: str
    key_file: Path

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    """The cloud (SQLite, a master key outside its data folder) serving on loopback, one clinic, a relay."""
    keys = tmp_path / "cloud-keys"
    keys.mkdir(mode=0o700)
    key = MasterKey.create(keys / "master.key")
    settings = Settings.load(environ={}, data_dir=tmp_path / "cloud", master_key_file=key.path)
    ctx = build_context(settings)
    try:
        tenant = make_tenant(ctx, "鍵テスト歯科", clinics=1)
        relay, token = create_relay(ctx, tenant.clinic_ids[0], "本院 relay")
        with LiveServer(ctx) as server:
            yield Cloud(ctx, server, tenant, relay.id, token, keys / "master.key")
    finally:
        ctx.db.dispose()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The relay's certificate, and another for the same address from the same CA (a rogue box's)."""
    d = tmp_path_factory.mktemp("relay-pki")
    files: dict[str, Path] = {}
    for name in ("relay", "rogue"):
        leaf = ca.issue_cert("127.0.0.1", "relay.clinic.lan")
        files[f"{name}.crt"] = d / f"{name}.crt"
        files[f"{name}.key"] = d / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(files[f"{name}.crt"]))
        leaf.private_key_pem.write_to_path(str(files[f"{name}.key"]))
    return files


def seal_key(cloud: Cloud, data: Path, upstream: str | None = None) -> dict[str, str]:
    """`chairside relay seal-key` for a new relay data folder (a new master key, stored nowhere in the clear)."""
    result = CliRunner().invoke(cli, ["relay", "seal-key", "--data", str(data), "--upstream", upstream or cloud.url,
                                      "--token", cloud.relay_token], env={"CHAIRSIDE_MASTER_KEY_FILE": ""})
    assert result.exit_code == 0, result.output
    import json

    body: dict[str, str] = json.loads(result.stdout)
    return body


@dataclass
class RelayBox:
    """`chairside relay serve` in a subprocess, with TLS when given a certificate."""

    data: Path
    upstream: str
    token: str
    tls: tuple[Path, Path] | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data.parent / f"relay-{self.port}.log"

    def launch(self) -> RelayBox:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAIRSIDE_")}
        env.update({"CHAIRSIDE_RELAY_FEED_WAIT_S": "1", "CHAIRSIDE_RELAY_MIN_FREE_BYTES": "0", **self.env})
        args = [str(BIN / "chairside"), "relay", "serve", "--data", str(self.data), "--upstream", self.upstream,
                "--token", self.token, "--host", "127.0.0.1", "--port", str(self.port)]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        return self

    def health(self) -> httpx.Response | None:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.url + "/api/v1/health", timeout=3, verify=False)  # noqa: S501 — status only
        return None

    def wait_status(self, status: int, timeout: float = 60.0) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited with {self.proc.returncode}:\n{self.output()}")
            r = self.health()
            if r is not None and r.status_code == status:
                return r
            time.sleep(0.1)
        raise AssertionError(f"the relay never answered {status}:\n{self.output()}")

    def exit_code(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def boxes() -> Iterator[list[RelayBox]]:
    """Relay processes started by a test, stopped after it."""
    made: list[RelayBox] = []
    yield made
    for box in made:
        box.stop()


def dead_url() -> str:
    """An address where nothing listens: the cloud as a relay sees it with the internet down."""
    return f"http://127.0.0.1:{free_port()}"
