"""`chairside netcheck` through the project's WAN emulator (tests/netem.py): a shaped rate and an added delay
it must measure, and a 10 s dropout it must call unstable. (The kernel-shaped line: test_kernel_wan.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from rich.console import Console

from chairside.cli.netcheck import show, sparkline
from chairside.netcheck.measure import Check, Plan
from tests.kernel_wan import exec_env
from tests.netcheck.conftest import Cloud, Line
from tests.netem import Faults

BIN = Path(sys.executable).parent
RATE = 12e6  # bit/s each way: the emulator is Python, on a shared 2-core machine
ONE_WAY = 0.020  # s: the round trip gains 40 ms


def test_the_json_figures_match_the_shaped_rate_and_the_added_delay(cloud: Cloud) -> None:
    code = cloud.code()
    with Line(cloud.server.port, Faults(latency_s=ONE_WAY, rate_bps=RATE)) as line:
        done = subprocess.run(
            [BIN / "chairside", "netcheck", "--server", line.url, "--code", code, "--minutes", "0.2",
             "--test-seconds", "3", "--chairs", "2", "--hours-per-day", "2", "--json"],
            capture_output=True, text=True, timeout=120, env=exec_env(), check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("upload_mbps", "download_mbps", "rtt_ms", "jitter_ms", "retransmit_percent", "verdict", "advice"):
        assert key in result
    mbps = RATE / 1e6
    assert abs(result["upload_mbps"] - mbps) <= 0.1 * mbps, result
    assert abs(result["download_mbps"] - mbps) <= 0.1 * mbps, result
    assert abs(result["rtt_ms"] - 2 * ONE_WAY * 1000) <= 5, result
    assert result["jitter_ms"] is not None and result["jitter_ms"] < 20  # the line adds none; the machine some
    assert result["stable"] and result["longest_dropout_s"] == 0
    assert result["verdict"] in ("ok", "not_ok") and isinstance(result["advice"], list) and result["advice"]
    # Its own traffic is bounded: four 3 s tests at the line's rate, plus what the proxy's socket buffers took
    # in at the end of each upload test (a few MB, more on a busy machine: 1.06–1.62× in docs/benchmarks.md),
    # pings and headers. Twice the nominal is the bound: a check that did not stop would pass it within seconds.
    assert result["traffic_bytes"] <= 2 * (4 * 3 * RATE / 8), result["traffic_bytes"]
    assert result["seconds"] < 60  # it stopped by itself


def test_a_line_that_drops_out_for_10_s_shows_as_unstable(cloud: Cloud) -> None:
    code = cloud.code()
    with Line(cloud.server.port, Faults(latency_s=0.005, rate_bps=RATE)) as line:
        outage_done = threading.Event()

        def drop_out() -> None:
            line.outage(True)
            if not outage_done.wait(10):
                line.outage(False)

        timers: list[threading.Timer] = []

        def on_phase(phase: str) -> None:
            if phase == "stability":  # as the quiet part begins, the line goes away for 10 s
                timer = threading.Timer(0.0, drop_out)
                timers.append(timer)
                timer.start()

        # 30 s: the bulk tests take ~10 s (more on a busy machine), then 10 s of outage and some quiet after it.
        check = Check(line.url, code, Plan(minutes=0.5, test_seconds=1.5), on_phase=on_phase)
        result = check.run()
        outage_done.set()
        for t in timers:
            t.join()
        line.outage(False)
    assert timers, "the stability phase never began"
    f, v = result.figures, result.verdict
    assert 8.5 <= f.longest_dropout_s <= 13, [(round(p.t, 1), p.phase, p.rtt_ms) for p in result.pings]
    assert not v.stable and not v.ok and v.reasons
    assert any("unstable" in r for r in v.reasons)
    assert any(w.median_rtt_ms is None for w in result.windows)  # the summary shows it
    # The throughput before the dropout was measured all the same, and the run ended on time.
    assert f.upload_mbps > 0 and f.download_mbps > 0
    assert result.seconds < 0.5 * 60 + 10
    # The terminal's summary: the verdict in both languages and the dropout in the sparkline.
    console = Console(record=True, width=160)
    show(console, result)
    text = console.export_text()
    assert "この回線のままでは利用条件を満たしません。" in text and "This line does not qualify as it is." in text
    assert "✕" in sparkline(result.windows) and sparkline(result.windows) in text
