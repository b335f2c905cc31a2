"""Byte serving: 16 concurrent clients reading random 1 MiB ranges of a 1 GiB video, against nginx.

Reference: nginx (Debian's nginx-light or nginx, run here in the foreground with a generated
config, `sendfile on`, `worker_processes auto`, keep-alive) serving the very same blob file
from the blob store's path. Ours: `chairside cloud serve` answering
GET /api/v1/media/{id}/content with a `Range` header and the station's bearer token (so each
request also authenticates and looks the item up in SQLite). Both are loaded the same way
(wrk with a Lua script when installed, else Python threads), in alternating rounds; the
file is in the page cache for both.

    .venv/bin/python bench/serve.py [--runs 3] [--seconds 15] [--workers 1] [--client wrk|python]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from _common import (
    WORK,
    MiB,
    Seeded,
    Server,
    fmt_runs,
    free_port,
    header,
    long_video,
    median,
    seed,
    stop,
    tree_cpu_seconds,
    workdir,
)
from _load import Load, have_wrk, run_python, run_wrk

TARGET = 0.5
CLIENTS = 16
RANGE = 1 * MiB

NGINX_CONF = """
worker_processes {workers};
daemon off;
master_process on;
pid {wd}/nginx.pid;
error_log {wd}/nginx-error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {wd}/nginx-tmp/body;
    proxy_temp_path {wd}/nginx-tmp/proxy;
    fastcgi_temp_path {wd}/nginx-tmp/fastcgi;
    uwsgi_temp_path {wd}/nginx-tmp/uwsgi;
    scgi_temp_path {wd}/nginx-tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /blob {{
            alias {blob};
            default_type video/mp4;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class Nginx:
    def __init__(self, wd: Path, blob: Path, workers: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/blob"
        (wd / "nginx-tmp").mkdir(exist_ok=True)
        user = "user root root;" if os.geteuid() == 0 else ""  # blobs are 0440: read them as their owner
        self.conf = wd / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(workers=workers, wd=wd, user=user, port=self.port, blob=blob))
        self.wd = wd

    def __enter__(self) -> Nginx:
        binary = nginx_binary()
        assert binary is not None
        self.log = (self.wd / "nginx-out.log").open("wb")
        self.proc = subprocess.Popen([binary, "-p", str(self.wd), "-c", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url, headers={"Range": "bytes=0-0"}, timeout=2).status_code == 206:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start: " + (self.wd / "nginx-error.log").read_text())
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)
        self.log.close()


def stored_video(wd: Path, size_mib: int) -> tuple[Seeded, uuid.UUID, Path, int]:
    """A seeded data folder holding one ingested video; answers (seeded, media id, blob path, size)."""
    from chairside.context import build_context
    from chairside.media.ingest import IngestRequest, file_sha256, ingest
    from chairside.settings import Settings
    seeded = seed(wd / "data")
    source = long_video(WORK / f"video-{size_mib}MiB.mp4", size_mib * MiB)
    copy = wd / "data" / "incoming.mp4"
    shutil.copyfile(source, copy)
    ctx = build_context(Settings.load(environ={}, data_dir=seeded.data_dir))
    try:
        media_id = uuid.uuid4()
        sha = file_sha256(copy)
        ingest(ctx.db, ctx.blobs, IngestRequest(
            path=copy, sha256=sha, size=copy.stat().st_size, media_id=media_id,
            contract_id=seeded.contract_id, clinic_id=seeded.clinic_id, patient_id=seeded.patient_id,
            filename="long.mp4", captured_at=None, source="migration",
        ))
        blob = ctx.blobs.local_path(sha)
        assert blob is not None
    finally:
        ctx.db.dispose()
    size = blob.stat().st_size
    with blob.open("rb") as f:  # into the page cache, for both servers
        while f.read(16 * MiB):
            pass
    return seeded, media_id, blob, size


def check_range(url: str, headers: dict[str, str], size: int) -> None:
    r = httpx.get(url, headers={**headers, "Range": f"bytes=1000-{1000 + RANGE - 1}"}, timeout=30)
    assert r.status_code == 206 and len(r.content) == RANGE, (url, r.status_code, r.headers)
    assert r.headers["content-range"] == f"bytes 1000-{1000 + RANGE - 1}/{size}", r.headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each load round")
    parser.add_argument("--workers", type=int, default=1, help="our server's worker processes")
    parser.add_argument("--nginx-workers", default="auto")
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk" if have_wrk() else "python")
    parser.add_argument("--what-if", action="append", default=[],
                        help="serve with a proposed change applied (bench/_whatif.py)")
    args = parser.parse_args()

    if nginx_binary() is None:
        sys.exit("nginx is not installed: apt-get install -y nginx-light (or nginx), then run this again.\n"
                 "(wrk is optional but preferred: apt-get install -y wrk)")
    header(f"serve: {CLIENTS} clients x random 1 MiB ranges, ours vs nginx ({args.client} load)")
    with workdir("serve") as wd:
        seeded, media_id, blob, size = stored_video(wd, args.size_mib)
        auth = {"Authorization": f"Bearer {seeded.token}"}
        extra = ["--workers", str(args.workers)] if args.workers > 1 else []
        print(f"   file: {size / MiB:,.0f} MiB blob; our workers: {args.workers}; nginx workers: "
              f"{args.nginx_workers}; {args.runs} rounds of {args.seconds:.0f} s each"
              + (f"; what-if: {', '.join(args.what_if)}" if args.what_if else ""))

        def load(url: str, headers: dict[str, str], run: int) -> Load:
            if args.client == "wrk":
                return run_wrk(url, headers, size, RANGE, CLIENTS, args.seconds, wd, seed=run)
            return run_python(url, headers, size, RANGE, CLIENTS, args.seconds, seed=run)

        ours_url = None
        results: dict[str, list[Load]] = {"nginx": [], "ours": []}
        cpu: dict[str, list[float]] = {"nginx": [], "ours": []}
        server = Server(seeded.data_dir, extra=extra, what_if=args.what_if)
        with server, Nginx(wd, blob, args.nginx_workers) as nginx:
            ours_url = f"{server.url}/api/v1/media/{media_id}/content"
            check_range(ours_url, auth, size)
            check_range(nginx.url, {}, size)
            load(ours_url, auth, 0)  # warm-up round (thread pools, SQLite cache), not counted
            load(nginx.url, auth, 0)
            for run in range(1, args.runs + 1):
                for name, url, pid in (("nginx", nginx.url, nginx.proc.pid), ("ours", ours_url, server.pid)):
                    cpu0 = tree_cpu_seconds(pid)
                    result = load(url, auth, run)
                    cpu[name].append((tree_cpu_seconds(pid) - cpu0) / result.seconds)
                    results[name].append(result)
                    print(f"   run {run} {name:5s}: {result.line()}  server CPU {cpu[name][-1]:.2f} cores")
    summary = {}
    for name in ("nginx", "ours"):
        rs = results[name]
        summary[name] = (median([r.mib_s for r in rs]), median([r.req_s for r in rs]),
                         median([r.p50_ms for r in rs]), median([r.p99_ms for r in rs]))
        label = "reference nginx" if name == "nginx" else "ours           "
        print(f"{label}: {summary[name][0]:6.0f} MiB/s {summary[name][1]:6.0f} req/s  p50 {summary[name][2]:.1f} ms"
              f"  p99 {summary[name][3]:.1f} ms  (median of {len(rs)} rounds; MiB/s {fmt_runs([r.mib_s for r in rs])};"
              f" server CPU {median(cpu[name]):.2f} cores; errors {sum(r.errors for r in rs)})")
    ratio = summary["ours"][0] / summary["nginx"][0]
    print(f"ratio ours/nginx (MiB/s): {ratio:.2f} (target >= {TARGET}) {'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
