"""Crashes and full disks: nothing acknowledged is lost, nothing half-written is kept."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import Client
from chairside.context import Context, build_context
from chairside.settings import Settings
from tests.conftest import LiveServer, Tenant, free_port, make_tenant
from tests.uploads.helpers import create, head, offset, patch


def _serve(data: Path, database_url: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chairside", "cloud", "serve", "--data", str(data), "--port", str(port),
         "--database-url", database_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _stream_then_die(url: str, token: str, at: int, data: bytes, proc: subprocess.Popen[bytes]) -> None:
    """Send a PATCH body slowly and kill -9 the server halfway through it."""
    parts = httpx.URL(url)
    request = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.host}:{parts.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {at}\r\nContent-Length: {len(data)}\r\n"
        "Content-Type: application/offset+octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.host, parts.port)) as sock:
        sock.sendall(request)
        half = len(data) // 2
        for i in range(0, half, 16_384):
            sock.sendall(data[i:i + 16_384])
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with contextlib.suppress(OSError):
            sock.sendall(data[half:])


def test_kill_9_mid_upload_loses_nothing_acknowledged_and_resumes(
    ctx: Context, tenant: Tenant, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(ctx.settings.data_dir, ctx.settings.database_url, port)
    try:
        with Client(base, tenant.token) as chair:
            p = chair.create_patient(tenant.clinic_ids[0], "1", "清水 麻衣", "シミズ マイ")
            photo = chair.upload(media_dir / "photo.jpg", p["id"])  # acknowledged before the crash
        url = base + create(base, tenant.token, len(data), p["id"]).headers["Location"]
        assert patch(url, tenant.token, 0, data[:20_000]).status_code == 204  # acknowledged: 20,000
        _stream_then_die(url, tenant.token, 20_000, data[20_000:], proc)
        proc = _serve(ctx.settings.data_dir, ctx.settings.database_url, port)
        kept = offset(url, tenant.token)
        assert kept >= 20_000  # never less than acknowledged
        assert patch(url, tenant.token, kept, data[kept:]).status_code == 204
        with Client(base, tenant.token) as chair:
            items = {m["id"]: m for m in chair.list_media(p["id"])}
            assert photo["id"] in items
            video = next(m for m in items.values() if m["kind"] == "video")
            assert video["sha256"] == hashlib.sha256(data).hexdigest()
            assert b"".join(chair.iter_content(video["id"])) == data
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs), so the disk really fills up."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        if os.environ.get("CHAIRSIDE_REQUIRE_TMPFS") == "1":  # CI sets it (.ci/run), as CHAIRSIDE_REQUIRE_NETNS
            pytest.fail("a small tmpfs is required for the full-disk test (CHAIRSIDE_REQUIRE_TMPFS=1): run as root")
        pytest.skip("cannot mount a small tmpfs here (needs root; CHAIRSIDE_REQUIRE_TMPFS=1 makes this a failure)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_answers_507_keeps_what_was_stored_and_keeps_serving(
    small_disk: Path, tmp_path: Path, database_url: str, media_dir: Path
) -> None:
    settings = Settings.load(environ={}, data_dir=small_disk, database_url=database_url)
    ctx = build_context(settings)
    tenant = make_tenant(ctx)
    big = os.urandom(6 << 20)
    try:
        with LiveServer(ctx) as server, Client(server.url, tenant.token) as chair:
            p: dict[str, Any] = chair.create_patient(tenant.clinic_ids[0], "1", "森 優子", "モリ ユウコ")
            photo = chair.upload(media_dir / "photo.jpg", p["id"])
            url = server.url + create(server.url, tenant.token, len(big), p["id"], str(uuid.uuid4())).headers[
                "Location"]
            r = patch(url, tenant.token, 0, big)
            assert r.status_code == 507
            assert r.headers["content-type"] == "application/problem+json"
            assert "storage is full" in r.json()["detail"]
            assert offset(url, tenant.token) == 0  # nothing half-written was acknowledged
            assert b"".join(chair.iter_content(photo["id"])) == (media_dir / "photo.jpg").read_bytes()
            assert chair.search_patients("もり")[0]["id"] == p["id"]
            assert httpx.delete(url, headers={"Authorization": f"Bearer {tenant.token}",
                                              "Tus-Resumable": "1.0.0"}).status_code == 204
            assert head(url, tenant.token).status_code == 404
            again = chair.upload(media_dir / "photo.png", p["id"])  # space is free again
            assert again["kind"] == "image"
    finally:
        ctx.db.dispose()
