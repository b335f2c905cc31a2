"""Stateless servers on S3: real `chairside cloud serve` processes, each with its own empty data folder, sharing
only PostgreSQL and a real S3 server (SeaweedFS).

- An upload begun on server A, which is SIGKILLed in the middle of a PATCH, is finished on server B: exactly
  one item, with the file's SHA-256, readable from either server.
- The server's peak memory (VmHWM) does not grow with the size of an upload.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from chairside.context import build_context
from chairside.settings import Settings
from tests.conftest import scratch_pg_database
from tests.factories import make_patient, make_tenant
from tests.s3.helpers import blob_url, fresh_bucket, padded_clip, staged_objects, unfinished_multipart
from tests.scaleout.cluster import AppServer
from tests.seaweed import SeaweedS3, seaweed_s3  # noqa: F401  (the fixture)
from tests.uploads.helpers import TUS, create, head, patch

pytestmark = [pytest.mark.postgres]

AUTH = "Authorization"


@dataclass
class Setup:
    root: Path
    database_url: str
    blob_url: str
    bucket: str
    env: dict[str, str]
    token: str
    patient_id: str

    def server(self, name: str) -> AppServer:
        data = self.root / name
        data.mkdir()
        return AppServer(data, self.database_url, blob_url=self.blob_url, env=self.env, name=name)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, seaweed_s3: SeaweedS3) -> Iterator[Setup]:  # noqa: F811
    root = tmp_path_factory.mktemp("s3servers")
    bucket = fresh_bucket(seaweed_s3)
    with scratch_pg_database() as url:
        ctx = build_context(Settings.load(environ={}, data_dir=root / "seed", database_url=url))
        tenant = make_tenant(ctx)
        patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
        ctx.db.dispose()
        yield Setup(root, url, blob_url(seaweed_s3, bucket), bucket, seaweed_s3.env(), tenant.token, str(patient.id))


def _items(base: str, s: Setup) -> list[dict[str, object]]:
    r = httpx.get(f"{base}/api/v1/patients/{s.patient_id}/media", headers={AUTH: f"Bearer {s.token}"}, timeout=60)
    items: list[dict[str, object]] = r.json()["items"]
    return items


def _vm(pid: int, field: str) -> int:
    """A /proc/PID/status memory field, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_an_upload_begun_on_a_killed_server_is_finished_on_another(
    setup: Setup, seaweed_s3: SeaweedS3, media_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    data = padded_clip(media_dir / "clip.mp4", tmp_path / "long.mp4", 40 << 20).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    a, b = setup.server("a").start(), setup.server("b").start()
    try:
        r = create(a.url, setup.token, len(data), setup.patient_id, filename="killed.mp4")
        assert r.status_code == 201, r.text
        path = r.headers["Location"]
        first = 20 << 20  # two 8 MiB parts and a 4 MiB tail, committed
        assert patch(a.url + path, setup.token, 0, data[:first]).status_code == 204
        # A second PATCH to A: 12 MiB arrive (a part goes up, uncommitted), then A dies at once.
        host = urlsplit(a.url)
        with socket.create_connection((host.hostname, host.port)) as sock:
            sock.sendall((f"PATCH {path} HTTP/1.1\r\nHost: {host.netloc}\r\nAuthorization: Bearer {setup.token}\r\n"
                          f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {first}\r\nContent-Length: {len(data) - first}\r\n"
                          "Content-Type: application/offset+octet-stream\r\n\r\n").encode())
            sock.sendall(data[first:first + (12 << 20)])
            time.sleep(1.5)
            a.kill()
        # B has its own empty data folder: what it knows comes from PostgreSQL and the bucket.
        assert not any(p.is_file() and p.stat().st_size for p in (setup.root / "b").rglob("*.part"))
        at = int(head(b.url + path, setup.token).headers["Upload-Offset"])
        assert at == first  # the killed PATCH never committed: its bytes are not acknowledged
        done = patch(b.url + path, setup.token, at, data[at:])
        assert done.status_code == 204, done.text
        assert int(done.headers["Upload-Offset"]) == len(data)
        mine = [i for i in _items(b.url, setup) if i["filename"] == "killed.mp4"]
        assert len(mine) == 1 and mine[0]["sha256"] == sha
        got = httpx.get(f"{b.url}/api/v1/media/{mine[0]['id']}/content", headers={AUTH: f"Bearer {setup.token}"},
                        timeout=60)
        assert hashlib.sha256(got.content).hexdigest() == sha
        # The completed upload answers the same on a retry, and nothing is left staged.
        assert head(b.url + path, setup.token).headers["Upload-Offset"] == str(len(data))
        assert staged_objects(seaweed_s3, setup.bucket) == [] and unfinished_multipart(seaweed_s3, setup.bucket) == []
    finally:
        a.kill()
        b.stop()


def test_server_memory_stays_flat_on_a_large_upload(setup: Setup, media_dir: Path, tmp_path: Path) -> None:
    server = setup.server("rss").start()
    try:
        small = padded_clip(media_dir / "clip.mp4", tmp_path / "warm.mp4", 9 << 20).read_bytes()
        r = create(server.url, setup.token, len(small), setup.patient_id, filename="warm.mp4")
        assert patch(server.url + r.headers["Location"], setup.token, 0, small).status_code == 204  # warm up
        before = _vm(server.pid, "VmHWM")
        big = padded_clip(media_dir / "clip.mp4", tmp_path / "big.mp4", 128 << 20)
        size = big.stat().st_size

        def body() -> Iterator[bytes]:
            with big.open("rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        r = create(server.url, setup.token, size, setup.patient_id, filename="big-rss.mp4")
        done = httpx.patch(server.url + r.headers["Location"], content=body(), timeout=300, headers={
            **TUS, AUTH: f"Bearer {setup.token}", "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream", "Content-Length": str(size)})
        assert done.status_code == 204, done.text
        after = _vm(server.pid, "VmHWM")
        growth = after - before
        print(f"VmHWM before {before >> 20} MiB, after a {size >> 20} MiB upload {after >> 20} MiB")
        assert growth < 48 << 20, f"peak memory grew by {growth >> 20} MiB on a {size >> 20} MiB upload"
        assert len([i for i in _items(server.url, setup) if i["filename"] == "big-rss.mp4"]) == 1
    finally:
        server.stop()
