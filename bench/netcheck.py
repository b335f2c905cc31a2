"""netcheck: how close `chairside netcheck` measures a line, and how much traffic it makes itself.

Two lines, each with the cloud (`chairside cloud serve`, SQLite) behind it and the check run in this
process against a fresh onboarding code:

- the kernel's: a veth pair into a network namespace with `tc tbf` each way (tests/kernel_wan.py), at each
  `--kernel-rates`; no delay can be added (no netem here). Reference, in the same run through the same
  shaper: a raw TCP stream each way (no HTTP), its goodput from TCP_INFO the same way. Ratios: measured /
  nominal rate and measured / raw TCP. Needs root and iproute2 (else this part is skipped, said so).
- the tests' userspace emulator (tests/netem.py with the token-bucket line of tests/netcheck/conftest.py) at
  each of `--emu` (rate Mbit/s : one-way delay ms): measured / nominal rate, round trip − added delay.

Each run also reports its own traffic (`traffic_bytes`) against the bound of four tests at the line's rate.

    .venv/bin/python bench/netcheck.py [--kernel-rates 10,40,100] [--emu 5:0,12:20,25:50] [--test-seconds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from _common import BIN, ROOT, Server, header, workdir

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.factories import make_tenant

from chairside.context import build_context
from chairside.netcheck import codes, tcpinfo
from chairside.netcheck.measure import Check, Plan, Result, _slope
from chairside.settings import Settings

PORT, RAW_PORT = 8000, 9000
RAW = r"""
import socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(4); print("ready", flush=True)
piece = b"\x5a" * 65536
while True:
    conn, _ = srv.accept()
    with conn:
        how = conn.recv(1)
        if how == b"u":
            while conn.recv(1 << 20):
                pass
        else:
            end = time.monotonic() + float(conn.recv(16).decode())
            try:
                while time.monotonic() < end:
                    conn.sendall(piece)
            except OSError:
                pass
"""


def new_code(data: Path) -> str:
    ctx = build_context(Settings.load(environ={}, data_dir=data))
    try:
        tenant = make_tenant(ctx, "ベンチ回線歯科", clinics=1)
        code, _ = codes.new_code(ctx, tenant.contract_id)
        return code
    finally:
        ctx.db.dispose()


def raw_goodput(host: str, upload: bool, seconds: float) -> float:
    """Mbit/s of a plain TCP stream for `seconds`, from TCP_INFO after the same warm-up netcheck uses."""
    sock = socket.create_connection((host, RAW_PORT), timeout=10)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    try:
        if upload:
            sock.sendall(b"u")

            def pump() -> None:
                with contextlib.suppress(OSError):
                    while not stop.is_set():
                        sock.sendall(b"\x5a" * 65536)
        else:
            sock.sendall(b"d" + f"{seconds + 1:<15}".encode())

            def pump() -> None:
                with contextlib.suppress(OSError):
                    while not stop.is_set() and sock.recv(1 << 18):
                        pass

        worker = threading.Thread(target=pump, daemon=True)
        start = time.monotonic()
        worker.start()
        while time.monotonic() - start < seconds:
            info = tcpinfo.read(sock)
            samples.append((time.monotonic(), (info.bytes_acked if upload else info.bytes_received) or 0))
            time.sleep(0.1)
        stop.set()
        bps, _, _ = _slope(samples, warm_s=min(1.0, 0.3 * seconds))
        return bps / 1e6
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def line(result: Result, nominal: float) -> str:
    f = result.figures
    bound = 4 * result.plan.bulk_s * nominal * 1e6 / 8
    return (f"up {f.upload_mbps:6.2f} ({f.upload_mbps / nominal:5.3f}×)  down {f.download_mbps:6.2f} "
            f"({f.download_mbps / nominal:5.3f}×)  rtt {f.rtt_ms or 0:5.1f} ms  jitter {f.jitter_ms or 0:4.1f} ms  "
            f"retrans {f.retransmit_percent or 0:5.2f} %  traffic {result.traffic_bytes / 1e6:6.1f} MB "
            f"(bound {bound / 1e6:6.1f} MB, {result.traffic_bytes / bound:4.2f}×)  {result.seconds:4.1f} s")


@contextlib.contextmanager
def kernel_cloud(rate: int, work: Path) -> Iterator[tuple[str, str, object]]:
    from tests.kernel_wan import die_with_parent, exec_env, kernel_wan
    data = work / f"kernel-{rate}"
    code = new_code(data)
    with kernel_wan(rate=f"{rate}mbit", burst="32kb", latency="50ms") as wan:
        log = (work / f"kernel-{rate}.log").open("wb")
        cloud = subprocess.Popen(wan.exec_args(BIN / "chairside", "cloud", "serve", "--data", data, "--host",
                                               wan.ns_addr, "--port", str(PORT)),
                                 stdout=log, stderr=subprocess.STDOUT, env=exec_env(), preexec_fn=die_with_parent)
        raw = subprocess.Popen(wan.exec_args(BIN / "python", "-c", RAW, wan.ns_addr, str(RAW_PORT)),
                               stdout=subprocess.PIPE, env=exec_env(), preexec_fn=die_with_parent)
        try:
            assert raw.stdout is not None and raw.stdout.readline().strip() == b"ready"
            import httpx
            url = f"http://{wan.ns_addr}:{PORT}"
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                        break
                time.sleep(0.1)
            yield url, code, wan
        finally:
            for proc in (cloud, raw):
                proc.kill()
                proc.wait()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel-rates", default="10,40,100")
    parser.add_argument("--emu", default="5:0,12:20,25:50")
    parser.add_argument("--test-seconds", type=float, default=4.0)
    args = parser.parse_args()
    seconds = args.test_seconds
    plan = Plan(minutes=0.05, test_seconds=seconds)  # no stability phase: the figures only
    header(f"netcheck: accuracy and own traffic; {seconds:g} s per throughput test, 4 tests per run")
    from tests.kernel_wan import unavailable
    with workdir("netcheck") as work:
        reason = unavailable()
        if reason:
            print(f"   kernel line: skipped ({reason})")
        else:
            print("   kernel line (tc tbf each way, no added delay); reference: raw TCP through the same shaper")
            for rate in [int(r) for r in args.kernel_rates.split(",") if r]:
                with kernel_cloud(rate, work) as (url, code, _wan):
                    raw_up = raw_goodput(url.split("//")[1].split(":")[0], True, seconds)
                    raw_down = raw_goodput(url.split("//")[1].split(":")[0], False, seconds)
                    result = Check(url, code, plan).run()
                f = result.figures
                print(f"   {rate:4d} Mbit/s  {line(result, rate)}")
                print(f"                raw TCP up {raw_up:6.2f}  down {raw_down:6.2f}  → netcheck / raw: up "
                      f"{f.upload_mbps / raw_up:5.3f}×  down {f.download_mbps / raw_down:5.3f}×")
        print("   userspace emulator (tests/netem.py, token-bucket line)")
        from tests.netcheck.conftest import Line
        from tests.netem import Faults
        for spec in [s for s in args.emu.split(",") if s]:
            rate_s, delay_s = spec.split(":")
            mbit, delay = float(rate_s), float(delay_s)
            data = work / f"emu-{spec.replace(':', '-')}"
            code = new_code(data)
            with Server(data) as cloud, Line(cloud.port, Faults(latency_s=delay / 2000, rate_bps=mbit * 1e6)) as wan:
                result = Check(wan.url, code, plan).run()
            rtt = result.figures.rtt_ms or 0
            print(f"   {mbit:4g} Mbit/s, +{delay:g} ms round trip  {line(result, mbit)}  rtt − added "
                  f"{rtt - delay:+5.1f} ms")


if __name__ == "__main__":
    main()
