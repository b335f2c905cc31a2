"""Ingest throughput: a large MP4 uploaded through the SDK over loopback, against `cp` on the same disk.

Reference: `cp SRC DST` followed by an fsync of DST (the server fsyncs every PATCH and the
stored blob, so the honest disk reference is a durable copy); plain `cp` (page cache only)
is printed too. Ours: `Client.upload` (default 16 MiB chunks, per-chunk SHA-256 checksums
on, whole-file SHA-256 compared at the end) to a fresh `chairside cloud serve` with SQLite,
timed until the stored item is acknowledged (the last PATCH is answered after ingest:
probe, thumbnail, blob store). Each round runs cp and the upload(s) back to back, each
after a `sync`; one warm-up round is not counted. CPU seconds of the client (this process)
and of the server process are reported per GiB.

With --what-if NAME[+NAME…] (see bench/_whatif.py) each round also uploads with those
proposed changes applied in memory, to measure them before they land: server changes by
name, and `pipelined-sdk` for an SDK that overlaps reading and hashing with the PATCHes.

    .venv/bin/python bench/ingest.py [--size-mib 1024] [--runs 3] [--what-if adopt-upload]
                                     [--what-if adopt-upload+pipelined-sdk]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

from _common import WORK, MiB, Server, fmt_runs, header, long_video, median, seed, workdir
from _whatif import pipelined_upload
from chairside.client import Client

TARGET = 0.7


def timed_cp(src: Path, dst: Path) -> tuple[float, float]:
    """Seconds for `cp`, and for `cp` plus an fsync of the copy."""
    os.sync()
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    t1 = time.perf_counter()
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    t2 = time.perf_counter()
    os.unlink(dst)
    return t1 - t0, t2 - t0


def timed_upload(src: Path, what_if: tuple[str, ...] = ()) -> tuple[float, float, float]:
    """Seconds for one SDK upload to a fresh server; and the client's and the server's CPU seconds."""
    with workdir("ingest-server") as wd:
        seeded = seed(wd / "data")
        server = Server(seeded.data_dir, what_if=tuple(w for w in what_if if w != "pipelined-sdk"))
        with server, Client(server.url, seeded.token, timeout=300) as client:
            os.sync()
            server_cpu0, client_cpu0 = server.cpu_seconds(), time.process_time()
            t0 = time.perf_counter()
            if "pipelined-sdk" in what_if:
                item = pipelined_upload(client, src, seeded.patient_id)
            else:
                item = client.upload(src, seeded.patient_id)
            elapsed = time.perf_counter() - t0
            client_cpu = time.process_time() - client_cpu0
            server_cpu = server.cpu_seconds() - server_cpu0
            assert item["size"] == src.stat().st_size, item
    return elapsed, client_cpu, server_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the MP4 (default 1024 MiB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--what-if", action="append", default=[],
                        help="also measure proposed changes: NAME[+NAME…] from bench/_whatif.py, or pipelined-sdk")
    args = parser.parse_args()

    header("ingest: SDK upload over loopback vs cp (+fsync) on the same disk")
    src = long_video(WORK / f"video-{args.size_mib}MiB.mp4", args.size_mib * MiB)
    mib = src.stat().st_size / MiB
    with src.open("rb") as f:  # both sides read the source from the page cache
        while f.read(16 * MiB):
            pass
    variants: list[tuple[str, tuple[str, ...]]] = [("ours", ())]
    variants += [(f"what-if {w}", tuple(w.split("+"))) for w in args.what_if]
    print(f"   file: {mib:,.0f} MiB real H.264 MP4; {args.runs} rounds after 1 warm-up round")
    cp_s: list[float] = []
    cp_sync_s: list[float] = []
    up_s: dict[str, list[float]] = {name: [] for name, _ in variants}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in variants}
    with workdir("ingest-cp") as wd:
        for run in range(args.runs + 1):
            plain, durable = timed_cp(src, wd / "copy.mp4")
            line = f"cp {mib / plain:5.0f} MiB/s · cp+fsync {mib / durable:5.0f} MiB/s"
            results = {name: timed_upload(src, what_if) for name, what_if in variants}
            for name, (up, ccpu, scpu) in results.items():
                line += f" · {name} {mib / up:4.0f} MiB/s (CPU client {ccpu:.1f} s, server {scpu:.1f} s)"
            if run == 0:
                print(f"   warm-up: {line}")
                continue
            print(f"   run {run}: {line}")
            cp_s.append(plain)
            cp_sync_s.append(durable)
            for name, (up, ccpu, scpu) in results.items():
                up_s[name].append(up)
                cpu[name].append((ccpu, scpu))

    def rates(seconds: list[float]) -> list[float]:
        return [mib / s for s in seconds]

    ref, plain_rate = median(rates(cp_sync_s)), median(rates(cp_s))
    print(f"reference cp+fsync : {ref:6.0f} MiB/s (median of {fmt_runs(rates(cp_sync_s))})")
    print(f"plain cp           : {plain_rate:6.0f} MiB/s (median of {fmt_runs(rates(cp_s))})")
    for name, _ in variants:
        ours = median(rates(up_s[name]))
        client_cpu = median([c for c, _ in cpu[name]]) * 1024 / mib
        server_cpu = median([s for _, s in cpu[name]]) * 1024 / mib
        ratio = ours / ref
        print(f"{name:19s}: {ours:6.0f} MiB/s (median of {fmt_runs(rates(up_s[name]))}); CPU per GiB: client"
              f" {client_cpu:.2f} s, server {server_cpu:.2f} s")
        print(f"ratio {name}/cp+fsync: {ratio:.2f} (target >= {TARGET}) {'PASS' if ratio >= TARGET else 'FAIL'}"
              f" · vs plain cp: {ours / plain_rate:.2f}")


if __name__ == "__main__":
    main()
