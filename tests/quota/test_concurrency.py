"""Twenty uploads finishing at once across two real server processes sharing one database and data folder:
the stored-video counter stays exact and the threshold crossed on the way gives exactly one notice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import Client
from chairside.context import Context
from chairside.mediafile import generate
from chairside.quota import usage
from tests.conftest import free_port
from tests.factories import Tenant
from tests.quota.helpers import HOUR_MS, counter, notices, set_counter

UPLOADS = 20


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Twenty different short recordings (0.5 s to 2.4 s)."""
    d = tmp_path_factory.mktemp("clips")
    paths = []
    for i in range(UPLOADS):
        path = d / f"rec-{i:02d}.mp4"
        generate.make_video(path, seconds=0.5 + i * 0.1, width=320, height=180, fps=30, label=str(i), seed=i)
        paths.append(path)
    return paths


def _serve(ctx: Context, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAIRSIDE_")}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "chairside", "cloud", "serve", "--data", str(ctx.settings.data_dir),
             "--database-url", ctx.settings.database_url, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )


@pytest.fixture
def two_servers(ctx: Context, tmp_path: Path) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    procs = [_serve(ctx, port, tmp_path / f"server-{i}.log") for i, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        deadline = time.monotonic() + 60
        for url, proc in zip(urls, procs, strict=True):
            while True:
                assert proc.poll() is None, (tmp_path / "server-0.log").read_text()
                try:
                    if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "a server did not start"
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_twenty_uploads_finishing_at_once_across_two_server_processes_leave_the_count_exact(
    ctx: Context, tenant: Tenant, clips: list[Path], two_servers: list[str]
) -> None:
    base = 80 * HOUR_MS - 10_000  # 10 s below 80 %: the uploads cross it somewhere in the middle
    set_counter(ctx, tenant.contract_id, base)
    with Client(two_servers[0], tenant.token) as api:
        patient = api.create_patient(tenant.clinic_ids[0], "00042", "佐藤 健一", "サトウ ケンイチ")
    barrier = threading.Barrier(UPLOADS)
    items: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def upload(i: int) -> None:
        try:
            with Client(two_servers[i % 2], tenant.token, timeout=120) as api:
                barrier.wait()
                item = api.upload(clips[i], patient["id"], max_retries=5, retry_delay=0.2)
            with lock:
                items.append(item)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(UPLOADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({i["id"] for i in items}) == UPLOADS and all(i["kind"] == "video" for i in items)
    added = sum(usage.video_ms(i["duration_s"]) for i in items)
    assert added > 10_000
    assert counter(ctx, tenant.contract_id) == base + added
    assert notices(ctx, tenant.contract_id) == [(80, 1)]
