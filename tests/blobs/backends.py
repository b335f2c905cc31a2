"""Test helpers: a real S3-protocol server on loopback, and views into each backend.

A view answers the two questions the contract asks of any backend after a
failed write: what is stored under any name at all, and what unfinished work
(temp files, multipart uploads) was left behind.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config

from chairside.blobs import FilesystemBlobStore, S3BlobStore

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


class BackendView(Protocol):
    kind: str

    def stored_names(self) -> list[str]:
        """Every name the backend holds outside its temp area, blob-shaped or not."""
        ...

    def unfinished(self) -> list[str]:
        """Temp files or unfinished multipart uploads."""
        ...


@dataclass
class FilesystemView:
    store: FilesystemBlobStore
    kind: str = "filesystem"

    def stored_names(self) -> list[str]:
        root = self.store.root
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if not p.is_dir() and self.store.temp_dir not in p.parents
        )

    def unfinished(self) -> list[str]:
        return sorted(p.name for p in self.store.temp_dir.iterdir())


@dataclass
class S3View:
    store: S3BlobStore
    admin: Any
    kind: str = "s3"

    def stored_names(self) -> list[str]:
        response = self.admin.list_objects_v2(Bucket=self.store.bucket)
        return sorted(item["Key"] for item in response.get("Contents", ()))

    def unfinished(self) -> list[str]:
        response = self.admin.list_multipart_uploads(Bucket=self.store.bucket)
        return sorted(item["Key"] for item in response.get("Uploads", ()))


def s3_client(endpoint: str, session: boto3.session.Session | None = None) -> Any:
    """A boto3 S3 client for ``endpoint`` with dummy credentials given explicitly.

    Reusing ``session`` makes a client in milliseconds instead of ~0.1 s (a new
    session parses the S3 service model again).
    """
    return (session or boto3.session.Session()).client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


class MotoServer:
    """moto's S3 server in a child process on a free loopback port.

    A subprocess rather than moto's in-process ThreadedMotoServer: the server
    then neither shares moto's global state with in-process ``mock_aws`` users
    nor runs under pytest's ``filterwarnings = error``.
    """

    def __init__(self, log_path: Path, *, start_timeout_s: float = 30.0) -> None:
        self._log_path = log_path
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self) -> None:
        for _ in range(3):  # the free port may be taken before the server binds it
            port = _free_port()
            with open(self._log_path, "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.endpoint = f"http://127.0.0.1:{port}"
            if self._wait_until_answering(port):
                return
            self.stop()
        log_tail = self._log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"moto server did not start; its log ends with:\n{log_tail}")

    def _wait_until_answering(self, port: int) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _request(port, "GET", "/moto-api/") is not None:
                return True
            time.sleep(0.05)
        return False

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset endpoint)."""
        port = int(self.endpoint.rsplit(":", 1)[1])
        if _request(port, "POST", "/moto-api/reset") != 200:
            raise RuntimeError("moto server did not accept a reset")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _request(port: int, method: str, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


class SeededStream:
    """``size`` pseudo-random bytes from ``seed``, produced in irregular pieces.

    Regenerated on demand, so a test can stream tens of MiB without holding them.
    """

    def __init__(self, size: int, seed: int, *, max_piece: int = 1_500_000) -> None:
        self.size = size
        self.seed = seed
        self.max_piece = max_piece
        hasher = hashlib.sha256()
        for piece in self.pieces():
            hasher.update(piece)
        self.sha256 = hasher.hexdigest()

    def pieces(self) -> Iterator[bytes]:
        rng = random.Random(self.seed)
        remaining = self.size
        while remaining:
            piece = rng.randbytes(min(remaining, rng.randint(1, self.max_piece)))
            remaining -= len(piece)
            yield piece

    def slice(self, start: int, length: int) -> bytes:
        wanted = bytearray()
        offset = 0
        for piece in self.pieces():
            lo, hi = max(start, offset), min(start + length, offset + len(piece))
            if lo < hi:
                wanted += piece[lo - offset : hi - offset]
            offset += len(piece)
            if offset >= start + length:
                break
        return bytes(wanted)
