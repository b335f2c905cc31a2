"""Shared setup for the benchmarks: work folders, a seeded data folder, a real server process, figures.

Every benchmark starts its own `chairside cloud serve` (a subprocess on a loopback port)
over a data folder seeded here, measures a reference in the same run, and removes what it
made. Work folders live under bench/.work/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin/, whichever venv runs the benchmark
WORK = ROOT / "bench" / ".work"
MiB = 1 << 20
GiB = 1 << 30


# -- folders and files ---------------------------------------------------------------------

@contextlib.contextmanager
def workdir(name: str, keep: bool = False) -> Iterator[Path]:
    """A fresh folder under bench/.work/, removed afterwards (unless keep)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def long_video(path: Path, size: int) -> Path:
    """A real H.264 MP4 of about `size` bytes, made once and reused (bench/.work/ is a cache)."""
    if path.exists() and abs(path.stat().st_size - size) < 16 * MiB:
        return path
    from chairside.mediafile.generate import make_long_video
    t = time.perf_counter()
    tmp = path.with_name(path.name + ".making.mp4")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    make_long_video(tmp, target_bytes=size)
    tmp.rename(path)
    print(f"made {path.name}: {path.stat().st_size / MiB:,.0f} MiB in {time.perf_counter() - t:.1f} s")
    return path


# -- a seeded data folder -----------------------------------------------------------------

@dataclass(frozen=True)
class Seeded:
    data_dir: Path
    database_url: str | None
    contract_id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    token: str
    clinic_ids: tuple[uuid.UUID, ...] = ()  # every clinic, clinic_id first


def operator(contract_id: uuid.UUID) -> Any:
    """The operator acting for a whole contract (a `Principal`), as the admin CLI and the demo do."""
    from chairside.auth.principal import Principal
    return Principal("operator", contract_id, None, name="bench")


def seed(data_dir: Path, database_url: str | None = None, *, clinics: Sequence[str] = ("ベンチ歯科 本院",)) -> Seeded:
    """A contract, its clinics, a station (with its token) and one patient at the first clinic, through the
    services (tenancy/service.py, patients/service.py): every row as production writes it, feed event included.
    (The tests' tests/factories.py does the same; benchmarks run standalone and cannot import tests/.)"""
    from chairside.context import build_context
    from chairside.patients import service as patients
    from chairside.settings import Settings
    from chairside.tenancy.service import create_clinic, create_contract, create_station
    settings = Settings.load(environ={}, data_dir=data_dir, database_url=database_url)
    ctx = build_context(settings)
    try:
        contract_id = create_contract(ctx, "医療法人 ベンチ歯科", 100).id
        clinic_ids = tuple(create_clinic(ctx, contract_id, name).id for name in clinics)
        _, token = create_station(ctx, clinic_ids[0], "Bench chair")
        patient = patients.create(ctx, operator(contract_id), clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ",
                                  sex="male")
    finally:
        ctx.db.dispose()
    return Seeded(data_dir, database_url, contract_id, clinic_ids[0], patient.id, token=token, clinic_ids=clinic_ids)


# -- a server process ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Service:
    """A `chairside … serve` subprocess on a loopback port, ready once /api/v1/health answers;
    stopped (SIGINT, then kill) on exit. Its output goes to `log_path`."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[1]} exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.args[1]} did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop(self.proc)
        self.log.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        return int(self.args[self.args.index("--port") + 1])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)


class Server(Service):
    """`chairside cloud serve` (SQLite in `data_dir` unless a database URL is given)."""

    def __init__(self, data_dir: Path, *, database_url: str | None = None, extra: Sequence[str] = (),
                 env: dict[str, str] | None = None, what_if: Sequence[str] = ()) -> None:
        port = free_port()
        # With what_if, the same command runs through bench/_whatif.py with proposed changes applied.
        command = [str(BIN / "python"), str(ROOT / "bench" / "_whatif.py"), *what_if, "--"] if what_if else [
            str(BIN / "chairside")]
        args = [*command, "cloud", "serve", "--data", str(data_dir), "--port", str(port), *extra]
        if database_url:
            args += ["--database-url", database_url]
        super().__init__(args, data_dir.parent / f"server-{port}.log", env)


class Relay(Service):
    """`chairside relay serve` for the cloud at `upstream` (often the WAN emulator in front of it)."""

    def __init__(self, data_dir: Path, upstream: str, token: str, env: dict[str, str] | None = None) -> None:
        port = free_port()
        args = [str(BIN / "chairside"), "relay", "serve", "--data", str(data_dir), "--upstream", upstream,
                "--token", token, "--host", "127.0.0.1", "--port", str(port)]
        super().__init__(args, data_dir.parent / f"relay-{port}.log", env)

    def status(self, token: str) -> dict[str, Any]:
        r = httpx.get(self.url + "/api/v1/relay/status", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, by its id: SIGINT, then SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tree(pid: int) -> list[psutil.Process]:
    """The process and its live children (uvicorn workers, when there are some)."""
    try:
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def tree_rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


# -- figures ------------------------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0–100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def fmt_runs(values: Sequence[float], spec: str = ".0f") -> str:
    return "[" + ", ".join(format(v, spec) for v in values) + "]"


def machine() -> str:
    """One paragraph on where this ran: date, cores, memory, Python."""
    mem = psutil.virtual_memory()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} · {os.cpu_count()} CPUs ({model}) · "
            f"RAM {mem.total / GiB:.1f} GiB total, {mem.available / GiB:.1f} GiB available · "
            f"load {os.getloadavg()[0]:.2f} · Python {platform.python_version()}")


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   {machine()}")
