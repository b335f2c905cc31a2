"""Two sites under Patroni with etcd as the witness, as real processes on loopback.

One etcd member, two Patroni nodes (each with its own PostgreSQL, configured by `chairside deploy
patroni-config`), the primary's app (`chairside cloud serve` on the leader's database) and the mirror's
(`chairside mirror serve` on the replica's). Patroni runs as the `postgres` user when the tests run as
root (PostgreSQL refuses root); it is given CAP_DAC_OVERRIDE and CAP_FOWNER as ambient capabilities so
that it (and the callback it runs) can use this checkout's interpreter and the apps' root-owned folders,
as one service user running both would in production. Shared by tests/mirror/test_patroni.py and
bench/mirror_patroni.py.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from chairside.context import build_context
from chairside.mirror import service
from chairside.mirror.postgres import default_bin_dir
from chairside.settings import Settings
from tests.conftest import free_port
from tests.factories import Tenant, make_tenant
from tests.mirror import pg
from tests.mirror.sites import BIN, Site, chairside, cloud_site, mirror_site, wait_for

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def missing() -> str | None:
    """Why this machine cannot run the Patroni sites, or None."""
    if not Path(ETCD).exists():
        return "etcd is not installed (Debian: etcd-server)"
    if not pg.available():
        return "the PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if not (BIN / "patroni").exists():
        return "patroni is not installed in this environment (pip install 'patroni[etcd3]')"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is needed to run Patroni as the postgres user"
    return None


def require() -> None:
    """Skip without etcd or PostgreSQL's server binaries; fail instead under CHAIRSIDE_REQUIRE_POSTGRES=1 (CI)."""
    why = missing()
    if why is not None:
        if os.environ.get("CHAIRSIDE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"automatic failover cannot be tested: {why}")
        pytest.skip(why)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAIRSIDE_", "PATRONI_", "PG"))}
    return env | {"HOME": str(home)}


def _as_service_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
            "--inh-caps=+dac_override,+fowner", "--ambient-caps=+dac_override,+fowner", "--"]


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)


@dataclass
class Node:
    """One site's database side: a Patroni node and the PostgreSQL it runs."""

    name: str
    root: Path
    pg_port: int
    rest_port: int
    app_data: Path
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def pgdata(self) -> Path:
        return self.root / f"pg-{self.name}"

    @property
    def config(self) -> Path:
        return self.root / f"patroni-{self.name}.yml"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def url(self, database: str = "chairside") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/{database}"

    def write_config(self, etcd: str, *extra: str) -> None:
        text = chairside("deploy", "patroni-config", "--name", self.name, "--data", str(self.pgdata),
                         "--pg-bin", str(default_bin_dir()), "--listen", f"127.0.0.1:{self.pg_port}",
                         "--restapi", f"127.0.0.1:{self.rest_port}", "--etcd", etcd, "--app-data", str(self.app_data),
                         "--auth", "trust", "--watchdog", "off", "--socket-dir", str(self.root), *extra).stdout
        self.config.write_text(text)

    def start(self) -> Node:
        log = self.root / f"patroni-{self.name}-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([*_as_service_user(), str(BIN / "patroni"), str(self.config)],
                                         stdout=out, stderr=subprocess.STDOUT, env=_env(self.root),
                                         start_new_session=True)
        return self

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def status(self, path: str) -> int | None:
        """The REST API's answer code for a health path (/primary, /replica), None while it does not answer."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"patroni {self.name} exited: {self.log()[-3000:]}")
        try:
            return httpx.get(f"{self.rest}{path}", timeout=2).status_code
        except httpx.HTTPError:
            return None

    def cluster(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.rest}/cluster", timeout=3).json()
        return body

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        return None

    def lose(self) -> None:
        """The site's database side is lost at once: SIGKILL to Patroni and to every PostgreSQL process."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        pid = self.postmaster_pid()
        if pid is not None:
            _kill_tree(pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.lose()
        pid = self.postmaster_pid()
        if pid is not None and psutil.pid_exists(pid):
            _kill_tree(pid)


@dataclass
class Cluster:
    root: Path
    etcd_url: str
    osaka: Node  # the first leader: the primary site
    kobe: Node  # the replica: the mirror site
    tenant: Tenant
    primary: Site  # `cloud serve` on osaka's database
    mirror: Site  # `mirror serve` on kobe's database
    etcd: subprocess.Popen[bytes]

    def lag_reported(self, member: str) -> int | None:
        """The replication lag (bytes) Patroni reports for a member (its REST API's /cluster)."""
        for node in (self.kobe, self.osaka):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                for m in node.cluster().get("members", []):
                    if m.get("name") == member:
                        lag = m.get("lag")
                        return lag if isinstance(lag, int) else None
        return None


def _start_etcd(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    with open(root / "etcd.log", "wb") as out:
        proc = subprocess.Popen([ETCD, "--name", "witness", "--data-dir", str(root / "etcd"),
                                 "--listen-client-urls", url, "--advertise-client-urls", url,
                                 "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                                 "--initial-cluster", f"witness={peer_url}", "--initial-cluster-state", "new"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"etcd exited: {(root / 'etcd.log').read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            return bool(httpx.get(f"{url}/health", timeout=2).json().get("health") == "true")
        return False

    wait_for(healthy, "etcd", timeout=30)
    return proc, url


@contextlib.contextmanager
def patroni_sites(work: Path, *extra_config: str) -> Iterator[Cluster]:
    """etcd, both Patroni nodes (osaka the leader), the tenant, the primary's app and the mirror's app, all up."""
    root = Path(tempfile.mkdtemp(prefix="chairside-patroni-"))  # outside pytest's 0700 folders: postgres owns it
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    nodes: list[Node] = []
    sites: list[Site] = []
    etcd: subprocess.Popen[bytes] | None = None
    try:
        etcd, etcd_url = _start_etcd(root)
        osaka = Node("osaka", root, free_port(), free_port(), work / "osaka")
        kobe = Node("kobe", root, free_port(), free_port(), work / "kobe")
        for node in (osaka, kobe):
            node.write_config(etcd_url, *extra_config)
        nodes.append(osaka.start())
        wait_for(lambda: osaka.status("/primary") == 200, f"patroni osaka to lead ({root})", timeout=90, every=0.3)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{osaka.pg_port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE chairside")
        nodes.append(kobe.start())
        wait_for(lambda: kobe.status("/replica") == 200, f"patroni kobe to replicate ({root})", timeout=90, every=0.3)

        ctx = build_context(Settings.load(environ={}, data_dir=osaka.app_data, database_url=osaka.url()))
        try:
            tenant, token = make_tenant(ctx, clinics=1), service.create_mirror(ctx, "Kobe DR")[1]
        finally:
            ctx.db.dispose()
        primary = cloud_site(osaka.app_data, free_port(), osaka.url())
        sites.append(primary.start())
        mirror = mirror_site(kobe.app_data, free_port(), primary.url, token, kobe.url())
        sites.append(mirror.start())
        yield Cluster(root, etcd_url, osaka, kobe, tenant, primary, mirror, etcd)
    finally:
        for site in sites:
            site.kill9()
        for node in nodes:
            node.stop()
        if etcd is not None:
            etcd.kill()
            etcd.wait(10)
        for log in root.glob("*.log"):  # kept beside the apps' logs for a failed run
            with contextlib.suppress(OSError):
                shutil.copy(log, work / log.name)
        shutil.rmtree(root, ignore_errors=True)


def timeline_switch_lsn(url: str) -> str | None:
    """Where the promoted server's new timeline begins: the end of the WAL it had replayed at its promotion."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        if row is None or int(row[0]) < 2:
            return None
        history = conn.execute("SELECT pg_read_file(%s)", (f"pg_wal/{int(row[0]):08X}.history",)).fetchone()
    lines = [ln.split() for ln in str(history[0] if history else "").splitlines() if ln.strip()]
    return lines[-1][1] if lines else None


def lsn_diff(url: str, a: str, b: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (a, b)).fetchone()
    return int(row[0]) if row else 0


def current_lsn(node: Node) -> str:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{node.pg_port}/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def has_row(url: str, table: str, row_id: str) -> bool:
    with contextlib.suppress(psycopg.Error), psycopg.connect(  # a standby may not have replayed the schema yet
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE id = %s", (row_id,)).fetchone()
        return bool(row and row[0] == 1)
    return False
