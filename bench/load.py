"""A clinic-day against 1, 2 and 4 cloud servers behind nginx, on PostgreSQL: stations, viewers, relays at once.

The production recipe of docs/operations.md on loopback: N `chairside cloud serve` processes with
`CHAIRSIDE_OFFLOAD=nginx` on one PostgreSQL database and one blob folder, nginx made by
`chairside deploy nginx-config` in front. An asyncio harness of our own (httpx) plays, for
`--seconds`:

- **S stations**, each recording back to back: a real H.264 MP4 (made once per size) uploaded with
  tus at **15 Mbit/s** (the body paced as a capture card writes it), then a photo;
- **V viewers**, each signed in (one device each) and looping without pause: search a patient by
  kana prefix, scroll the patient's timeline (the media list), fetch a thumbnail, seek the video
  (three random 1 MiB ranges);
- **R relays** long-polling the changes feed (`wait=5`) and following it.

It reports per operation the count, p50/p95/p99 and errors (must be 0), the ingest rate, the
viewers' operations per second (closed loop: the saturating load), each server's peak RSS and the
CPU of every process; then checks that every acknowledged upload is stored exactly once, with
the SHA-256 the station computed. Bounded: `--seconds` of load, at most `--max-uploads` uploads.

    .venv/bin/python bench/load.py [--servers 1,2,4] [--stations 50] [--viewers 50] [--relays 10]
                                   [--seconds 60] [--clip-mib 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from _common import BIN, WORK, MiB, Server, free_port, header, percentile, stop, tree, workdir

RATE_BPS = 15_000_000 // 8  # 15 Mbit/s
PIECE = 64 * 1024
PG_ADMIN = os.environ.get("CHAIRSIDE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
API_OPS = ("search", "timeline", "thumbnail", "sign-in")


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    acked: dict[str, str] = field(default_factory=dict)  # media id -> sha256 of an acknowledged upload
    ingest_bytes: int = 0

    def ok(self, op: str, seconds: float) -> None:
        self.latency[op].append(seconds)

    def fail(self, op: str, what: str) -> None:
        self.errors[op].append(what[:300])


def clip(size_mib: int, n: int) -> Path:
    """A real MP4 of about `size_mib` MiB (distinct content per n), made once and cached in bench/.work/."""
    path = WORK / f"load-clip-{size_mib}MiB-{n}.mp4"
    if not path.exists():
        from chairside.mediafile.generate import make_long_video
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".making.mp4")
        make_long_video(tmp, target_bytes=size_mib * MiB, width=1280, height=720, seed=n, label=f"load {n}")
        tmp.rename(path)
    return path


def photo(n: int) -> Path:
    path = WORK / f"load-photo-{n}.jpg"
    if not path.exists():
        from chairside.mediafile.generate import make_jpeg
        WORK.mkdir(parents=True, exist_ok=True)
        make_jpeg(path, width=1600, height=1200, seed=n)
    return path


# -- the world: database, seeded tenants, servers, nginx -------------------------------------

@dataclass
class World:
    database_url: str
    data: Path
    stations: list[tuple[str, str]]  # (token, patient id)
    viewers: list[tuple[str, str]]  # (login, password)
    relays: list[str]
    patients: list[tuple[str, str]]  # (id, kana)


def seed(data: Path, database_url: str, stations: int, viewers: int, relays: int) -> World:
    from _common import operator
    from chairside.auth.accounts import create_account
    from chairside.context import build_context
    from chairside.patients import service as patients
    from chairside.settings import Settings
    from chairside.tenancy.service import create_clinic, create_contract, create_relay, create_station
    ctx = build_context(Settings.load(environ={}, data_dir=data, database_url=database_url))
    try:
        contract = create_contract(ctx, "医療法人 負荷試験会", None).id
        clinics = [create_clinic(ctx, contract, f"負荷歯科 {i + 1}").id for i in range(max(1, stations // 5))]
        kana = ["ヤマダ", "タナカ", "スズキ", "サトウ", "イトウ", "ワタナベ", "ナカムラ", "コバヤシ"]
        people = []
        for i in range(max(40, stations)):
            clinic = clinics[i % len(clinics)]
            p = patients.create(ctx, operator(contract), clinic, f"{i:05d}", f"患者 {i}", f"{kana[i % 8]} {i}")
            people.append((str(p.id), kana[i % 8], clinic))
        st = []
        for i in range(stations):
            pid, _, clinic = people[i]
            st.append((create_station(ctx, clinic, f"Chair {i}")[1], pid))
        vw = []
        for i in range(viewers):
            create_account(ctx, contract, f"viewer{i}", f"pw-viewer{i}-0123456789")
            vw.append((f"viewer{i}", f"pw-viewer{i}-0123456789"))
        rl = [create_relay(ctx, clinics[i % len(clinics)], f"relay {i}")[1] for i in range(relays)]
    finally:
        ctx.db.dispose()
    return World(database_url, data, st, vw, rl, [(p, k) for p, k, _ in people])


class Front:
    """nginx from `chairside deploy nginx-config`, with offload to the blob folder."""

    def __init__(self, wd: Path, upstreams: list[str], data: Path) -> None:
        self.wd = wd
        (wd / "logs").mkdir(parents=True, exist_ok=True)
        (wd / "tmp").mkdir(exist_ok=True)
        self.port = free_port()
        args = [str(BIN / "chairside"), "deploy", "nginx-config", "--listen", str(self.port), "--host", "127.0.0.1",
                "--data", str(data), "--workers", "2"]
        for u in upstreams:
            args += ["--upstream", u]
        if os.geteuid() == 0:
            args += ["--user", "root"]
        conf = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        (wd / "nginx.conf").write_text(conf.replace("access_log logs/access.log;", "access_log off;"))

    def __enter__(self) -> Front:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-p", str(self.wd), "-c", str(self.wd / "nginx.conf"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Sampler(threading.Thread):
    """Peak RSS of each server (its process tree) and CPU seconds of every process, sampled 4× a second."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self.cpu0 = {name: self._cpu(pid) for name, pid in pids.items()}
        self.cpu: dict[str, float] = {}
        self.done = threading.Event()

    @staticmethod
    def _cpu(pid: int) -> float:
        total = 0.0
        for p in tree(pid):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self.done.wait(0.25):
            for name, pid in self.pids.items():
                rss = 0
                for p in tree(pid):
                    with contextlib.suppress(psutil.Error):
                        rss = max(rss, p.memory_info().rss)  # per process: each server is one process
                self.peak[name] = max(self.peak[name], rss)

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.cpu = {name: self._cpu(pid) - self.cpu0[name] for name, pid in self.pids.items()}


# -- the actors ------------------------------------------------------------------------------

def _meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def _paced(path: Path, start: int, stop_at: float) -> AsyncIterator[bytes]:
    """The file from `start`, at 15 Mbit/s, as a capture card writes it."""
    t0 = time.monotonic()
    sent = 0
    with path.open("rb") as f:
        f.seek(start)
        while piece := f.read(PIECE):
            yield piece
            sent += len(piece)
            ahead = sent / RATE_BPS - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def upload(http: httpx.AsyncClient, token: str, patient: str, path: Path, stats: Stats, end: float,
                 paced: bool) -> None:
    media_id = str(uuid.uuid4())
    data_sha, size = _sha(path)
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    t = time.perf_counter()
    r = await http.post("/api/v1/uploads/", headers={**auth, "Upload-Length": str(size), "Upload-Metadata": _meta(
        patient_id=patient, media_id=media_id, filename=path.name)})
    if r.status_code != 201:
        stats.fail("upload", f"create {r.status_code} {r.text}")
        return
    stats.ok("upload-create", time.perf_counter() - t)
    url = r.headers["Location"]
    body = _paced(path, 0, end) if paced else _plain(path)
    r = await http.patch(url, content=body, headers={**auth, "Upload-Offset": "0", "Content-Length": str(size),
                                                     "Content-Type": "application/offset+octet-stream"})
    if r.status_code != 204 or int(r.headers.get("Upload-Offset", -1)) != size:
        stats.fail("upload", f"patch {r.status_code} {r.text[:200]}")
        return
    stats.ok("upload", time.perf_counter() - t)
    stats.acked[media_id] = data_sha
    stats.ingest_bytes += size


async def _plain(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while piece := f.read(MiB):
            yield piece


_SHAS: dict[Path, tuple[str, int]] = {}


def _sha(path: Path) -> tuple[str, int]:
    """The file's SHA-256 and size (computed once, before the run: `main` warms this)."""
    if path not in _SHAS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(MiB):
                h.update(block)
        _SHAS[path] = (h.hexdigest(), path.stat().st_size)
    return _SHAS[path]


async def station(http: httpx.AsyncClient, token: str, patient: str, clips: list[Path], photos: list[Path],
                  stats: Stats, end: float, budget: list[int]) -> None:
    n = 0
    while time.monotonic() < end and budget[0] > 0:
        budget[0] -= 2
        await upload(http, token, patient, clips[n % len(clips)], stats, end, paced=True)
        await upload(http, token, patient, photos[n % len(photos)], stats, end, paced=False)
        n += 1


async def timed(stats: Stats, op: str, call: asyncio.Future[httpx.Response] | object,
                expect: tuple[int, ...] = (200,)) -> httpx.Response | None:
    t = time.perf_counter()
    try:
        r: httpx.Response = await call  # type: ignore[misc]
    except httpx.HTTPError as e:
        stats.fail(op, repr(e))
        return None
    if r.status_code not in expect:
        stats.fail(op, f"{r.status_code} {r.text[:200]}")
        return None
    stats.ok(op, time.perf_counter() - t)
    return r


async def viewer(http: httpx.AsyncClient, login: str, password: str, world: World, stats: Stats, end: float,
                 rng: random.Random) -> None:
    r = await timed(stats, "sign-in", http.post("/api/v1/sessions", json={
        "login": login, "password": password, "device_name": f"bench {login}"}), (201,))
    if r is None:
        return
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    while time.monotonic() < end:
        pid, kana = rng.choice(world.patients)
        await timed(stats, "search", http.get("/api/v1/patients", params={"q": kana[:2]}, headers=auth))
        page = await timed(stats, "timeline", http.get(f"/api/v1/patients/{pid}/media", headers=auth))
        items = page.json()["items"] if page is not None else []
        if not items:
            await asyncio.sleep(0.2)  # nothing recorded for this patient yet
            continue
        item = rng.choice(items)
        await timed(stats, "thumbnail", http.get(f"/api/v1/media/{item['id']}/thumbnail", headers=auth))
        for _ in range(3):
            start = rng.randrange(0, max(1, item["size"] - MiB))
            await timed(stats, "seek", http.get(f"/api/v1/media/{item['id']}/content", headers={
                **auth, "Range": f"bytes={start}-{start + MiB - 1}"}), (206, 200))


async def relay(http: httpx.AsyncClient, token: str, stats: Stats, end: float) -> None:
    after = 0
    auth = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < end:
        r = await timed(stats, "feed", http.get("/api/v1/feed", params={"after": after, "wait": 5}, headers=auth,
                                                timeout=30))
        if r is not None:
            after = r.json()["next"]


async def play(url: str, world: World, clips: list[Path], photos: list[Path], seconds: float,
               max_uploads: int) -> tuple[Stats, float]:
    stats = Stats()
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    budget = [max_uploads]
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        rng = random.Random(1)
        t0 = time.monotonic()
        await asyncio.gather(
            *(station(http, tok, pid, clips, photos, stats, end, budget) for tok, pid in world.stations),
            *(viewer(http, login, pw, world, stats, end, random.Random(rng.random()))
              for login, pw in world.viewers),
            *(relay(http, tok, stats, end) for tok in world.relays),
        )
        elapsed = time.monotonic() - t0
    return stats, elapsed


def exactly_once(world: World, stats: Stats) -> str:
    """Every acknowledged upload is one media row with the station's SHA-256, and its blob is there."""
    from sqlalchemy import select

    from chairside.blobs import open_blob_store
    from chairside.db.engine import Database
    from chairside.db.models import Media
    db = Database(world.database_url)
    blobs = open_blob_store(str(world.data / "blobs"))
    try:
        with db.read() as s:
            rows = {str(m.id): (m.sha256, m.size) for m in s.scalars(select(Media))}
    finally:
        db.dispose()
    missing = [m for m in stats.acked if m not in rows]
    wrong = [m for m, sha in stats.acked.items() if m in rows and rows[m][0] != sha]
    extra = [m for m in rows if m not in stats.acked]
    lost = [m for m in stats.acked if m in rows and (blobs.stat(rows[m][0]) is None)]
    verdict = "PASS" if not (missing or wrong or lost) else "FAIL"
    return (f"exactly-once: {len(stats.acked)} acknowledged, {len(rows)} rows; missing {len(missing)}, wrong sha "
            f"{len(wrong)}, blob missing {len(lost)}, rows never acknowledged {len(extra)} (uploads cut by the end "
            f"of the run) {verdict}")


def report(n: int, stats: Stats, elapsed: float, sampler: Sampler) -> dict[str, float]:
    print(f"\n-- {n} server(s): {elapsed:.0f} s")
    print(f"   {'operation':14s} {'count':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'errors':>7s}")
    for op in sorted(set(stats.latency) | set(stats.errors)):
        ms = [x * 1000 for x in stats.latency[op]] or [0.0]
        print(f"   {op:14s} {len(stats.latency[op]):7d} {percentile(ms, 50):8.1f} {percentile(ms, 95):8.1f} "
              f"{percentile(ms, 99):8.1f} {len(stats.errors[op]):7d}")
    for op, errs in stats.errors.items():
        for e in errs[:3]:
            print(f"   ! {op}: {e}")
    api = [x * 1000 for op in API_OPS for x in stats.latency[op]] or [0.0]
    viewer_ops = sum(len(stats.latency[op]) for op in ("search", "timeline", "thumbnail", "seek"))
    ingest = stats.ingest_bytes / elapsed / MiB
    print(f"   API (search, timeline, thumbnail, sign-in) p95 {percentile(api, 95):.1f} ms; viewer operations "
          f"{viewer_ops / elapsed:.0f}/s; ingest {ingest:.1f} MiB/s ({ingest * 8 * 1.048576:.0f} Mbit/s); "
          f"errors {sum(len(e) for e in stats.errors.values())}")
    for name, peak in sampler.peak.items():
        print(f"   {name}: peak RSS {peak / MiB:.0f} MiB, CPU {sampler.cpu.get(name, 0):.0f} s "
              f"({sampler.cpu.get(name, 0) / elapsed:.2f} cores)")
    return {"viewer_ops_s": viewer_ops / elapsed, "api_p95_ms": percentile(api, 95), "ingest_mib_s": ingest,
            "errors": sum(len(e) for e in stats.errors.values()),
            "peak_rss_mib": max((p for k, p in sampler.peak.items() if k.startswith("server")), default=0) / MiB}


def run_one(n: int, args: argparse.Namespace, clips: list[Path], photos: list[Path]) -> dict[str, float]:
    import psycopg
    name = f"chairside_load_{os.getpid()}_{n}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    try:
        with workdir(f"load{n}") as wd:
            world = seed(wd / "data", url, args.stations, args.viewers, args.relays)
            servers = [Server(world.data, database_url=url, env={"CHAIRSIDE_OFFLOAD": "nginx"}) for _ in range(n)]
            started: list[Server] = []
            try:
                for s in servers:
                    s.__enter__()
                    started.append(s)
                with Front(wd / "nginx", [s.url for s in servers], world.data) as front:
                    pids = {f"server {i + 1}": s.pid for i, s in enumerate(servers)}
                    pids["nginx"] = front.proc.pid
                    sampler = Sampler(pids)
                    sampler.start()
                    stats, elapsed = asyncio.run(play(front.url, world, clips, photos, args.seconds,
                                                      args.max_uploads))
                    sampler.stop()
                    figures = report(n, stats, elapsed, sampler)
                    print("   " + exactly_once(world, stats))
                    return figures
            finally:
                for s in started:
                    s.__exit__(None, None, None)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="1,2,4")
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--relays", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clip-mib", type=int, default=8)
    parser.add_argument("--max-uploads", type=int, default=2000)
    args = parser.parse_args()
    header(f"load: {args.stations} stations at 15 Mbit/s, {args.viewers} viewers, {args.relays} relays; "
           f"{args.seconds:.0f} s per set-up; servers {args.servers}")
    clips = [clip(args.clip_mib, n) for n in range(4)]
    photos = [photo(n) for n in range(4)]
    for p in clips + photos:
        _sha(p)
    print(f"   clips: {', '.join(f'{p.stat().st_size / MiB:.1f} MiB' for p in clips)} (real H.264 MP4, 1280x720)")
    results = {int(n): run_one(int(n), args, clips, photos) for n in args.servers.split(",")}
    print("\nsummary:")
    for n, f in results.items():
        print(f"   {n} server(s): viewer ops {f['viewer_ops_s']:.0f}/s, API p95 {f['api_p95_ms']:.1f} ms, "
              f"ingest {f['ingest_mib_s']:.1f} MiB/s, errors {f['errors']:.0f}, "
              f"peak RSS per server {f['peak_rss_mib']:.0f} MiB")
    if 1 in results and 2 in results:
        print(f"   scaling 1 -> 2 servers (viewer operations/s, the closed-loop load): "
              f"{results[2]['viewer_ops_s'] / results[1]['viewer_ops_s']:.2f}x")
    sys.exit(0 if all(f["errors"] == 0 for f in results.values()) else 1)


if __name__ == "__main__":
    main()
