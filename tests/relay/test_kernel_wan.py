"""The relay over a line shaped by the kernel: a second WAN check beside the userspace emulator.

The cloud (`chairside cloud serve`) runs inside a network namespace, the relay (`chairside relay
serve`) in the root namespace, and every byte between them crosses a veth pair with `tc tbf` on
both ends (tests/kernel_wan.py). No proxy of ours touches the bytes: the kernel's TCP, its socket
buffers and a real link going down are what the relay meets. This kernel has no netem, so the line
has a rate but no added delay; delay, stalls and cuts at chosen bytes are tests/netem.py's (test_wan.py).
Here the cuts are the kernel's: the link taken down (`ip link set … down`), and connections forgotten by
the cloud's end while it is down (`ss -K`).

Skipped where namespaces cannot be made (not root, no iproute2), except with CHAIRSIDE_REQUIRE_NETNS=1
(CI sets it), where that fails the run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context, build_context
from chairside.db.models import Upload
from chairside.settings import Settings
from tests.factories import make_patient, make_relay_token, make_tenant
from tests.kernel_wan import KernelWan, die_with_parent, exec_env, kernel_wan, unavailable
from tests.relay.conftest import RelayProcess, seed_relay_from, sha256_of, wait_for

BIN = Path(sys.executable).parent
MiB = 1 << 20
RATE = "40mbit"  # each way; a 32 MiB clip takes about 7 s
CLOUD_PORT = 8000  # inside the namespace: nothing else listens there
REQUEST = 4 * MiB  # relay_upload_chunk_bytes here: a cut falls inside a request
WIRE = 1.06  # wire bytes per payload byte through the shaper: Ethernet, IP and TCP headers (1514 per 1448)


@pytest.fixture(scope="module")
def netns() -> None:
    """Skip (or fail, with CHAIRSIDE_REQUIRE_NETNS=1) before anything is made when namespaces cannot be."""
    reason = unavailable()
    if reason:
        if os.environ.get("CHAIRSIDE_REQUIRE_NETNS") == "1":
            pytest.fail(f"a tbf-shaped network namespace is required (CHAIRSIDE_REQUIRE_NETNS=1): {reason}")
        pytest.skip(reason)


@dataclass
class Line:
    """The cloud behind a shaped line and the clinic's relay in front of it."""

    wan: KernelWan
    cloud_url: str
    cloud: Context  # the cloud's database and blobs, read directly by the test
    relay: RelayProcess
    station_token: str
    patient_id: uuid.UUID

    def station(self) -> Client:
        return Client(self.relay.url, self.station_token)

    def cloud_media(self, media_id: str) -> dict[str, Any] | None:
        r = httpx.get(f"{self.cloud_url}/api/v1/media/{media_id}",
                      headers={"Authorization": f"Bearer {self.station_token}"}, timeout=30)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def drained(self) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            with contextlib.suppress(httpx.HTTPError):
                st = self.relay.status(self.station_token)
                if st["pending_items"] == 0:
                    return st
            return None

        return wait_for(probe, "the relay's outbox to drain", timeout=300, every=0.25)

    def uploads(self, media_id: uuid.UUID) -> list[tuple[int, datetime | None]]:
        """The cloud's uploads of one media item: (offset, completed_at) each."""
        with self.cloud.db.read() as s:
            rows = s.execute(select(Upload.offset, Upload.completed_at).where(Upload.media_id == media_id)).all()
        return [(offset, done) for offset, done in rows]


def _seed_cloud(ctx: Context) -> tuple[uuid.UUID, uuid.UUID, str, str]:
    """A contract, a clinic, its station and relay (tokens) and one patient: answers (contract, patient,
    station token, relay token)."""
    tenant = make_tenant(ctx, "医療法人 カーネル歯科", clinic_names=["カーネル歯科 本院"])
    clinic_id = tenant.clinic_ids[0]
    patient = make_patient(ctx, tenant.contract_id, clinic_id, "00001", "山田 太郎", "ヤマダ タロウ", sex="male")
    relay_token = make_relay_token(ctx, clinic_id, "本院 relay")
    return tenant.contract_id, patient.id, tenant.token, relay_token


@contextlib.contextmanager
def _cloud_in_namespace(wan: KernelWan, data_dir: Path) -> Iterator[str]:
    """`chairside cloud serve` inside the namespace, listening on its end of the line; answers its URL."""
    url = f"http://{wan.ns_addr}:{CLOUD_PORT}"
    log_path = data_dir.parent / "cloud.log"
    args = wan.exec_args(BIN / "chairside", "cloud", "serve", "--data", data_dir, "--host", wan.ns_addr,
                         "--port", str(CLOUD_PORT))
    # A PATCH the link-down left without bytes holds the upload until this; keep a retry's wait short.
    env = exec_env({"CHAIRSIDE_UPLOAD_IDLE_TIMEOUT_S": "10"})
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
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


@pytest.fixture(scope="module")
def long_clip(netns: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real H.264 MP4 of 32 MiB: several seconds on the line, eight of the relay's requests."""
    from chairside.mediafile.generate import make_long_video
    path = tmp_path_factory.mktemp("kernel-wan") / "long.mp4"
    return make_long_video(path, target_bytes=32 * MiB, width=640, height=360, seed=11, label="tbf")


@pytest.fixture
def line(netns: None, tmp_path: Path) -> Iterator[Line]:
    with contextlib.ExitStack() as stack:  # unwinds in reverse: relay, cloud, database, then the namespace
        wan = stack.enter_context(kernel_wan(rate=RATE, burst="32kb", latency="50ms"))
        cloud = build_context(Settings.load(environ={}, data_dir=tmp_path / "cloud"))
        stack.callback(cloud.db.dispose)
        contract_id, patient_id, station_token, relay_token = _seed_cloud(cloud)
        cloud_url = stack.enter_context(_cloud_in_namespace(wan, tmp_path / "cloud"))
        seed_relay_from(cloud, contract_id, tmp_path / "relay")
        relay = RelayProcess(tmp_path / "relay", cloud_url, relay_token,
                             env={"CHAIRSIDE_RELAY_UPLOAD_CHUNK_BYTES": str(REQUEST)})
        stack.callback(relay.stop)
        relay.start()
        yield Line(wan, cloud_url, cloud, relay, station_token, patient_id)


class OffsetWatcher:
    """Samples the cloud's upload rows of one media item (every 20 ms) while a transfer runs."""

    def __init__(self, line: Line, media_id: uuid.UUID) -> None:
        self.line, self.media_id = line, media_id
        self.offsets: list[int] = []  # the offset at each sample with one upload
        self.most_uploads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            rows = self.line.uploads(self.media_id)
            self.most_uploads = max(self.most_uploads, len(rows))
            if len(rows) == 1:
                self.offsets.append(rows[0][0])

    @property
    def latest(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    def __enter__(self) -> OffsetWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _stored_blob_sha256(line: Line, sha256: str) -> str:
    blob = line.cloud.blobs.local_path(sha256)
    assert blob is not None, "the cloud does not hold the blob"
    return sha256_of(blob)


def test_a_recording_is_acknowledged_at_once_and_crosses_the_shaped_line_intact(line: Line, long_clip: Path) -> None:
    size, sha = long_clip.stat().st_size, sha256_of(long_clip)
    before = line.wan.sent_bytes()
    with line.station() as station:
        item = station.upload(long_clip, line.patient_id)
    acked_at = datetime.now(UTC)
    assert item["sha256"] == sha and item["size"] == size  # durable at the relay, checked end to end

    done = line.drained()
    assert done["failed_items"] == 0 and done["pending_bytes"] == 0 and done["online"]
    at_cloud = line.cloud_media(item["id"])
    assert at_cloud is not None and at_cloud["sha256"] == sha and at_cloud["size"] == size
    assert _stored_blob_sha256(line, sha) == sha
    # The station had its answer before the cloud had the file (it needs seconds on this line).
    [(offset, completed_at)] = line.uploads(uuid.UUID(item["id"]))
    assert offset == size and completed_at is not None
    assert (completed_at if completed_at.tzinfo else completed_at.replace(tzinfo=UTC)) > acked_at
    # And the bytes went through the shaper, not around it.
    assert line.wan.sent_bytes() - before >= size


@pytest.mark.parametrize("connections_lost", [False, True], ids=["link-down", "link-down-connections-lost"])
def test_a_link_down_mid_transfer_resumes_at_the_clouds_offset(line: Line, long_clip: Path,
                                                                connections_lost: bool) -> None:
    """The veth link goes down for 2 s while the relay streams a request. Alone, the kernel's TCP rides it
    out (retransmits once the link is back). With connections_lost, the cloud's end also forgets the
    connection while the link is down (a router or NAT restart), so the relay's next segment is reset and
    it must resume: from the bytes the cloud holds (one upload whose offset never goes back), resending
    no more than one request's bytes."""
    size, sha = long_clip.stat().st_size, sha256_of(long_clip)
    media_id = uuid.uuid4()
    before = line.wan.sent_bytes()
    with OffsetWatcher(line, media_id) as watcher:
        with line.station() as station:
            item = station.upload(long_clip, line.patient_id, media_id=media_id)
        assert item["sha256"] == sha

        def a_third_in() -> int | None:
            assert watcher.latest < size, "the transfer ended before the link could be taken down"
            return watcher.latest if watcher.latest >= size // 3 else None

        at_cut = wait_for(a_third_in, "a third of the file at the cloud", timeout=120, every=0.02)
        # Cut inside the next request: once about half of it has left the relay's end of the line.
        wait_for(lambda: line.wan.sent_bytes() - before >= at_cut * WIRE + REQUEST // 2 or None,
                 "half a request more on the line", timeout=120, every=0.02)
        line.wan.link(False)
        try:
            if connections_lost:
                assert line.wan.forget_connections(CLOUD_PORT) >= 1  # the upload's, at least
            time.sleep(2)
        finally:
            line.wan.link(True)
        done = line.drained()

    assert done["failed_items"] == 0 and done["pending_items"] == 0
    at_cloud = line.cloud_media(item["id"])
    assert at_cloud is not None and at_cloud["sha256"] == sha and at_cloud["size"] == size
    assert _stored_blob_sha256(line, sha) == sha
    # Resumed, not started over: one upload, its offset only ever moved forward, past where it was at the cut.
    assert watcher.most_uploads == 1
    assert all(b >= a for a, b in itertools.pairwise(watcher.offsets)), watcher.offsets
    assert 0 < at_cut < size and watcher.offsets[-1] == size
    # Wire bytes out of the relay's end: the file once, at most one request again, headers and polls.
    sent = line.wan.sent_bytes() - before
    assert sent <= (size + REQUEST) * WIRE + MiB, (sent, size)
