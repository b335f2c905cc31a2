"""Two sites as real processes: `chairside cloud serve` (the primary) and `chairside mirror serve`.

Each runs in its own session (process group), so a SIGKILL of the group takes the primary's
Litestream child with it, as a site lost to a fire would. Shared by tests/mirror and bench/mirror.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

BIN = Path(sys.executable).parent
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CHAIRSIDE_")}


def chairside(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(BIN / "chairside"), *args], capture_output=True, text=True, env=_env(), timeout=300,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"chairside {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


@dataclass
class Site:
    """One server process on a data folder."""

    data: Path
    port: int
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Site:
        log_path = self.data.parent / f"{self.data.name}-{len(self.logs)}.log"
        self.logs.append(log_path)
        self.data.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([str(BIN / "chairside"), *self.args, "--data", str(self.data),
                                          "--host", "127.0.0.1", "--port", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        wait_for(self.up, f"{self.args[0]} serve on {self.port} ({log_path})", timeout=60)
        return self

    def up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the server exited: {self.log()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200
        return False

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/api/v1/health", timeout=5).json()
        return body

    def role(self) -> str | None:
        """The role its health shows, None while it does not answer (a mirror restarting as the cloud)."""
        try:
            return str(self.health()["role"]) if self.up() else None
        except httpx.HTTPError:
            return None

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def kill9(self) -> None:
        """SIGKILL to the whole process group: the app and its Litestream child, at once."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


def cloud_site(data: Path, port: int, database_url: str | None = None) -> Site:
    args = ["cloud", "serve"] + (["--database-url", database_url] if database_url else [])
    return Site(data, port, args)


def mirror_site(data: Path, port: int, primary: str, token: str, database_url: str | None = None) -> Site:
    args = ["mirror", "serve", "--primary", primary, "--token", token]
    return Site(data, port, args + (["--database-url", database_url] if database_url else []))


def create_mirror(data: Path, name: str = "DR", database_url: str | None = None) -> dict[str, Any]:
    extra = ["--database-url", database_url] if database_url else []
    body: dict[str, Any] = json.loads(chairside("admin", "--data", str(data), *extra, "mirror", "create",
                                                "--name", name).stdout)
    return body


def mirror_status(data: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(chairside("mirror", "status", "--data", str(data)).stdout)
    return body
