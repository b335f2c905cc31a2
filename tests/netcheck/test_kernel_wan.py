"""`chairside netcheck` over a line the Linux kernel shapes: the cloud in a network namespace behind a veth pair
with `tc tbf` each way (tests/kernel_wan.py). The kernel's TCP, its queues and a real link going down are what
the check meets; the retransmissions it reports are the kernel's own (TCP_INFO). This kernel has no netem, so
there is no added delay here: the round trip must come out near zero (±5 ms), and the delay itself is checked
through the userspace emulator (test_wan.py).

Skipped where namespaces cannot be made (not root, no iproute2), except with CHAIRSIDE_REQUIRE_NETNS=1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chairside.context import build_context
from chairside.netcheck import codes
from chairside.netcheck.measure import Check, Plan
from chairside.settings import Settings
from tests.factories import make_tenant
from tests.kernel_wan import KernelWan, die_with_parent, exec_env, kernel_wan, unavailable
from tests.relay.conftest import wait_for

BIN = Path(sys.executable).parent
RATE_MBIT = 40
PORT = 8000  # inside the namespace: nothing else listens there


@pytest.fixture(scope="module")
def netns() -> None:
    reason = unavailable()
    if reason:
        if os.environ.get("CHAIRSIDE_REQUIRE_NETNS") == "1":
            pytest.fail(f"a tbf-shaped network namespace is required (CHAIRSIDE_REQUIRE_NETNS=1): {reason}")
        pytest.skip(reason)


@contextlib.contextmanager
def _cloud(wan: KernelWan, data: Path) -> Iterator[str]:
    url = f"http://{wan.ns_addr}:{PORT}"
    log_path = data.parent / "cloud.log"
    args = wan.exec_args(BIN / "chairside", "cloud", "serve", "--data", data, "--host", wan.ns_addr,
                         "--port", str(PORT))
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=exec_env(), preexec_fn=die_with_parent)
    try:
        def healthy() -> bool | None:
            if proc.poll() is not None:
                raise RuntimeError(f"the cloud exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/api/v1/health", timeout=2).status_code == 200 or None
            return None

        wait_for(healthy, "the cloud to answer inside the namespace", timeout=60)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_shaped_rate_near_zero_delay_and_a_10_s_link_down_are_measured(netns: None, tmp_path: Path) -> None:
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "cloud"))
    try:
        tenant = make_tenant(ctx, "カーネル回線歯科", clinics=1)
        code, _ = codes.new_code(ctx, tenant.contract_id)
    finally:
        ctx.db.dispose()
    with (kernel_wan(rate=f"{RATE_MBIT}mbit", burst="32kb", latency="50ms") as wan,
          _cloud(wan, tmp_path / "cloud") as url):
        timers: list[threading.Timer] = []

        def link_down_10_s() -> None:
            wan.link(False)
            threading.Event().wait(10)
            wan.link(True)

        def on_phase(phase: str) -> None:
            if phase == "stability":
                timers.append(threading.Timer(0.0, link_down_10_s))
                timers[-1].start()

        before = wan.sent_bytes()
        result = Check(url, code, Plan(minutes=0.5, test_seconds=2.5), on_phase=on_phase).run()
        for t in timers:
            t.join()
        wire_up = wan.sent_bytes() - before
    f, v = result.figures, result.verdict
    summary = result.to_json()
    # Throughput: within ±10 % of the shaper's rate, each way (goodput: the shaper counts Ethernet frames).
    assert abs(f.upload_mbps - RATE_MBIT) <= 0.1 * RATE_MBIT, summary
    assert abs(f.download_mbps - RATE_MBIT) <= 0.1 * RATE_MBIT, summary
    # Round trip: no delay was added, so within 5 ms of zero; under upload load the tbf queue shows (bufferbloat).
    assert f.rtt_ms is not None and f.rtt_ms <= 5, summary
    assert summary["rtt_upload_load_ms"] is not None and summary["rtt_upload_load_ms"] > f.rtt_ms + 5, summary
    # Retransmissions come from the kernel (TCP_INFO of the upload sockets).
    assert f.retransmit_percent is not None and 0 <= f.retransmit_percent < 50
    # The link down for 10 s: unstable, and the verdict says so.
    assert timers, "the stability phase never began"
    assert 8.5 <= f.longest_dropout_s <= 14, [(round(p.t, 1), p.rtt_ms) for p in result.pings]
    assert not v.stable and not v.ok and any("unstable" in r for r in v.reasons)
    # Its own traffic: what the shaper let out is about what the check counted, both bounded by the plan.
    assert wire_up <= 2 * 2.5 * RATE_MBIT * 1e6 / 8 * 1.2 + (2 << 20), wire_up
    assert result.traffic_bytes <= 4 * 2.5 * RATE_MBIT * 1e6 / 8 * 1.2 + (2 << 20)
