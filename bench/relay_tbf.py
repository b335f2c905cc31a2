"""Relay: goodput of one upstream transfer through a line shaped by the kernel (tc tbf), not by our proxy.

The second check beside bench/relay_upstream.py. There the line is the tests' userspace emulator
(tests/netem.py), our own code moving the bytes. Here it is a veth pair into a network namespace with
`tc qdisc … tbf` on both ends (tests/kernel_wan.py): the cloud (`chairside cloud serve`) runs inside
the namespace, the relay (`chairside relay serve`) in the root namespace, and the kernel's TCP and
token bucket are all that stand between them. This kernel has no netem, so no one-way delay can be
added: the line has the rate and nothing else (the round trip is the veth's, microseconds).

A station puts one real H.264 file into the relay (loopback, not through the line); from the
relay's acknowledgement the clock runs until the cloud's database holds the item (read directly,
so polling adds nothing to the line). Reference, in the same run through the same shaped line: the
same file's bytes written raw (sendfile) into a TCP sink inside the namespace, timed to the sink's
count of the last byte. The ratio relay / reference is the relay's own cost (HTTP, tus requests,
the cloud's writes and checks); reference / nominal rate is the shaper's (headers, token bucket).
Needs root and iproute2.

    .venv/bin/python bench/relay_tbf.py [--size-mib 200] [--rate-mbit 20] [--burst 32kbit] [--latency 400ms]
                                        [--chunk-mib 64] [--runs 1]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from _common import BIN, ROOT, WORK, MiB, Relay, Service, fmt_runs, header, long_video, median, seed, workdir
from relay_upstream import relay_token, seed_relay, station_put

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.kernel_wan import KernelWan

CLOUD_PORT = 8000  # inside the namespace
SINK_PORT = 9000
SINK = r"""
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(4)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    with conn:
        n = 0
        while data := conn.recv(1 << 20):
            n += len(data)
        conn.sendall(str(n).encode())
"""


class CloudInNamespace(Service):
    """`chairside cloud serve` inside the namespace, on its end of the line."""

    def __init__(self, wan: KernelWan, data_dir: Path) -> None:
        self.host = wan.ns_addr
        args = wan.exec_args(BIN / "chairside", "cloud", "serve", "--data", data_dir, "--host", self.host,
                             "--port", str(CLOUD_PORT))
        super().__init__(args, data_dir.parent / "cloud.log")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{CLOUD_PORT}"


def reference(wan: KernelWan, src: Path) -> dict[str, float]:
    """The file's bytes raw into a sink inside the namespace: seconds to the sink's last byte, wire bytes."""
    sink = subprocess.Popen(wan.exec_args(sys.executable, "-c", SINK, wan.ns_addr, str(SINK_PORT)),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        wire0 = wan.sent_bytes()
        t0 = time.perf_counter()
        with socket.create_connection((wan.ns_addr, SINK_PORT), timeout=3600) as c, src.open("rb") as f:
            c.sendfile(f)
            c.shutdown(socket.SHUT_WR)
            got = int(c.recv(64))
        elapsed = time.perf_counter() - t0
        wire = wan.sent_bytes() - wire0
    finally:
        sink.kill()
        sink.wait()
    assert got == src.stat().st_size, (got, src.stat().st_size)
    return {"seconds": elapsed, "wire": wire}


def relay_run(wan: KernelWan, src: Path, chunk: int) -> dict[str, float]:
    """Station → relay (loopback), then relay → cloud through the line: seconds from the relay's
    acknowledgement until the cloud's database holds the item, and the upstream wire bytes."""
    from chairside.context import build_context
    from chairside.db.models import Media
    from chairside.settings import Settings
    with workdir("relay-tbf") as wd:
        seeded = seed(wd / "cloud")
        token = relay_token(seeded)
        seed_relay(seeded, wd / "relay")
        cloud_db = build_context(Settings.load(environ={}, data_dir=seeded.data_dir), upgrade=False)
        try:
            with CloudInNamespace(wan, seeded.data_dir) as cloud, Relay(
                    wd / "relay", cloud.url, token, env={"CHAIRSIDE_RELAY_UPLOAD_CHUNK_BYTES": str(chunk)}) as relay:
                wire0 = wan.sent_bytes()
                item = station_put(relay.url, seeded.token, str(seeded.patient_id), src)
                t0 = time.perf_counter()
                media_id = uuid.UUID(item["id"])
                deadline = time.monotonic() + 6 * 3600
                while True:
                    with cloud_db.db.read() as s:
                        row = s.get(Media, media_id)
                        sha = row.sha256 if row is not None else None
                    if sha is not None:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("the relay did not deliver the file")
                    time.sleep(0.05)
                elapsed = time.perf_counter() - t0
                wire = wan.sent_bytes() - wire0
                assert sha == item["sha256"], "the cloud holds other bytes"
                pending = relay.status(seeded.token)["pending_items"]
        finally:
            cloud_db.db.dispose()
    return {"seconds": elapsed, "wire": wire, "pending": pending}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--rate-mbit", type=float, default=20.0, help="tbf rate, each way")
    parser.add_argument("--burst", default="32kbit", help="tbf burst, in tc's units")
    parser.add_argument("--latency", default="400ms", help="tbf latency (bounds its queue), in tc's units")
    parser.add_argument("--chunk-mib", type=float, default=64.0, help="relay_upload_chunk_bytes (default 64 MiB)")
    parser.add_argument("--runs", type=int, default=1, help="reference and relay, alternating, this many times")
    args = parser.parse_args()
    chunk = int(args.chunk_mib * MiB)

    from tests.kernel_wan import kernel_wan, unavailable

    header("relay_tbf: one upstream transfer through a kernel-shaped line (tc tbf on a veth pair into a netns)")
    reason = unavailable()
    if reason:
        print(f"cannot run here: {reason}")
        raise SystemExit(2)
    src = long_video(WORK / f"video-{args.size_mib}MiB.mp4", args.size_mib * MiB)
    size = src.stat().st_size
    rate = args.rate_mbit * 1e6 / 8  # bytes per second, nominal
    print(f"   line: tbf {args.rate_mbit:g} Mbit/s each way (burst {args.burst}, latency {args.latency}); no added "
          f"delay (this kernel has no netem); file {size / MiB:,.0f} MiB; relay chunk {chunk / MiB:g} MiB")
    refs: list[dict[str, float]] = []
    runs: list[dict[str, float]] = []
    with kernel_wan(rate=f"{args.rate_mbit:g}mbit", burst=args.burst, latency=args.latency) as wan:
        for i in range(args.runs):
            refs.append(reference(wan, src))
            runs.append(relay_run(wan, src, chunk))
            ref_bps, relay_bps = size / refs[-1]["seconds"], size / runs[-1]["seconds"]
            print(f"   run {i + 1}: reference {ref_bps / 1e6:.3f} MB/s ({refs[-1]['seconds']:.1f} s) · relay "
                  f"{relay_bps / 1e6:.3f} MB/s ({runs[-1]['seconds']:.1f} s) = {relay_bps / ref_bps:.3f} of the "
                  f"reference; relay pending after: {runs[-1]['pending']:.0f}")
    ref_g = [size / r["seconds"] for r in refs]
    relay_g = [size / r["seconds"] for r in runs]
    ratios = [g / r for g, r in zip(relay_g, ref_g, strict=True)]
    ratio = median(ratios)
    print(f"reference (raw TCP, same bytes, same line): {median(ref_g) / 1e6:.3f} MB/s = "
          f"{median(ref_g) * 8 / 1e6:.2f} Mbit/s = {median(ref_g) / rate:.3f} of the nominal rate "
          f"(median of {fmt_runs([g / 1e6 for g in ref_g], '.3f')} MB/s)")
    print(f"relay goodput (ack to the cloud's row)    : {median(relay_g) / 1e6:.3f} MB/s = "
          f"{median(relay_g) * 8 / 1e6:.2f} Mbit/s = {median(relay_g) / rate:.3f} of the nominal rate "
          f"(median of {fmt_runs([g / 1e6 for g in relay_g], '.3f')} MB/s)")
    print(f"wire bytes upstream per file byte          : relay {median([r['wire'] for r in runs]) / size:.4f}"
          f" · reference {median([r['wire'] for r in refs]) / size:.4f}")
    print(f"relay / reference                          : {ratio:.3f} (median of {fmt_runs(ratios, '.3f')}; "
          f"target >= 0.9) {'PASS' if ratio >= 0.9 else 'FAIL'}")


if __name__ == "__main__":
    main()
