"""The production recipe on loopback: N `chairside cloud serve` processes and Debian's nginx in front.

Each app server is a real process (`chairside cloud serve`), started with the same database
(PostgreSQL) and the same blob store; nginx runs the configuration `chairside deploy
nginx-config` prints, as `nginx -p PREFIX -c FILE -g 'daemon off;'`. Everything is stopped by the
handle it was started with.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from chairside.deploy.nginx import NginxOptions, render
from tests.conftest import free_port

NGINX = Path("/usr/sbin/nginx")
CHAIRSIDE = Path(sys.executable).parent / "chairside"


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class AppServer:
    """`chairside cloud serve` in a process of its own."""

    def __init__(self, data: Path, database_url: str, *, offload: str = "none", blob_url: str | None = None,
                 env: dict[str, str] | None = None, name: str = "app") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"{name}-{self.port}.log"
        self.env = {**os.environ, "CHAIRSIDE_OFFLOAD": offload, "CHAIRSIDE_DATABASE_URL": database_url,
                    **({"CHAIRSIDE_BLOB_URL": blob_url} if blob_url else {}), **(env or {})}
        self.args = [str(CHAIRSIDE), "cloud", "serve", "--data", str(data), "--port", str(self.port)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "chairside cloud serve", self.log)
        return self

    def kill(self) -> None:
        """SIGKILL: the server dies at once, mid-request (a crash)."""
        if self.proc is not None:
            _stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Nginx:
    """nginx with the configuration `chairside deploy nginx-config` prints (made in-process: the command's own
    run is tested in test_deploy.py)."""

    def __init__(self, prefix: Path, upstreams: list[str], data: Path | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "logs").mkdir(exist_ok=True)
        (prefix / "tmp").mkdir(exist_ok=True)
        options = NginxOptions(listen=self.port, upstreams=upstreams, host="127.0.0.1", worker_processes="2",
                               blob_dir=data / "blobs" if data is not None else None,
                               user="root" if os.geteuid() == 0 else None,  # the test's blobs are mode 0440
                               tls_cert=tls[0] if tls else None, tls_key=tls[1] if tls else None)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(render(options))  # what `chairside deploy nginx-config` prints (test_deploy runs it)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        log = self.prefix / "logs" / "stderr.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([str(NGINX), "-p", str(self.prefix), "-c", str(self.conf),
                                          "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "nginx", log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGQUIT)

    def access_log(self) -> str:
        return (self.prefix / "logs" / "access.log").read_text()


class Cluster:
    """N app servers behind nginx, plus (optionally) one more server reached directly with offload off."""

    def __init__(self, root: Path, database_url: str, *, servers: int = 2, offload: str = "nginx",
                 direct: bool = True, blob_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.apps = [AppServer(self.data, database_url, offload=offload, blob_url=blob_url, env=env, name=f"app{i}")
                     for i in range(servers)]
        self.direct = AppServer(self.data, database_url, offload="none", blob_url=blob_url, env=env,
                                name="direct") if direct else None
        self.nginx = Nginx(root / "nginx", [a.url for a in self.apps], self.data)

    def __enter__(self) -> Self:
        try:
            for app in self.apps:
                app.start()
            if self.direct is not None:
                self.direct.start()
            self.nginx.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.nginx.stop()
        for app in [*self.apps, *([self.direct] if self.direct else [])]:
            app.stop()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def get(url: str, token: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers={"Authorization": f"Bearer {token}", **headers}, timeout=60)
