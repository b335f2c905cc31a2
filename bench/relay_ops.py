"""Station operations through the clinic's relay while the WAN is healthy, slow or down.

A cloud (`chairside cloud serve`, SQLite) is seeded through the services (each row with its feed
event): a contract with two clinics A and B, a station of each, a relay token for
clinic A, `--patients` patients with Japanese names and kana (both clinics). Then real media are
uploaded to the cloud with the SDK (small H.264 clips and JPEGs from chairside.mediafile.generate),
most as clinic B's station, so they reach the relay through the changes feed only. Between the
relay and the cloud runs the userspace WAN emulator of the tests (tests/netem.py); `chairside
relay serve` starts on a fresh data folder with --upstream pointing at it, and the benchmark
waits until the relay's status says `feed.behind == 0` at the cloud's head and every thumbnail
has been prefetched.

Measured, as clinic A's station talking to the relay, one request after another over one
keep-alive httpx client:

- list patients      GET  /api/v1/patients?q=<kana prefix>
- open a patient     GET  /api/v1/patients/{id} (a patient not opened before, so every open
                     writes its audit line at the relay, as a first open does)
- start an upload    POST /api/v1/uploads/ (tus creation: Upload-Length and metadata for a new
                     media id); the upload is then cancelled with DELETE, not timed
- fetch a thumbnail  GET  /api/v1/media/{id}/thumbnail (items recorded at the other clinic)

in WAN states set on the proxy at run time, interleaved in `--rounds` rounds so that every state
sees the same moments of the machine (the stall comes last, in one block: what a stall swallows
hangs until its timeout, so it would spill into the next state):

- healthy   1 ms one-way delay, no rate cap
- degraded  150 ms one-way delay (300 ms RTT), 2 Mbit/s per direction
- down      full outage: open connections reset, new ones reset as they connect
- stalled   (extra) connections accepted, nothing forwarded: a dead route behind a NAT

While measuring, the relay is not idle (unless --quiet): a thread at the cloud corrects a clinic B
patient every 0.5 s (feed events reach the relay over the WAN of the moment and are applied in
write transactions), and before each block the station records a small video at the relay, which
the relay's uploader carries to the cloud during the block (or retries, when the WAN is down).

The cloud runs at nice 10: in a clinic it is another machine, here it shares the CPUs with the relay.

Reference, in the same run: the same operations sent by the station straight to the cloud through
a second proxy in the degraded state (fewer requests: each costs at least one 300 ms round trip).

Targets: p95 degraded / p95 healthy <= 1.2 and p95 down / p95 healthy <= 1.2 for every
operation; p95 direct-to-cloud (degraded) / p95 through the relay (degraded) >= 10.

    .venv/bin/python bench/relay_ops.py [--patients 1000] [--requests 200] [--rounds 10]
                                        [--direct-requests 30] [--control] [--quiet] [--no-stall]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from _common import ROOT, Relay, Server, header, operator, percentile, tree, tree_cpu_seconds, workdir

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.2
TARGET_SPEEDUP = 10.0
TUS = {"Tus-Resumable": "1.0.0"}

FAMILY = [
    ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"),
    ("吉田", "ヨシダ"), ("山田", "ヤマダ"), ("佐々木", "ササキ"), ("山口", "ヤマグチ"), ("松本", "マツモト"),
    ("井上", "イノウエ"), ("木村", "キムラ"), ("林", "ハヤシ"), ("斎藤", "サイトウ"), ("清水", "シミズ"),
]
GIVEN = [
    ("太郎", "タロウ", "male"), ("健一", "ケンイチ", "male"), ("大輔", "ダイスケ", "male"),
    ("翔太", "ショウタ", "male"), ("誠", "マコト", "male"), ("花子", "ハナコ", "female"),
    ("美咲", "ミサキ", "female"), ("陽子", "ヨウコ", "female"), ("由美", "ユミ", "female"),
    ("さくら", "サクラ", "female"), ("恵", "メグミ", "female"), ("愛", "アイ", "female"),
]
# What a receptionist types: the first two or three kana of the family name, hiragana or katakana.
QUERIES = ["サト", "すず", "タカ", "たな", "イト", "わた", "ヤマ", "なか", "コバ", "かと", "ヨシ", "やまだ", "ササ",
           "やまぐ", "マツ", "いの", "キム", "はや", "サイ", "しみ"]


@dataclass(frozen=True)
class State:
    name: str
    latency_s: float = 0.0
    rate_bps: float | None = None
    down: bool = False
    stall: bool = False


HEALTHY = State("healthy", latency_s=0.001)
DEGRADED = State("degraded", latency_s=0.150, rate_bps=2e6)
DOWN = State("down", down=True)
STALLED = State("stalled", stall=True)
CONTROL = State("healthy2", latency_s=0.001)  # the same as healthy: healthy2/healthy is the noise floor


@dataclass
class World:
    cloud_url: str
    station_a: str
    station_b: str
    relay_token: str
    clinic_a: uuid.UUID
    clinic_b: uuid.UUID
    patients_a: list[uuid.UUID]
    patients_b: list[uuid.UUID]
    media: list[str] = field(default_factory=list)  # items recorded at the cloud (mostly clinic B's)


# -- the cloud's data ----------------------------------------------------------------------

def seed_cloud(data_dir: Path, patients: int) -> World:
    """Contract, clinics A and B, a station of each, a relay token for A, patients: through the services."""
    from chairside.context import build_context
    from chairside.patients import service as patients_service
    from chairside.settings import Settings
    from chairside.tenancy.service import create_clinic, create_contract, create_relay, create_station
    ctx = build_context(Settings.load(environ={}, data_dir=data_dir))
    try:  # in feed order: the contract, its clinics, then their stations
        contract_id = create_contract(ctx, "医療法人 ベンチ歯科", 100).id
        clinic_a, clinic_b = (create_clinic(ctx, contract_id, n).id for n in ("ベンチ歯科 本院", "ベンチ歯科 駅前分院"))
        _, station_a = create_station(ctx, clinic_a, "Chair 1")
        _, station_b = create_station(ctx, clinic_b, "Branch chair")
        _, relay_token = create_relay(ctx, clinic_a)
        ids_a: list[uuid.UUID] = []
        ids_b: list[uuid.UUID] = []
        for i in range(patients):
            family, family_kana = FAMILY[i % len(FAMILY)]
            given, given_kana, sex = GIVEN[(i // len(FAMILY)) % len(GIVEN)]
            in_b = i % 3 == 2
            p = patients_service.create(ctx, operator(contract_id), clinic_b if in_b else clinic_a, f"{20_000 + i}",
                                        f"{family} {given}", f"{family_kana} {given_kana}", sex=sex)
            (ids_b if in_b else ids_a).append(p.id)
    finally:
        ctx.db.dispose()
    return World("", station_a, station_b, relay_token, clinic_a, clinic_b, ids_a, ids_b)


def make_files(folder: Path) -> tuple[list[Path], Path]:
    """A few real photos and clips for the cloud, and one clip the station records at the relay."""
    from chairside.mediafile.generate import make_jpeg, make_video
    folder.mkdir(parents=True, exist_ok=True)
    files = [make_jpeg(folder / f"IMG_{i:04d}.JPG", width=1600, height=1200, seed=i) for i in range(8)]
    files += [make_video(folder / f"REC_{i:04d}.MP4", seconds=2.0, width=640, height=360, bitrate=800_000,
                         seed=100 + i) for i in range(2)]
    recording = make_video(folder / "CHAIR_A.MP4", seconds=4.0, width=1280, height=720, bitrate=3_000_000, seed=7)
    return files, recording


def upload_media(world: World, files: list[Path]) -> None:
    """Recorded at the cloud with the SDK: all but one by clinic B's station, for clinic B's patients."""
    from chairside.client import Client
    with Client(world.cloud_url, world.station_b) as b, Client(world.cloud_url, world.station_a) as a:
        for i, path in enumerate(files):
            if i == 0:
                item = a.upload(path, world.patients_a[1])
            else:
                item = b.upload(path, world.patients_b[i % len(world.patients_b)])
            world.media.append(str(item["id"]))


def feed_head(world: World) -> int:
    r = httpx.get(world.cloud_url + "/api/v1/feed", params={"after": 0, "limit": 1},
                  headers={"Authorization": f"Bearer {world.relay_token}"}, timeout=30)
    r.raise_for_status()
    return int(r.json()["head"])


# -- the relay -----------------------------------------------------------------------------


def wait_caught_up(relay: Relay, world: World, head: int, thumbnails: int) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    last: dict[str, Any] = {}
    with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {world.station_a}"}, timeout=10) as c:
        while time.perf_counter() - t < 300:
            with contextlib.suppress(httpx.HTTPError):
                r = c.get("/api/v1/relay/status")
                if r.status_code == 200:
                    last = r.json()
                    feed, cache = last.get("feed") or {}, last.get("cache") or {}
                    if (feed.get("cursor", 0) >= head and feed.get("behind") == 0
                            and int(cache.get("items", 0)) >= thumbnails):
                        return time.perf_counter() - t, last
            time.sleep(0.2)
    raise RuntimeError(f"the relay did not catch up within 5 minutes: {last}")


# -- the WAN -------------------------------------------------------------------------------

def set_state(proxy: Any, state: State) -> None:
    f = proxy.faults
    f.latency_s, f.rate_bps, f.stall = state.latency_s, state.rate_bps, state.stall
    if state.down != f.down:
        proxy.outage(state.down)
    if state.stall:
        proxy.reset_connections()  # the route dies: connections opened from now on go nowhere


# -- the operations ------------------------------------------------------------------------

def _meta(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


Op = Callable[[httpx.Client, int], float]  # (client, i) -> seconds taken


def operations(world: World, open_ids: Callable[[int], uuid.UUID]) -> list[tuple[str, Op]]:
    def list_patients(c: httpx.Client, i: int) -> float:
        t = time.perf_counter()
        r = c.get("/api/v1/patients", params={"q": QUERIES[i % len(QUERIES)]})
        took = time.perf_counter() - t
        if r.status_code != 200 or not r.json()["items"]:
            raise AssertionError(f"list patients: {r.status_code} {r.text[:200]}")
        return took

    def open_patient(c: httpx.Client, i: int) -> float:
        pid = open_ids(i)
        t = time.perf_counter()
        r = c.get(f"/api/v1/patients/{pid}")
        took = time.perf_counter() - t
        if r.status_code != 200:
            raise AssertionError(f"open patient: {r.status_code} {r.text[:200]}")
        return took

    def start_upload(c: httpx.Client, i: int) -> float:
        meta = _meta({"patient_id": str(world.patients_a[i % len(world.patients_a)]), "media_id": str(uuid.uuid4()),
                      "filename": f"REC_{i:05d}.MP4", "captured_at": "2026-11-24T10:30:00+09:00"})
        t = time.perf_counter()
        r = c.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": str(24 << 20), "Upload-Metadata": meta})
        took = time.perf_counter() - t
        if r.status_code != 201:
            raise AssertionError(f"start upload: {r.status_code} {r.text[:200]}")
        d = c.delete(r.headers["Location"], headers=TUS)  # cancel it: not timed
        if d.status_code != 204:
            raise AssertionError(f"cancel upload: {d.status_code} {d.text[:200]}")
        return took

    def thumbnail(c: httpx.Client, i: int) -> float:
        mid = world.media[i % len(world.media)]
        t = time.perf_counter()
        r = c.get(f"/api/v1/media/{mid}/thumbnail")
        took = time.perf_counter() - t
        if r.status_code != 200 or not r.content:
            raise AssertionError(f"thumbnail: {r.status_code} {r.text[:200]}")
        return took

    return [("list patients (q=kana)", list_patients), ("open a patient", open_patient),
            ("start an upload (tus POST)", start_upload), ("fetch a thumbnail", thumbnail)]


class CloudEditor(threading.Thread):
    """At the cloud, clinic B's station corrects a patient every `every_s`: feed events keep flowing."""

    def __init__(self, world: World, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.world, self.every_s = world, every_s
        self.halt = threading.Event()
        self.edits = 0
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.world.cloud_url, timeout=30,
                          headers={"Authorization": f"Bearer {self.world.station_b}"}) as c:
            i = 0
            while not self.halt.wait(self.every_s):
                pid = self.world.patients_b[i % len(self.world.patients_b)]
                family, _ = FAMILY[i % len(FAMILY)]
                try:
                    r = c.patch(f"/api/v1/patients/{pid}", json={"name": f"{family} 訂正{i}"})
                    self.edits += r.status_code == 200
                    self.errors += r.status_code != 200
                except httpx.HTTPError:
                    self.errors += 1
                i += 1


def fig(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:7.2f} ms  p95 {percentile(values, 95) * 1000:7.2f} ms"


def main() -> None:
    from tests.netem import Faults, WanProxy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200, help="per operation and WAN state, through the relay")
    parser.add_argument("--rounds", type=int, default=10, help="the states are interleaved in this many rounds")
    parser.add_argument("--direct-requests", type=int, default=30, help="per operation, straight to the cloud")
    parser.add_argument("--quiet", action="store_true", help="no background feed events or relay uploads")
    parser.add_argument("--no-stall", action="store_true", help="leave out the extra 'stalled' state")
    parser.add_argument("--control", action="store_true", help="add a second healthy state, interleaved like the "
                        "others: its ratio to healthy shows how much of a ratio is the machine's noise")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) under bench/.work/")
    parser.add_argument("--trace", type=Path, help="write every sample (wall time, state, operation, ms) to this file")
    args = parser.parse_args()
    states = [HEALTHY, DEGRADED, DOWN] + ([CONTROL] if args.control else []) + ([] if args.no_stall else [STALLED])
    per_block = max(1, args.requests // args.rounds)
    requests = per_block * args.rounds
    header(f"relay: station operations under a slow or missing WAN; {requests} requests per operation and state "
           f"in {args.rounds} interleaved rounds, one at a time, keep-alive; direct reference "
           f"{args.direct_requests} per operation; background {'off' if args.quiet else 'on'}")
    if args.patients < len(states) * requests // 2:
        print(f"   note: {args.patients} patients < one fresh patient per open; some opens repeat (audit coalesced)")

    with workdir("relay-ops", keep=args.keep) as wd:
        world = seed_cloud(wd / "cloud", args.patients)
        files, recording = make_files(wd / "files")
        with Server(wd / "cloud") as cloud, WanProxy(cloud.port, Faults(latency_s=HEALTHY.latency_s)) as wan:
            # In a clinic the cloud is another machine: here it shares 2 CPUs with the relay, so its own work
            # (ingesting the clips the relay forwards) runs at a lower priority, so as not to pass for the relay's.
            for proc in tree(cloud.pid):
                with contextlib.suppress(psutil.Error):
                    proc.nice(10)
            world.cloud_url = cloud.url
            upload_media(world, files)
            head = feed_head(world)
            print(f"   cloud: 2 clinics, {args.patients} patients ({len(world.patients_a)} at A, "
                  f"{len(world.patients_b)} at B), {len(world.media)} media uploaded with the SDK "
                  f"({len(world.media) - 1} by clinic B's station); feed head {head}")
            with Relay(wd / "relay", wan.url, world.relay_token) as relay:
                took, status = wait_caught_up(relay, world, head, len(world.media))
                print(f"   relay caught up through the proxy in {took:.1f} s: feed {status['feed']}, "
                      f"cache items {status['cache']['items']}")
                run(args, world, relay, wan, states, per_block, recording)
                direct(args, world, cloud.port)
        if args.trace:
            args.trace.write_text("".join(f"{at:.3f}\t{st}\t{label}\t{ms:.2f}\n" for at, st, label, ms in TRACE))


# The figures, kept between the two phases.
RESULTS: dict[tuple[str, str], list[float]] = {}
TRACE: list[tuple[float, str, str, float]] = []


def run(args: argparse.Namespace, world: World, relay: Relay, wan: Any, states: list[State], per_block: int,
        recording: Path) -> None:
    from chairside.client import Client
    # Each state opens its own patients, so every open is a first open (it writes its audit line).
    everyone = world.patients_a + world.patients_b
    share = max(1, len(everyone) // len(states))
    state_index = {s.name: k for k, s in enumerate(states)}
    counters: dict[tuple[str, str], int] = {}

    editor = None if args.quiet else CloudEditor(world)
    upstream_bytes = {s.name: 0 for s in states}
    relay_cpu: dict[str, list[float]] = {}  # state -> [relay CPU seconds, wall seconds] over its blocks
    with httpx.Client(base_url=relay.url, headers={"Authorization": f"Bearer {world.station_a}"},
                      timeout=30) as client, Client(relay.url, world.station_a) as sdk:
        current = {"state": states[0].name}

        def open_ids(i: int) -> uuid.UUID:
            k = state_index[current["state"]]
            return everyone[(k * share + i % share) % len(everyone)]

        ops = operations(world, open_ids)
        for _label, op in ops:  # warm the relay's paths (thumbnails: the first read of each is audited)
            for i in range(max(20, len(world.media))):
                if op.__name__ != "open_patient":
                    op(client, i)
        if editor is not None:
            editor.start()
        recorded = 0
        # The stall comes last, in one block: requests lost in a stall hang until their timeouts (the uploader's
        # 30 s, the follower's wait + 15 s), so it would spill into whichever state came next.
        blocks = [(rnd, st, per_block) for rnd in range(args.rounds) for st in states if st is not STALLED]
        blocks += [(0, st, per_block * args.rounds) for st in states if st is STALLED]
        try:
            for rnd, state, n_block in blocks:
                set_state(wan, state)
                current["state"] = state.name
                if editor is not None:  # the station records a clip at the relay; the uploader carries it
                    sdk.upload(recording, world.patients_a[rnd % len(world.patients_a)])
                    recorded += 1
                time.sleep(1.0)  # let the relay's link notice the new state
                before, cpu0, t0 = wan.faults.forwarded, tree_cpu_seconds(relay.pid), time.perf_counter()
                for label, op in ops:
                    key = (label, state.name)
                    samples = RESULTS.setdefault(key, [])
                    for _ in range(n_block):
                        n = counters.get(key, 0)
                        counters[key] = n + 1
                        at = time.time()
                        samples.append(op(client, n))
                        TRACE.append((at, state.name, label, samples[-1] * 1000))
                upstream_bytes[state.name] += wan.faults.forwarded - before
                busy = relay_cpu.setdefault(state.name, [0.0, 0.0])
                busy[0] += tree_cpu_seconds(relay.pid) - cpu0
                busy[1] += time.perf_counter() - t0
        finally:
            set_state(wan, HEALTHY)
            if editor is not None:
                editor.halt.set()
                editor.join(5)
        status = client.get("/api/v1/relay/status").json()
    if editor is not None:
        print(f"   background: {editor.edits} patient corrections at the cloud during the run ({editor.errors} "
              f"failed), {recorded} clips of {recording.stat().st_size / 1e6:.1f} MB recorded at the relay")
    print("   relay→cloud bytes sent during the measuring blocks (follower, uploader, heartbeat): "
          + ", ".join(f"{k} {v / 1e3:,.1f} kB" for k, v in upstream_bytes.items()))
    print("   relay CPU while measuring (its own work for the station's requests included): "
          + ", ".join(f"{k} {cpu / wall * 100:.0f}% of a CPU" for k, (cpu, wall) in relay_cpu.items()))
    print(f"   relay status after the run: online {status['online']}, pending {status['pending_items']} items, "
          f"feed behind {status['feed']['behind']}, last_error {status.get('last_error')!r}")
    for label, _op in ops:
        print(f"   {label}")
        for state in states:
            print(f"      relay, WAN {state.name:9s} {fig(RESULTS[(label, state.name)])}  "
                  f"(max {max(RESULTS[(label, state.name)]) * 1000:.1f} ms)")


def direct(args: argparse.Namespace, world: World, cloud_port: int) -> None:
    from tests.netem import Faults, WanProxy

    with WanProxy(cloud_port, Faults(latency_s=DEGRADED.latency_s, rate_bps=DEGRADED.rate_bps)) as wan, \
            httpx.Client(base_url=wan.url, headers={"Authorization": f"Bearer {world.station_a}"},
                         timeout=60) as client:
        everyone = world.patients_a + world.patients_b
        ops = operations(world, lambda i: everyone[(len(everyone) - 1 - i) % len(everyone)])
        for label, op in ops:
            op(client, 0)  # the connection is open (keep-alive), as the relay's is
            RESULTS[(label, "direct")] = [op(client, i + 1) for i in range(args.direct_requests)]
    failed: list[str] = []
    noise: list[str] = []
    print("   straight to the cloud through the degraded WAN (300 ms RTT, 2 Mbit/s):")
    for label, _op in ops:
        print(f"      {label:28s} {fig(RESULTS[(label, 'direct')])}")
    order = ["healthy", "degraded", "down", "healthy2", "stalled"]
    states = sorted({s for _, s in RESULTS if s != "direct"}, key=order.index)
    print("   summary, p95 in ms:")
    print(f"      {'operation':28s} " + " ".join(f"{s:>9s}" for s in states)
          + f" {'direct':>9s} | deg/healthy down/healthy" + (" stall/healthy" if "stalled" in states else "")
          + (" healthy2/healthy" if "healthy2" in states else "")
          + " | direct/relay-deg")
    for label, _op in ops:
        p95 = {s: percentile(RESULTS[(label, s)], 95) for s in [*states, "direct"]}
        ratios = {s: p95[s] / p95["healthy"] for s in states if s != "healthy"}
        speedup = p95["direct"] / p95["degraded"]
        ok = ratios["degraded"] <= TARGET_RATIO and ratios["down"] <= TARGET_RATIO
        fast = speedup >= TARGET_SPEEDUP
        print(f"      {label:28s} " + " ".join(f"{p95[s] * 1000:9.2f}" for s in [*states, "direct"])
              + f" | {ratios['degraded']:11.2f} {ratios['down']:12.2f}"
              + (f" {ratios['stalled']:13.2f}" if "stalled" in ratios else "")
              + (f" {ratios['healthy2']:16.2f}" if "healthy2" in ratios else "")
              + f" | {speedup:10.0f}x  {'PASS' if ok else 'FAIL'}/{'PASS' if fast else 'FAIL'}")
        if not ok:
            failed.append(f"{label}: degraded/healthy {ratios['degraded']:.2f}, down/healthy {ratios['down']:.2f}")
            if "healthy2" in ratios:  # a ratio no larger than the healthy-vs-healthy one is the machine's noise
                floor = max(ratios["healthy2"], 1 / ratios["healthy2"])
                noise.append(f"{label}: worst WAN ratio {max(ratios['degraded'], ratios['down']):.2f} vs "
                             f"healthy2/healthy {ratios['healthy2']:.2f} "
                             + ("(within the noise)" if max(ratios["degraded"], ratios["down"]) <= floor else
                                "(beyond the noise)"))
        if not fast:
            failed.append(f"{label}: direct/relay {speedup:.1f}x")
    for line in noise:
        print(f"   control: {line}")
    print(f"target p95 degraded/healthy and down/healthy <= {TARGET_RATIO}, direct/relay >= {TARGET_SPEEDUP:.0f}x: "
          + ("PASS" if not failed else "FAIL (" + "; ".join(failed) + ")"))


if __name__ == "__main__":
    main()
