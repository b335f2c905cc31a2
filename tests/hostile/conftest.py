"""A real server process to attack, and the two figures every abuse test prints: the server's own peak memory
(VmHWM of its process, reset before each abuse by writing 5 to /proc/PID/clear_refs) and the latency of a
health check sent all along from another connection.

No timing assertions (the figures are printed and recorded in docs/benchmarks.md); the memory bound is
asserted generously: idle + 100 MB, the issue's figure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from chairside.context import build_context
from chairside.settings import Settings
from tests.conftest import free_port
from tests.factories import Tenant, Viewer, make_account, make_patient, make_tenant

ROOT = Path(__file__).resolve().parents[2]
MEMORY_BOUND_MB = 100.0


@dataclass
class Served:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    data: Path
    tenant: Tenant
    viewer: Viewer
    patient_id: str

    @property
    def station(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tenant.station_tokens[0]}"}

    def status(self, key: str) -> float:
        """A /proc/PID/status figure in MB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)

    def reset_peak(self) -> float:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        return self.status("VmRSS")

    def partial_files(self) -> list[str]:
        uploads = self.data / "uploads"
        return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`chairside cloud serve` as its own process (SQLite), seeded through the services beforehand."""
    data = tmp_path_factory.mktemp("hostile") / "data"
    settings = Settings.load(environ={}, data_dir=data)
    ctx = build_context(settings)
    tenant = make_tenant(ctx)
    viewer = make_account(ctx, tenant, "hostile-viewer")
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    ctx.db.dispose()
    port = free_port()
    env = {**os.environ, "CHAIRSIDE_BODY_TIMEOUT_S": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chairside", "cloud", "serve", "--data", str(data), "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc)
        yield Served(url, port, proc, data, tenant, viewer, str(patient.id))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@dataclass
class Figures:
    name: str
    idle_mb: float = 0.0
    peak_mb: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@contextlib.contextmanager
def measured(served: Served, name: str) -> Iterator[Figures]:
    """Run an abuse with the server's peak memory reset and a health check polling alongside; print both and
    assert the memory bound (idle + 100 MB)."""
    figures = Figures(name)
    figures.idle_mb = served.reset_peak()
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = client.get("/api/v1/health")
                figures.latencies.append(time.perf_counter() - started)
                assert response.status_code == 200
                stop.wait(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    while not figures.latencies and poller.is_alive():  # the first check before the abuse starts
        time.sleep(0.005)
    try:
        yield figures
    finally:
        while len(figures.latencies) < 5 and poller.is_alive():  # and a few while it settles
            time.sleep(0.01)
        stop.set()
        poller.join(timeout=60)
        figures.peak_mb = served.status("VmHWM")
    median = 1000 * statistics.median(figures.latencies) if figures.latencies else float("nan")
    print(f"\nABUSE {name}: server idle {figures.idle_mb:.0f} MB, peak {figures.peak_mb:.0f} MB "
          f"(+{figures.peak_mb - figures.idle_mb:.0f} MB); health p99 {figures.p99_ms:.1f} ms, median {median:.1f} ms, "
          f"{len(figures.latencies)} checks")
    assert figures.peak_mb - figures.idle_mb <= MEMORY_BOUND_MB, figures


def raw_exchange(port: int, head: bytes, body_chunks: Iterator[bytes] | None = None, *,
                 timeout: float = 30) -> tuple[int, dict[str, str], bytes, int]:
    """Send a request over a plain socket (head, then body chunks until the server stops reading or answers);
    answer (status, headers, body, bytes of the body sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        answered = threading.Event()
        received = bytearray()

        def read() -> None:
            with contextlib.suppress(OSError):
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received.extend(chunk)
                    if b"\r\n\r\n" in received:
                        head_end = received.index(b"\r\n\r\n")
                        length = next((int(line.split(b":")[1]) for line in received[:head_end].split(b"\r\n")
                                       if line.lower().startswith(b"content-length:")), 0)
                        if len(received) >= head_end + 4 + length:
                            break
            answered.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if body_chunks is not None:
            with contextlib.suppress(OSError):
                for chunk in body_chunks:
                    if answered.is_set():
                        break
                    sock.sendall(chunk)
                    sent += len(chunk)
        answered.wait(timeout)
        reader.join(timeout)
    head_bytes, _, body = bytes(received).partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/1.1 "):
        raise AssertionError(f"no HTTP answer: {bytes(received)[:200]!r}")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body, sent
