"""Ingest with an unchanged standard tus client (tuspy, 64 MiB chunks) vs nginx's own WebDAV PUT, same run.

The issue's reference for "how fast can a server take a file": nginx (Debian's nginx-light, which has the
DAV module) receiving a `PUT` of the same 1 GiB MP4 into a folder, the copy then fsync'd. Ours: tuspy
(`TusClient.uploader(chunk_size=64 MiB)`, its defaults otherwise: no per-chunk checksum) to a fresh
`chairside cloud serve` with SQLite, timed until the last PATCH is answered (the server has hashed the
bytes, fsync'd them, and stored and probed the item). Both over loopback; each round runs both back to
back after a `sync`. One warm-up round (not counted) loads PyAV and fills the page cache.

For each side the CPU seconds per GiB are printed: the server's process tree (ours) or nginx's (theirs),
and the client's (tuspy in this process; curl as a child). With `--profile`, py-spy samples the server
during one more upload and prints where its time goes (self time per function, top 15).

With `--granian`, each round also uploads to the same app served by granian (a Rust HTTP server) on the same
data folder, to show what the HTTP server itself costs.

    .venv/bin/python bench/ingest_dav.py [--size-mib 1024] [--runs 3] [--chunk-mib 64] [--profile] [--granian]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tusclient import client as tus_client

from _common import WORK, GiB, MiB, Server, Service, fmt_runs, free_port, header, long_video, median, seed, workdir

TARGET = 0.8
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DavNginx(Service):
    """nginx with one WebDAV location accepting PUTs into PREFIX/dav (its temp files on the same disk)."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        for sub in ("logs", "tmp", "dav"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
            (prefix / sub).chmod(0o777)  # nginx started as root writes as its worker user (nobody)
        for folder in (prefix, prefix.parent):  # the work folder is made 0700 by mkdtemp
            folder.chmod(0o755)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp; fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location = /api/v1/health {{ return 200 "ok"; }}
        location /dav/ {{
            root {prefix};
            dav_methods PUT DELETE;
            create_full_put_path on;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }}
    }}
}}
""")
        self._port = port
        super().__init__([NGINX, "-p", str(prefix), "-c", str(conf)], prefix / "nginx.out")

    @property
    def port(self) -> int:
        return self._port


class GranianServer(Service):
    """The same app (`chairside.cli.cloud:worker_app`) under granian, a Rust HTTP server, for comparison:
    one worker, uvloop. Our own request-line/header bounds (api/limits.py) are uvicorn's protocol class and
    do not apply here."""

    def __init__(self, data_dir: Path) -> None:
        port = free_port()
        args = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--factory", "--loop", "uvloop",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "chairside.cli.cloud:worker_app"]
        super().__init__(args, data_dir.parent / f"granian-{port}.log", {"CHAIRSIDE_DATA_DIR": str(data_dir)})


def timed_dav(nginx: DavNginx, src: Path) -> tuple[float, float, float]:
    """Seconds for curl's PUT plus the fsync of the stored file; nginx's and curl's CPU seconds."""
    name = f"{uuid.uuid4().hex}.mp4"
    os.sync()
    cpu0, child0 = nginx.cpu_seconds(), _children_cpu()
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "-f", "-T", str(src), f"{nginx.url}/dav/{name}", "-o", "/dev/null"], check=True)
    stored = nginx.prefix / "dav" / name
    _fsync(stored)
    elapsed = time.perf_counter() - t0
    server_cpu, client_cpu = nginx.cpu_seconds() - cpu0, _children_cpu() - child0
    if stored.stat().st_size != src.stat().st_size:
        raise RuntimeError("nginx stored a file of another size")
    stored.unlink()
    return elapsed, server_cpu, client_cpu


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def tuspy_upload(url: str, token: str, patient_id: object, src: Path, chunk: int) -> None:
    client = tus_client.TusClient(f"{url}/api/v1/uploads/", headers={"Authorization": f"Bearer {token}"})
    with src.open("rb") as f:  # tuspy leaks the file it opens from a path
        uploader = client.uploader(file_stream=f, chunk_size=chunk, metadata={
            "patient_id": str(patient_id), "media_id": str(uuid.uuid4()), "filename": src.name})
        uploader.upload()


def timed_tus(server: Service, token: str, patient_id: object, src: Path, chunk: int) -> tuple[float, float, float]:
    os.sync()
    cpu0, me0 = server.cpu_seconds(), time.process_time()
    t0 = time.perf_counter()
    tuspy_upload(server.url, token, patient_id, src, chunk)
    return time.perf_counter() - t0, server.cpu_seconds() - cpu0, time.process_time() - me0


def profile(server: Server, token: str, patient_id: object, src: Path, chunk: int, out: Path) -> None:
    """Sample the server with py-spy during one upload; print self time per function."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("   (py-spy is not installed: `.venv/bin/pip install py-spy` for --profile)")
        return
    proc = subprocess.Popen([spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "200",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    tuspy_upload(server.url, token, patient_id, src, chunk)
    proc.send_signal(2)
    proc.wait(60)
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        frame = frames[-1]
        n = int(count)
        total += n
        leaf[frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]] += n
    print(f"   profile of the server during one upload ({total} busy samples at 200 Hz; self time, all threads):")
    for frame, n in leaf.most_common(15):
        print(f"     {100 * n / total:5.1f} %  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-mib", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--granian", action="store_true", help="also upload to the same app served by granian")
    args = parser.parse_args()

    header("ingest: tuspy (unchanged, 64 MiB chunks) vs nginx WebDAV PUT, both fsync'd, loopback")
    src = long_video(WORK / f"video-{args.size_mib}MiB.mp4", args.size_mib * MiB)
    gib = src.stat().st_size / GiB
    chunk = args.chunk_mib * MiB
    ours: list[float] = []
    theirs: list[float] = []
    on_granian: list[float] = []
    cpu: dict[str, list[float]] = {"server": [], "tuspy": [], "nginx": [], "curl": [], "granian": []}
    with workdir("ingest-dav") as wd, contextlib.ExitStack() as stack:
        seeded = seed(wd / "data")
        server = stack.enter_context(Server(seeded.data_dir))
        nginx = stack.enter_context(DavNginx(wd / "nginx"))
        if args.granian and not (Path(sys.executable).parent / "granian").exists():
            raise SystemExit("--granian needs granian: .venv/bin/pip install granian")
        granian = stack.enter_context(GranianServer(seeded.data_dir)) if args.granian else None
        timed_tus(server, seeded.token, seeded.patient_id, src, chunk)  # warm-up
        timed_dav(nginx, src)
        if granian is not None:
            timed_tus(granian, seeded.token, seeded.patient_id, src, chunk)
        for run in range(1, args.runs + 1):
            t_ours, s_cpu, c_cpu = timed_tus(server, seeded.token, seeded.patient_id, src, chunk)
            t_dav, n_cpu, curl_cpu = timed_dav(nginx, src)
            ours.append(src.stat().st_size / MiB / t_ours)
            theirs.append(src.stat().st_size / MiB / t_dav)
            cpu["server"].append(s_cpu / gib)
            cpu["tuspy"].append(c_cpu / gib)
            cpu["nginx"].append(n_cpu / gib)
            cpu["curl"].append(curl_cpu / gib)
            print(f"   run {run}: tuspy→chairside {ours[-1]:6.0f} MiB/s (server {s_cpu / gib:.2f} CPU s/GiB, "
                  f"client {c_cpu / gib:.2f}) · curl→nginx DAV {theirs[-1]:6.0f} MiB/s (nginx "
                  f"{n_cpu / gib:.2f} CPU s/GiB, curl {curl_cpu / gib:.2f}) · load {os.getloadavg()[0]:.1f}")
            if granian is not None:
                t_gr, g_cpu, _ = timed_tus(granian, seeded.token, seeded.patient_id, src, chunk)
                on_granian.append(src.stat().st_size / MiB / t_gr)
                cpu["granian"].append(g_cpu / gib)
                print(f"          tuspy→chairside on granian {on_granian[-1]:6.0f} MiB/s "
                      f"(server {g_cpu / gib:.2f} CPU s/GiB)")
        if args.profile:
            profile(server, seeded.token, seeded.patient_id, src, chunk, wd / "profile.txt")
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"tuspy → chairside : {median(ours):6.0f} MiB/s (median of {fmt_runs(ours)}); server "
          f"{median(cpu['server']):.2f} CPU s/GiB, client {median(cpu['tuspy']):.2f}")
    print(f"curl → nginx DAV  : {median(theirs):6.0f} MiB/s (median of {fmt_runs(theirs)}); nginx "
          f"{median(cpu['nginx']):.2f} CPU s/GiB, curl {median(cpu['curl']):.2f}")
    if on_granian:
        g_ratios = [a / b for a, b in zip(on_granian, theirs, strict=True)]
        print(f"on granian        : {median(on_granian):6.0f} MiB/s (median of {fmt_runs(on_granian)}); server "
              f"{median(cpu['granian']):.2f} CPU s/GiB; vs nginx DAV {median(g_ratios):.2f}")
    ratio = median(ratios)
    print(f"ratio (per-round, median of {fmt_runs(ratios, '.2f')}): {ratio:.2f} (target >= {TARGET}) "
          f"{'OK' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
