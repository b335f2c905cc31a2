"""The capture-station agent: from a file closed to its upload starting; client CPU per GiB of the SDK.

1. Latency (target: file closed → upload started <= 2 s). A fresh `chairside cloud serve` (SQLite),
   the agent in this process with its production timings (`AgentConfig` defaults: 5 s settle,
   0.3 s close settle, 30 s rescan, watchdog on), and N real H.264 clips written into
   `DIR/00001/` in 1 MiB pieces and closed, one after the other once the previous one is sent.
   Measured from the writer's close() to (a) the agent marking the file `sending` (its row's
   `started_at`) and (b) the tus upload existing on the server (the row's upload URL, polled every
   5 ms). Reference in the same run: the same SDK creating a tus upload for the same file
   directly (what (b) costs without the agent).
2. CPU per GiB, client side. The same SDK upload of a large real MP4 to the same kind of server
   over loopback, with per-request SHA-256 checksums (before: what every upload did, and still
   the default over plain http://) and without (after: the default over https://, where TLS
   protects each chunk; the whole file's SHA-256 is still compared with the server's). The
   client's CPU seconds (this process; the server is another process) per GiB, and the ratio.

    .venv/bin/python bench/agent.py [--files 10] [--size-mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path

from _common import WORK, GiB, MiB, Server, fmt_runs, header, long_video, median, seed, workdir
from chairside.agent.runner import AgentConfig, running
from chairside.client import Client, uuid7

TARGET_S = 2.0


def write_and_close(src: Path, dst: Path) -> float:
    """Copy `src` to `dst` in 1 MiB pieces as capture software would; answer the time of close()."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        while piece := fin.read(MiB):
            fout.write(piece)
            fout.flush()
    return time.time()


def poll_row(state_db: Path, name: str, deadline: float) -> tuple[float, float]:
    """(started_at, first time seen with an upload URL) of the row whose path ends with `name`."""
    url_seen: float | None = None
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(state_db, timeout=30) as conn:
                row = conn.execute("SELECT started_at, upload_url, state FROM files WHERE path LIKE ?",
                                   (f"%/{name}",)).fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is not None and row[1] and url_seen is None:
            url_seen = time.time()
        if row is not None and row[2] == "sent" and row[0] is not None and url_seen is not None:
            return float(row[0]), url_seen
        time.sleep(0.005)
    raise TimeoutError(f"{name} was not sent in time")


def latency(files: int) -> None:
    clip = long_video(WORK / "agent-clip-32MiB.mp4", 32 * MiB)
    with workdir("agent-latency") as wd:
        seeded = seed(wd / "data")
        watch = wd / "キャプチャ フォルダ"
        watch.mkdir()
        with Server(seeded.data_dir) as server:
            # Reference: the SDK alone, from the call to the upload existing on the server.
            direct: list[float] = []
            with Client(server.url, seeded.token) as client:
                for _ in range(files):
                    stamp: list[float] = []
                    t0 = time.time()
                    client.upload(clip, seeded.patient_id, media_id=uuid7(), on_created=lambda _url, s=stamp: s.append(
                        time.time()))
                    direct.append(stamp[0] - t0)
            config = AgentConfig(watch=watch, server=server.url, token=seeded.token, clinic_id=str(seeded.clinic_id))
            to_sending: list[float] = []
            to_created: list[float] = []
            with running(config):
                for i in range(files):
                    name = f"rec-{i:03d}.mp4"
                    closed = write_and_close(clip, watch / "00001" / name)
                    started, created_at = poll_row(watch / ".chairside" / "state.db", name, time.monotonic() + 300)
                    to_sending.append(started - closed)
                    to_created.append(created_at - closed)
                    print(f"   {name}: closed → sending {started - closed:.3f} s, → upload created "
                          f"{created_at - closed:.3f} s")
    worst = max(to_created)
    print(f"closed → sending         : median {median(to_sending):.3f} s, max {max(to_sending):.3f} s")
    print(f"closed → upload created  : median {median(to_created):.3f} s, max {worst:.3f} s "
          f"(runs {fmt_runs(to_created, '.2f')})")
    print(f"reference SDK create     : median {median(direct):.3f} s (runs {fmt_runs(direct, '.3f')})")
    print(f"target closed → upload started <= {TARGET_S} s (max of {files}): {'PASS' if worst <= TARGET_S else 'FAIL'}")


def cpu_per_gib(size_mib: int, runs: int) -> None:
    src = long_video(WORK / f"video-{size_mib}MiB.mp4", size_mib * MiB)
    gib = src.stat().st_size / GiB
    with src.open("rb") as f:  # from the page cache for every variant
        while f.read(16 * MiB):
            pass
    results: dict[bool, list[float]] = {True: [], False: []}
    for run in range(runs + 1):
        for checksums in (True, False):
            with workdir("agent-cpu") as wd:
                seeded = seed(wd / "data")
                with Server(seeded.data_dir) as server, \
                        Client(server.url, seeded.token, timeout=300, chunk_checksums=checksums) as client:
                    cpu0 = time.process_time()
                    item = client.upload(src, seeded.patient_id)
                    cpu = time.process_time() - cpu0
                    assert item["size"] == src.stat().st_size
            if run:
                results[checksums].append(cpu / gib)
            print(f"   {'warm-up' if run == 0 else f'run {run}'}: per-chunk checksums {'on ' if checksums else 'off'}"
                  f" {cpu / gib:.2f} CPU s/GiB")
    before, after = median(results[True]), median(results[False])
    print(f"client CPU per GiB, before (per-chunk SHA-256 + whole-file SHA-256): {before:.2f} s "
          f"(runs {fmt_runs(results[True], '.2f')})")
    print(f"client CPU per GiB, after  (whole-file SHA-256 only, https default) : {after:.2f} s "
          f"(runs {fmt_runs(results[False], '.2f')})")
    print(f"ratio after/before: {after / before:.2f} (stdev before {statistics.pstdev(results[True]):.2f}, "
          f"after {statistics.pstdev(results[False]):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10, help="files for the latency figure")
    parser.add_argument("--size-mib", type=int, default=512, help="size of the MP4 for the CPU figure")
    parser.add_argument("--runs", type=int, default=3, help="rounds of the CPU figure after one warm-up")
    args = parser.parse_args()
    header("agent: file closed → upload started; client CPU per GiB with and without per-chunk checksums")
    latency(args.files)
    cpu_per_gib(args.size_mib, args.runs)


if __name__ == "__main__":
    main()
