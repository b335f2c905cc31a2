"""Range load generators for bench/serve.py: wrk with a Lua script, or Python threads.

Both keep one keep-alive connection per client, ask for a random 1 MiB range of one URL
in a loop for a fixed time, and answer the same figures, so the two servers are loaded
identically whichever generator is used.
"""

from __future__ import annotations

import http.client
import random
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from _common import MiB, percentile


@dataclass(frozen=True)
class Load:
    seconds: float
    requests: int
    bytes: int
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def mib_s(self) -> float:
        return self.bytes / MiB / self.seconds

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        return (f"{self.mib_s:7.0f} MiB/s {self.req_s:7.0f} req/s  p50 {self.p50_ms:6.1f} ms  "
                f"p99 {self.p99_ms:6.1f} ms  errors {self.errors}")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


_LUA = """
local size, len = %(size)d, %(length)d
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", %(seed)d + counter)
end
init = function(args)
  math.randomseed(seed)
end
request = function()
  local s = math.random(0, size - len)
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  headers["Range"] = "bytes=" .. s .. "-" .. (s + len - 1)
  return wrk.format("GET", nil, headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%%d bytes=%%d errors=%%d p50=%%d p99=%%d duration=%%d\\n",
    summary.requests, summary.bytes, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def run_wrk(url: str, headers: dict[str, str], size: int, length: int, clients: int, seconds: float,
            workdir: Path, seed: int = 1, threads: int = 2) -> Load:
    """wrk -t threads -c clients; every non-206 answer counts as an error (wrk's errors.status)."""
    script = workdir / "ranges.lua"
    script.write_text(_LUA % {"size": size, "length": length, "seed": seed})
    args = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds:.0f}s", "--timeout", "10s", "-s", str(script)]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT requests=(\d+) bytes=(\d+) errors=(\d+) p50=(\d+) p99=(\d+) duration=(\d+)", out)
    if m is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, nbytes, errors, p50, p99, duration = (int(g) for g in m.groups())
    # wrk counts 2xx and 3xx as success; a 206 is what we ask for, anything else shows as an error.
    return Load(duration / 1e6, requests, nbytes, errors, p50 / 1000, p99 / 1000)


def run_python(url: str, headers: dict[str, str], size: int, length: int, clients: int, seconds: float,
               seed: int = 1) -> Load:
    """`clients` threads, each with one keep-alive http.client connection, reading into a reused buffer."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    latencies: list[list[float]] = [[] for _ in range(clients)]
    counts = [[0, 0, 0] for _ in range(clients)]  # requests, bytes, errors
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        buf = bytearray(length)
        view = memoryview(buf)
        start.wait()
        while time.perf_counter() < stop_at[0]:
            s = rng.randrange(0, size - length + 1)
            t = time.perf_counter()
            conn.request("GET", path, headers={**headers, "Range": f"bytes={s}-{s + length - 1}"})
            resp = conn.getresponse()
            got = 0
            while not resp.isclosed() and (n := resp.readinto(view[got:])):
                got += n
            latencies[i].append(time.perf_counter() - t)
            counts[i][0] += 1
            counts[i][1] += got
            if resp.status != 206 or got != length:
                counts[i][2] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    flat = [x for lat in latencies for x in lat]
    return Load(elapsed, sum(c[0] for c in counts), sum(c[1] for c in counts), sum(c[2] for c in counts),
                percentile(flat, 50) * 1000, percentile(flat, 99) * 1000)
