"""Media bytes behind nginx: random 1 MiB ranges of a 1 GiB video, 16 clients, three ways in the same run.

- **direct** (the reference): nginx serving the blob file itself (bench/serve.py's configuration:
  `sendfile on`, keep-alive, no authorisation at all).
- **x-accel**: the production recipe. nginx made by `chairside deploy nginx-config` in front of one
  `chairside cloud serve` with `CHAIRSIDE_OFFLOAD=nginx`: every request is authorised by the app
  (bearer token, scope, audit record, Range/If-Range/ETag decided) and answered with
  `X-Accel-Redirect`; nginx sends the bytes.
- **app**: `chairside cloud serve` alone sending the bytes itself (`CHAIRSIDE_OFFLOAD=none`).

Targets: x-accel/direct >= 0.9; app/direct >= 0.7. Rounds alternate; the file is in the page cache.

    .venv/bin/python bench/nginx.py [--size-mib 1024] [--runs 3] [--seconds 10] [--client wrk|python]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from _common import MiB, Server, fmt_runs, free_port, header, median, stop, tree_cpu_seconds, workdir
from _load import Load, have_wrk, run_python, run_wrk
from serve import CLIENTS, RANGE, Nginx, check_range, nginx_binary, stored_video

XACCEL_TARGET = 0.9
APP_TARGET = 0.7


class FrontNginx:
    """nginx with the configuration `chairside deploy nginx-config` prints, in front of `upstreams`."""

    def __init__(self, wd: Path, upstreams: list[str], data: Path, workers: str) -> None:
        self.wd = wd / "front"
        (self.wd / "logs").mkdir(parents=True, exist_ok=True)
        (self.wd / "tmp").mkdir(exist_ok=True)
        self.port = free_port()
        args = [str(Path(sys.executable).parent / "chairside"), "deploy", "nginx-config", "--listen", str(self.port),
                "--host", "127.0.0.1", "--data", str(data), "--workers", workers]
        for u in upstreams:
            args += ["--upstream", u]
        if os.geteuid() == 0:
            args += ["--user", "root"]
        conf = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        conf = conf.replace("access_log logs/access.log;", "access_log off;")  # as the reference: no log
        self.conf = self.wd / "nginx.conf"
        self.conf.write_text(conf)

    def __enter__(self) -> FrontNginx:
        binary = nginx_binary()
        assert binary is not None
        self.proc = subprocess.Popen([binary, "-p", str(self.wd), "-c", str(self.conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load round")
    parser.add_argument("--nginx-workers", default="auto")
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk" if have_wrk() else "python")
    args = parser.parse_args()
    if nginx_binary() is None:
        sys.exit("nginx is not installed: apt-get install -y nginx-light, then run this again.")
    header(f"nginx: {CLIENTS} clients x random 1 MiB ranges: nginx direct vs X-Accel vs the app ({args.client})")
    with workdir("nginx") as wd:
        seeded, media_id, blob, size = stored_video(wd, args.size_mib)
        auth = {"Authorization": f"Bearer {seeded.token}"}
        path = f"/api/v1/media/{media_id}/content"

        def load(url: str, headers: dict[str, str], run: int) -> Load:
            if args.client == "wrk":
                return run_wrk(url, headers, size, RANGE, CLIENTS, args.seconds, wd, seed=run)
            return run_python(url, headers, size, RANGE, CLIENTS, args.seconds, seed=run)

        offloaded = Server(seeded.data_dir, env={"CHAIRSIDE_OFFLOAD": "nginx"})
        app_only = Server(seeded.data_dir, env={"CHAIRSIDE_OFFLOAD": "none"})
        with offloaded, app_only, Nginx(wd, blob, args.nginx_workers) as direct, \
                FrontNginx(wd, [offloaded.url], seeded.data_dir, args.nginx_workers) as front:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(front.url + "/api/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the front nginx did not start")
                time.sleep(0.1)
            ways = {
                "direct": (direct.url, {}, [direct.proc.pid]),
                "x-accel": (front.url + path, auth, [front.proc.pid, offloaded.pid]),
                "app": (app_only.url + path, auth, [app_only.pid]),
            }
            for url, headers, _ in ways.values():
                check_range(url, headers, size)
                load(url, headers, 0)  # warm-up round, not counted
            results: dict[str, list[Load]] = {name: [] for name in ways}
            cpu: dict[str, list[float]] = {name: [] for name in ways}
            for run in range(1, args.runs + 1):
                for name, (url, headers, pids) in ways.items():
                    cpu0 = sum(tree_cpu_seconds(p) for p in pids)
                    result = load(url, headers, run)
                    cpu[name].append((sum(tree_cpu_seconds(p) for p in pids) - cpu0) / result.seconds)
                    results[name].append(result)
                    print(f"   run {run} {name:7s}: {result.line()}  server CPU {cpu[name][-1]:.2f} cores")
    mib = {name: median([r.mib_s for r in rs]) for name, rs in results.items()}
    for name, rs in results.items():
        print(f"{name:8s}: {mib[name]:6.0f} MiB/s {median([r.req_s for r in rs]):6.0f} req/s  "
              f"p50 {median([r.p50_ms for r in rs]):.1f} ms  p99 {median([r.p99_ms for r in rs]):.1f} ms  "
              f"(MiB/s {fmt_runs([r.mib_s for r in rs])}; server CPU {median(cpu[name]):.2f} cores; "
              f"errors {sum(r.errors for r in rs)})")
    for name, target in (("x-accel", XACCEL_TARGET), ("app", APP_TARGET)):
        ratio = mib[name] / mib["direct"]
        print(f"ratio {name}/direct (MiB/s): {ratio:.2f} (target >= {target}) {'PASS' if ratio >= target else 'FAIL'}")
    print(f"   file: {size / MiB:,.0f} MiB; {args.runs} rounds of {args.seconds:.0f} s per way")


if __name__ == "__main__":
    main()
