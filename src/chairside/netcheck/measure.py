"""The measuring client of `chairside netcheck`: throughput both ways (one and several connections), round
trips idle and under load, retransmissions from Linux TCP_INFO, and stability over the run's minutes.

Every connection is a socket of ours (wire.py), so TCP_INFO is read from it: upload throughput is the
slope of the bytes the far end acknowledged (`tcpi_bytes_acked`), download throughput the slope of the
bytes received, each after a warm-up (slow start, buffers filling). Round trips are HTTP pings on their own
kept-alive connection, every PING_IDLE_S while idle and throughout the bulk tests (bufferbloat shows
there). The run has a fixed plan and ends by itself: traffic is bounded by the test seconds times the
line's rate (docs/netcheck.md).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chairside.netcheck import tcpinfo
from chairside.netcheck.verdict import Figures, Need, Verdict, judge
from chairside.netcheck.wire import Connection, Target, WireError

PING_TIMEOUT_S = 2.0  # a ping unanswered this long counts as lost
PING_IDLE_S = 1.0  # between pings in the stability phase
PING_BUSY_S = 0.25  # between pings during the idle and bulk tests
IDLE_S = 2.0  # the idle round-trip test
SAMPLE_EVERY_S = 0.1  # TCP_INFO samples during a bulk test
NOT_SENT_LOWAT = 128 * 1024  # unsent bytes an upload keeps queued in its socket (not the send buffer's MBs)
_PIECE = os.urandom(64 * 1024)


class Refused(Exception):
    """The cloud refused the code (or the run): its problem+json detail, for the person at the clinic."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Plan:
    minutes: float = 5.0  # the whole run, stability included
    test_seconds: float | None = None  # each of the 4 bulk tests; default: from minutes, 2 to 6 s
    connections: int = 4  # the "several connections" tests
    sample_s: float = 5.0  # one point of the stability summary

    @property
    def bulk_s(self) -> float:
        if self.test_seconds:
            return self.test_seconds
        return max(2.0, min(6.0, (self.minutes * 60 * 0.5 - IDLE_S) / 4))


@dataclass
class Ping:
    t: float  # seconds since the run started
    rtt_ms: float | None  # None: lost
    phase: str


@dataclass(frozen=True)
class Bulk:
    name: str  # download-1, download-N, upload-1, upload-N
    connections: int
    mbps: float
    seconds: float
    bytes: int
    retransmit_percent: float | None = None  # the sending side's, so uploads only
    errors: int = 0


@dataclass
class Window:
    """One point of the stability summary: `sample_s` of the run."""

    start_s: float
    pings: int
    lost: int
    median_rtt_ms: float | None
    busy: bool  # a bulk test ran in it


@dataclass
class Result:
    server: str
    plan: Plan
    need: Need
    bulks: list[Bulk]
    pings: list[Ping]
    windows: list[Window]
    traffic_bytes: int
    seconds: float
    interface: str | None
    on_wifi: bool | None
    figures: Figures
    verdict: Verdict
    extra: dict[str, Any] = field(default_factory=dict)

    def bulk(self, name: str) -> Bulk | None:
        return next((b for b in self.bulks if b.name == name), None)

    def to_json(self) -> dict[str, Any]:
        f, v = self.figures, self.verdict

        def rate(name: str) -> float | None:
            b = self.bulk(name)
            return None if b is None else round(b.mbps, 2)

        return {
            "server": self.server,
            "upload_mbps": round(f.upload_mbps, 2),
            "download_mbps": round(f.download_mbps, 2),
            "rtt_ms": None if f.rtt_ms is None else round(f.rtt_ms, 1),
            "jitter_ms": None if f.jitter_ms is None else round(f.jitter_ms, 1),
            "retransmit_percent": None if f.retransmit_percent is None else round(f.retransmit_percent, 3),
            "retransmit_multi_percent": self.extra.get("retransmit_multi_percent"),
            "rtt_median_ms": None if f.rtt_median_ms is None else round(f.rtt_median_ms, 1),
            "verdict": "ok" if v.ok else "not_ok",
            "verdict_ja": v.text_ja,
            "verdict_en": v.text_en,
            "reasons": v.reasons,
            "advice": v.advice,
            "stable": v.stable,
            "required_upload_mbps": round(v.required_upload_mbps, 2),
            "upload_single_mbps": rate("upload-1"),
            "upload_multi_mbps": rate("upload-N"),
            "download_single_mbps": rate("download-1"),
            "download_multi_mbps": rate("download-N"),
            "connections": self.plan.connections,
            "rtt_loaded_ms": None if f.loaded_rtt_ms is None else round(f.loaded_rtt_ms, 1),
            "rtt_upload_load_ms": self.extra.get("rtt_upload_load_ms"),
            "rtt_download_load_ms": self.extra.get("rtt_download_load_ms"),
            "longest_dropout_s": round(f.longest_dropout_s, 1),
            "ping_loss_percent": round(f.ping_loss_percent, 2),
            "pings": len(self.pings),
            "pings_lost_under_load": self.extra.get("pings_lost_under_load"),
            "stability": [{"start_s": round(w.start_s, 1), "pings": w.pings, "lost": w.lost,
                           "median_rtt_ms": None if w.median_rtt_ms is None else round(w.median_rtt_ms, 1),
                           "busy": w.busy} for w in self.windows],
            "chairs": self.need.chairs, "hours_per_day": self.need.hours_per_day,
            "night_hours": self.need.night_hours,
            "minutes": self.plan.minutes, "test_seconds": self.plan.bulk_s,
            "seconds": round(self.seconds, 1),
            "traffic_bytes": self.traffic_bytes,
            "interface": self.interface, "on_wifi": self.on_wifi,
            "tcp_info": tcpinfo.supported(),
        }


def default_route_interface() -> tuple[str | None, bool | None]:
    """The interface of the default route and whether it is wireless (Linux /proc and /sys; else unknown)."""
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) > 2 and parts[1] == "00000000":
                return parts[0], Path(f"/sys/class/net/{parts[0]}/wireless").exists()
    except OSError:
        pass
    return None, None


def _slope(samples: list[tuple[float, int]], warm_s: float) -> tuple[float, float, int]:
    """(bits per second, seconds, bytes) between the first sample after the warm-up and the last one."""
    if len(samples) < 2:
        return 0.0, 0.0, 0
    t0 = samples[0][0] + warm_s
    steady = [s for s in samples if s[0] >= t0] or samples[-2:]
    if len(steady) < 2:
        steady = samples[-2:]
    (ta, ba), (tb, bb) = steady[0], steady[-1]
    if tb <= ta:
        return 0.0, 0.0, 0
    return (bb - ba) * 8 / (tb - ta), tb - ta, bb - ba


class Check:
    """One run of the line check. `run()` blocks until done (or `stop()`); `phase` and `elapsed` show progress."""

    def __init__(self, server: str, code: str, plan: Plan | None = None, need: Need | None = None,
                 on_phase: Callable[[str], None] | None = None) -> None:
        self.server = server
        self.target = Target.parse(server)
        self.code = code
        self.plan = plan or Plan()
        self.need = need or Need()
        self.on_phase = on_phase
        self.phase = "start"
        self.pings: list[Ping] = []
        self._stop = threading.Event()
        self._ping_every = PING_BUSY_S
        self._t0 = time.monotonic()
        self._traffic = 0
        self._traffic_lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    @property
    def expected_s(self) -> float:
        return max(self.plan.minutes * 60, IDLE_S + 4 * self.plan.bulk_s + 1)

    def stop(self) -> None:
        self._stop.set()

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        if self.on_phase:
            self.on_phase(phase)

    def _count(self, conn: Connection) -> None:
        with self._traffic_lock:
            self._traffic += conn.sent + conn.received

    def _connect(self, timeout: float) -> Connection:
        return Connection(self.target, self.code, timeout=timeout)

    # --- the run ---

    def start_run(self) -> dict[str, Any]:
        """Spend one of the code's runs at the cloud (or raise Refused with its message)."""
        try:
            with self._connect(15.0) as conn:
                answer = conn.request("POST", "/api/v1/netcheck/runs", {"minutes": self.expected_s / 60})
                self._count(conn)
        except (OSError, WireError) as e:
            raise Refused(0, f"サーバーに接続できません: {e} / Cannot reach the server: {e}") from e
        if answer.status != 201:
            try:
                detail = str(answer.json().get("detail") or answer.body[:200].decode(errors="replace"))
            except ValueError:
                detail = answer.body[:200].decode(errors="replace")
            raise Refused(answer.status, detail)
        body: dict[str, Any] = answer.json()
        return body

    def run(self) -> Result:
        self._t0 = time.monotonic()
        self.start_run()
        pinger = threading.Thread(target=self._pinger, name="netcheck-ping", daemon=True)
        pinger.start()
        bulks: list[Bulk] = []
        try:
            self._set_phase("idle")
            self._stop.wait(IDLE_S)
            for direction in ("download", "upload"):
                for n in (1, self.plan.connections):
                    if self._stop.is_set():
                        break
                    name = f"{direction}-{'1' if n == 1 else 'N'}"
                    self._set_phase(name)
                    bulks.append(self._bulk(direction, n, name))
            self._set_phase("stability")
            self._ping_every = PING_IDLE_S
            self._stop.wait(max(0.0, self.plan.minutes * 60 - self.elapsed))
        finally:
            self._stop.set()
            pinger.join(PING_TIMEOUT_S + 5)
        self._set_phase("done")
        return self._result(bulks)

    # --- round trips ---

    def _pinger(self) -> None:
        conn: Connection | None = None
        try:
            while not self._stop.is_set():
                at = time.monotonic()
                phase = self.phase
                rtt: float | None = None
                try:
                    if conn is None:
                        conn = self._connect(PING_TIMEOUT_S)
                    sent = time.perf_counter()
                    answer = conn.request("GET", "/api/v1/netcheck/ping")
                    if answer.status == 200:
                        rtt = (time.perf_counter() - sent) * 1000
                    else:
                        raise WireError(f"ping answered {answer.status}")
                except (OSError, WireError):
                    if conn is not None:
                        self._count(conn)
                        conn.close()
                    conn = None
                self.pings.append(Ping(at - self._t0, rtt, phase))
                self._stop.wait(max(0.0, self._ping_every - (time.monotonic() - at)))
        finally:
            if conn is not None:
                self._count(conn)
                conn.close()

    # --- throughput ---

    def _bulk(self, direction: str, n: int, name: str) -> Bulk:
        seconds = self.plan.bulk_s
        conns: list[Connection] = []
        errors = [0]
        done = threading.Event()
        for _ in range(n):
            try:
                conns.append(self._connect(10.0))
            except OSError:
                errors[0] += 1

        def download(conn: Connection) -> None:
            try:
                status, _ = conn.start_download(f"/api/v1/netcheck/download?seconds={seconds + 1:g}")
                if status != 200:
                    raise WireError(f"download answered {status}")
                while not done.is_set() and conn.download_some():
                    pass
            except (OSError, WireError):
                if not done.is_set():
                    errors[0] += 1

        server_samples: list[list[tuple[float, int]]] = []

        def upload(conn: Connection) -> None:
            try:
                conn.limit_unsent(NOT_SENT_LOWAT)
                conn.start_upload("/api/v1/netcheck/upload")
                while not done.is_set():
                    conn.upload_chunk(_PIECE)
                answer = conn.finish_upload()
                if answer.status == 200:
                    server_samples.append([(float(t), int(b)) for t, b in answer.json().get("samples", [])])
            except (OSError, WireError, ValueError, TypeError):
                if not done.is_set():
                    errors[0] += 1

        def moved() -> int:
            infos = [c.info() for c in conns]
            if direction == "upload":
                return sum(i.bytes_acked or 0 for i in infos) or sum(c.sent for c in conns)
            return sum(i.bytes_received or 0 for i in infos) or sum(c.received for c in conns)

        workers = [threading.Thread(target=download if direction == "download" else upload, args=(c,), daemon=True)
                   for c in conns]
        start = time.monotonic()
        for w in workers:
            w.start()
        samples: list[tuple[float, int]] = []
        while time.monotonic() - start < seconds and not self._stop.is_set():
            samples.append((time.monotonic(), moved()))
            time.sleep(SAMPLE_EVERY_S)
        samples.append((time.monotonic(), moved()))
        infos = [c.info() for c in conns]
        done.set()
        for c in conns:
            if direction == "download":
                with contextlib.suppress(OSError):  # wakes a blocked recv; the server's stream ends anyway
                    c.tcp.shutdown(socket.SHUT_RDWR)
        for w in workers:
            w.join(PING_TIMEOUT_S + 10)
        for c in conns:
            self._count(c)
            c.close()
        warm = min(1.0, 0.3 * seconds)
        bps, secs, nbytes = _slope(samples, warm_s=warm)
        arrived = merge(server_samples) if direction == "upload" else []
        if len(arrived) > 2 and arrived[-1][1] > 0:  # what arrived at the cloud, by its clock: the truth
            bps, secs, nbytes = _slope(arrived, warm_s=warm)
        retrans: float | None = None
        if direction == "upload":
            sent = sum(i.bytes_sent or 0 for i in infos)
            if sent:
                retrans = 100 * sum(i.bytes_retrans or 0 for i in infos) / sent
            else:
                segs = sum(i.data_segs_out or 0 for i in infos)
                retrans = 100 * sum(i.total_retrans or 0 for i in infos) / segs if segs else None
        return Bulk(name, n, bps / 1e6, secs, nbytes, retrans, errors[0])

    # --- the figures ---

    @staticmethod
    def _bulk_named(bulks: list[Bulk], name: str) -> Bulk | None:
        return next((b for b in bulks if b.name == name), None)

    def _result(self, bulks: list[Bulk]) -> Result:
        pings = list(self.pings)
        ok = [p for p in pings if p.rtt_ms is not None]
        quiet = [p.rtt_ms for p in ok if p.phase in ("idle", "stability") and p.rtt_ms is not None]
        rtt = min(quiet) if quiet else None  # the line's own round trip, as TCP's min_rtt
        rtt_median = statistics.median(quiet) if quiet else None
        jitter = (statistics.fmean(abs(b - a) for a, b in itertools.pairwise(quiet))
                  if len(quiet) > 1 else None)

        def loaded(prefix: str) -> float | None:
            values = [p.rtt_ms for p in ok if p.phase.startswith(prefix) and p.rtt_ms is not None]
            return statistics.median(values) if values else None

        up_load, down_load = loaded("upload"), loaded("download")
        loaded_rtt = max((v for v in (up_load, down_load) if v is not None), default=None)
        up = max((b.mbps for b in bulks if b.name.startswith("upload")), default=0.0)
        down = max((b.mbps for b in bulks if b.name.startswith("download")), default=0.0)
        single = self._bulk_named(bulks, "upload-1")  # one flow: the line's loss, not the flows' fight
        multi = self._bulk_named(bulks, "upload-N")
        retrans = single.retransmit_percent if single else None
        # Loss is counted on the quiet pings: under a bulk test a ping may wait out its timeout behind the
        # line's queue (that is bufferbloat, measured as the loaded round trip), or behind a busy cloud.
        calm = [p for p in pings if p.phase in ("idle", "stability")]
        lost = sum(1 for p in calm if p.rtt_ms is None)
        loaded_lost = sum(1 for p in pings if p.rtt_ms is None) - lost
        interface, wifi = default_route_interface()
        figures = Figures(
            upload_mbps=up, download_mbps=down, rtt_ms=rtt, rtt_median_ms=rtt_median, jitter_ms=jitter,
            retransmit_percent=retrans,
            loaded_rtt_ms=loaded_rtt, longest_dropout_s=longest_dropout(pings, self.elapsed),
            ping_loss_percent=100 * lost / len(calm) if calm else 0.0, on_wifi=wifi)
        return Result(
            server=self.server, plan=self.plan, need=self.need, bulks=bulks, pings=pings,
            windows=windows(pings, self.plan.sample_s), traffic_bytes=self._traffic, seconds=self.elapsed,
            interface=interface, on_wifi=wifi, figures=figures, verdict=judge(figures, self.need),
            extra={"pings_lost_under_load": loaded_lost,
                   "retransmit_multi_percent": None if multi is None or multi.retransmit_percent is None
                   else round(multi.retransmit_percent, 3),
                   "rtt_upload_load_ms": None if up_load is None else round(up_load, 1),
                   "rtt_download_load_ms": None if down_load is None else round(down_load, 1)})


def merge(series: list[list[tuple[float, int]]]) -> list[tuple[float, int]]:
    """Cumulative (time, bytes) series of several connections (one clock) as one series of their sum."""
    steps: list[tuple[float, int]] = []
    for one in series:
        previous = 0
        for t, total in one:
            steps.append((t, total - previous))
            previous = total
    steps.sort()
    out: list[tuple[float, int]] = []
    running = 0
    for t, delta in steps:
        running += delta
        out.append((t, running))
    return out


def longest_dropout(pings: list[Ping], end_s: float) -> float:
    """The longest time from a lost ping to the next answered one (or the end of the run)."""
    longest = 0.0
    lost_since: float | None = None
    for p in pings:
        if p.rtt_ms is None:
            if lost_since is None:
                lost_since = p.t
        elif lost_since is not None:
            longest = max(longest, p.t - lost_since)
            lost_since = None
    if lost_since is not None:
        longest = max(longest, end_s - lost_since)
    return longest


def windows(pings: list[Ping], sample_s: float) -> list[Window]:
    if not pings:
        return []
    out: list[Window] = []
    count = int(pings[-1].t // sample_s) + 1
    for i in range(count):
        inside = [p for p in pings if i * sample_s <= p.t < (i + 1) * sample_s]
        rtts = [p.rtt_ms for p in inside if p.rtt_ms is not None]
        out.append(Window(i * sample_s, len(inside), len(inside) - len(rtts),
                          statistics.median(rtts) if rtts else None,
                          any(p.phase.startswith(("upload", "download")) for p in inside)))
    return out
