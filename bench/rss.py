"""Memory: peak RSS of the server (and of the SDK client) during a 5 GiB upload.

The server (`chairside cloud serve`, SQLite) and the client (`Client.upload`, default
chunks and checksums, in a child process of its own) are sampled every 50 ms with psutil,
children included; at the end each process's kernel high-water mark (VmHWM, the true peak
between samples) is read too. Reference: the server's own RSS when idle just before the
upload, so the ratio says how much an upload adds to a resting server.

    .venv/bin/python bench/rss.py [--size-mib 5120] [--runs 1] [--what-if-client-gc]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from _common import BIN, WORK, MiB, Server, header, long_video, median, seed, tree, tree_rss, workdir

TARGET_MB = 150


def hwm(pid: int) -> int:
    """The largest VmHWM (peak resident set) among the process and its children, in bytes."""
    peak = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, psutil.NoSuchProcess):
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
    return peak


class Sampler(threading.Thread):
    """Peak summed RSS of a process tree, sampled every `period` seconds."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.period, self.peak, self.samples = pid, period, 0, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            time.sleep(self.period)

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return self.peak


def client_main(url: str, token: str, patient_id: str, path: str, collect: str) -> None:
    """Run in the child process: one SDK upload, then report its own peak (VmHWM) on stdout.

    With collect == "gc" (what-if), garbage is collected after each chunk: httpx's request and
    response objects form a reference cycle that keeps each 16 MiB chunk alive until the
    cyclic collector happens to run.
    """
    import gc

    from chairside.client import Client
    with Client(url, token, timeout=300) as client:
        item = client.upload(path, patient_id, progress=(lambda done, total: gc.collect()) if collect == "gc" else None)
    print(json.dumps({"size": item["size"], "hwm": hwm(os.getpid())}))


def one_run(src: Path, collect: str) -> dict[str, float]:
    with workdir("rss") as wd:
        seeded = seed(wd / "data")
        with Server(seeded.data_dir) as server:
            time.sleep(1.0)
            idle = tree_rss(server.pid)
            server_sampler = Sampler(server.pid)
            server_sampler.start()
            t0 = time.perf_counter()
            child = subprocess.Popen(
                [str(BIN / "python"), __file__, "--as-client", server.url, seeded.token,
                 str(seeded.patient_id), str(src), collect], stdout=subprocess.PIPE, text=True)
            client_sampler = Sampler(child.pid)
            client_sampler.start()
            out, _ = child.communicate()
            elapsed = time.perf_counter() - t0
            client_peak = client_sampler.stop()
            server_peak = server_sampler.stop()
            server_hwm = hwm(server.pid)
            if child.returncode != 0:
                raise RuntimeError(f"client failed ({child.returncode}); server log: {server.log_path}")
            report = json.loads(out.strip().splitlines()[-1])
            assert report["size"] == src.stat().st_size
    return {"idle": idle, "server": server_peak, "server_hwm": server_hwm, "client": client_peak,
            "client_hwm": report["hwm"], "seconds": elapsed, "samples": server_sampler.samples}


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--as-client":
        client_main(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=5120)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--what-if-client-gc", action="store_true",
                        help="what-if: the SDK frees each chunk right after its PATCH (gc.collect per chunk)")
    args = parser.parse_args()

    header("rss: peak resident memory during a large SDK upload")
    src = long_video(WORK / f"video-{args.size_mib}MiB.mp4", args.size_mib * MiB)
    print(f"   file: {src.stat().st_size / MiB:,.0f} MiB real H.264 MP4; runs: {args.runs}; sampling every 50 ms"
          + ("; what-if: client collects garbage after each chunk" if args.what_if_client_gc else ""))
    runs = []
    for run in range(1, args.runs + 1):
        r = one_run(src, "gc" if args.what_if_client_gc else "-")
        runs.append(r)
        print(f"   run {run}: server idle {r['idle'] / 1e6:.0f} MB, peak {r['server'] / 1e6:.0f} MB sampled"
              f" ({r['samples']:.0f} samples), {r['server_hwm'] / 1e6:.0f} MB VmHWM; client peak"
              f" {r['client'] / 1e6:.0f} MB sampled, {r['client_hwm'] / 1e6:.0f} MB VmHWM;"
              f" upload {r['seconds']:.0f} s ({src.stat().st_size / MiB / r['seconds']:.0f} MiB/s)")
    m = {k: median([r[k] for r in runs]) for k in runs[0]}
    peak_mb = max(m["server"], m["server_hwm"]) / 1e6
    print(f"reference (server idle): {m['idle'] / 1e6:6.0f} MB")
    print(f"server peak            : {peak_mb:6.0f} MB (sampled {m['server'] / 1e6:.0f} MB, VmHWM"
          f" {m['server_hwm'] / 1e6:.0f} MB) = {peak_mb / (m['idle'] / 1e6):.2f} x idle")
    print(f"client peak            : {max(m['client'], m['client_hwm']) / 1e6:6.0f} MB")
    print(f"server peak vs target  : {peak_mb:.0f} MB (target <= {TARGET_MB} MB)"
          f" {'PASS' if peak_mb <= TARGET_MB else 'FAIL'}")


if __name__ == "__main__":
    main()
