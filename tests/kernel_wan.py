"""A kernel-shaped WAN for tests and benchmarks: a veth pair into a network namespace, `tc tbf` on both ends.

The second check of the relay's WAN behaviour beside tests/netem.py. The userspace proxy there does
what a bad line does (delay, cuts, stalls) but it is our own code moving the bytes; here the Linux
kernel does, with the same TCP stacks, socket buffers and qdiscs a real clinic line meets. This
kernel has no netem, so there is no one-way delay: only a token-bucket rate (tbf) per direction, and
a real link that can be taken down and up again (`ip link set DEV down`), and connections that can
be forgotten by one end (`ss -K`).

    root namespace (the relay)                     namespace NAME (the cloud)
    HOST_DEV 10.213.X.1/24  ── tbf ──► upload ──►  NS_DEV 10.213.X.2/24
                            ◄── download ◄── tbf ──

`kernel_wan()` makes a uniquely named namespace (the pid is in its name), the veth pair and the
shapers, and on exit always removes them (deleting the namespace's name; the veth goes with it),
after killing what is still running inside (only processes in this fresh namespace, by their ids:
ours). `unavailable()` says why this cannot work here (not root, no `ip`/`tc`, no namespaces), for
a test to skip (or fail, when CHAIRSIDE_REQUIRE_NETNS=1).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.213"  # private /24s 10.213.X.0 for the pairs; X is picked free at setup
_SBIN = os.pathsep.join(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
_LOCK = Path(tempfile.gettempdir()) / "chairside-kernel-wan.lock"  # serialises picking a free subnet
_serial = itertools.count()


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip`/`tc`; a failure raises with the tool's own message (it says what the kernel refused)."""
    tool = _tool(args[0])
    if tool is None:
        raise RuntimeError(f"`{args[0]}` is not installed (iproute2)")
    done = subprocess.run([tool, *args[1:]], capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class KernelWan:
    """One shaped line: the relay's side in the root namespace, the cloud's inside `netns`."""

    netns: str
    host_dev: str  # root namespace end; its egress is the upload direction (relay → cloud)
    ns_dev: str  # namespace end; its egress is the download direction (cloud → relay)
    host_addr: str
    ns_addr: str
    rate: str
    burst: str
    latency: str

    def exec_args(self, *args: str | os.PathLike[str]) -> list[str]:
        """The command line running `args` inside the namespace (`ip netns exec` execs it: same pid)."""
        ip = _tool("ip")
        assert ip is not None
        return [ip, "netns", "exec", self.netns, *(os.fspath(a) for a in args)]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the namespace and wait for it."""
        done = subprocess.run(self.exec_args(*args), capture_output=True, text=True, check=False, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` in {self.netns} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def link(self, up: bool) -> None:
        """Take the line down (both directions: the veth pair's carrier goes with one end) or up again."""
        _run("ip", "link", "set", self.host_dev, "up" if up else "down")

    def forget_connections(self, port: int) -> int:
        """Destroy the namespace's established TCP connections on local `port` (`ss -K`), as a router or
        NAT restart does: the far end learns it from the reset its next segment gets. Answers how many."""
        ss = _tool("ss")
        assert ss is not None
        out = self.run(ss, "-K", "-H", "-t", "state", "established", f"( sport = :{port} )").stdout
        return len(out.splitlines())

    def sent_bytes(self, upload: bool = True) -> int:
        """Bytes the shaper let out so far (upload: the host end; else the namespace end). Wire bytes:
        Ethernet, IP and TCP headers and retransmissions included."""
        if upload:
            out = _run("tc", "-s", "-j", "qdisc", "show", "dev", self.host_dev).stdout
        else:
            out = _run("tc", "-n", self.netns, "-s", "-j", "qdisc", "show", "dev", self.ns_dev).stdout
        for qdisc in json.loads(out):
            if qdisc.get("kind") == "tbf":
                return int(qdisc["bytes"])
        raise RuntimeError(f"no tbf qdisc on {self.host_dev if upload else self.ns_dev}: {out}")

    def pids(self) -> list[int]:
        """Processes running inside the namespace."""
        out = _run("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]


def _used_subnets() -> set[int]:
    out = _run("ip", "-4", "-o", "addr", "show").stdout
    return {int(x) for x in re.findall(rf"inet {re.escape(SUBNET)}\.(\d+)\.", out)}


def _drop_stale() -> None:
    """Remove namespaces this module made in processes that are gone (a run killed before its cleanup),
    when nothing runs in them any more. Others' namespaces, and ours still in use, are left alone."""
    out = _run("ip", "netns", "list", check=False).stdout
    for name, pid in re.findall(r"^(cswan-(\d+)-\d+)", out, re.M):
        if int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        if not _run("ip", "netns", "pids", name, check=False).stdout.split():
            _run("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def kernel_wan(rate: str = "40mbit", burst: str = "32kb", latency: str = "50ms") -> Iterator[KernelWan]:
    """A veth pair into a fresh namespace with `tc qdisc add dev … root tbf rate R burst B latency L` on
    both ends (tc's units: "40mbit", "32kb" = 32 KiB, "50ms"; the latency bounds the shaper's queue).
    Removed on exit whatever happened, processes still inside killed first."""
    n = next(_serial)
    name = f"cswan-{os.getpid()}-{n}"
    host_dev, ns_dev = f"cw{os.getpid()}-{n}h", f"cw{os.getpid()}-{n}n"  # IFNAMSIZ: at most 15 characters
    _drop_stale()
    _run("ip", "netns", "add", name)
    try:
        with _LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two setups at once (a test and a benchmark) pick different /24s
            used = _used_subnets()
            free = [x for x in range(1, 255) if x not in used]
            if not free:
                raise RuntimeError(f"no free {SUBNET}.X.0/24 for the veth pair")
            x = free[0]  # taken before the lock is released: the address below marks it used
            host_addr, ns_addr = f"{SUBNET}.{x}.1", f"{SUBNET}.{x}.2"
            _run("ip", "link", "add", host_dev, "type", "veth", "peer", "name", ns_dev, "netns", name)
            _run("ip", "addr", "add", f"{host_addr}/24", "dev", host_dev)
        _run("ip", "link", "set", host_dev, "up")
        _run("ip", "-n", name, "addr", "add", f"{ns_addr}/24", "dev", ns_dev)
        _run("ip", "-n", name, "link", "set", ns_dev, "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        shaper = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
        _run("tc", "qdisc", "add", "dev", host_dev, *shaper)
        _run("tc", "-n", name, "qdisc", "add", "dev", ns_dev, *shaper)
        yield KernelWan(name, host_dev, ns_dev, host_addr, ns_addr, rate, burst, latency)
    finally:
        # A namespace outlives its name while a process is in it (and keeps its veth): kill those first.
        # They can only be ours: the namespace was made above, with this process's id in its name.
        for pid in _run("ip", "netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        _run("ip", "link", "del", host_dev, check=False)  # deletes both ends (gone already if the ns went)
        _run("ip", "netns", "del", name, check=False)


@functools.cache
def unavailable() -> str | None:
    """Why a shaped namespace cannot be made here, or None when it can (tried once per process)."""
    if os.geteuid() != 0:
        return f"network namespaces and tc need root (this runs as uid {os.geteuid()})"
    missing = [t for t in ("ip", "tc", "ss") if _tool(t) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian: apt-get install iproute2)"
    try:
        with kernel_wan(rate="10mbit") as wan:
            wan.sent_bytes()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return f"cannot make a tbf-shaped veth pair into a network namespace: {e}"
    return None


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGKILL when the process that started it dies, even by SIGKILL
    (PR_SET_PDEATHSIG; kept across `ip netns exec`'s exec). A killed test leaves no server in a namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def exec_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for our subprocesses: without the caller's CHAIRSIDE_* variables (CI's or a test's
    would reach the server as settings), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAIRSIDE_")}
    env.update(extra or {})
    return env
