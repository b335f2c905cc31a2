"""The relay over a bad line: offline acknowledgement, drain on return, cuts, stalls, disk and quota."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import ChairsideError
from chairside.db.models import CachedBlob, Contract
from chairside.feed import changes
from chairside.settings import Settings
from tests.netem import Faults
from tests.relay.conftest import CHUNK, RelaySetup, UpCloud, on_both_clouds, sha256_of, wait_for


def _relay_db(setup: RelaySetup):  # type: ignore[no-untyped-def]
    from chairside.context import build_context
    return build_context(Settings.load(environ={}, data_dir=setup.relay.data_dir), role="relay", upgrade=False)


def _status_when(setup: RelaySetup, ok: Callable[[dict[str, Any]], bool], what: str,
                 timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = setup.status()
        return st if ok(st) else None

    return wait_for(probe, what, timeout=timeout, every=0.2)


def test_upload_is_acknowledged_offline_and_drains_when_the_line_returns(make_relay, big_clips: list[Path]) -> None:
    setup: RelaySetup = make_relay()
    cloud: UpCloud = setup.cloud
    setup.wan.outage(True)
    clip = big_clips[0]
    with setup.station() as station:
        item = station.upload(clip, cloud.patient_id)  # acknowledged by the relay, the cloud unreachable
        assert item["sha256"] == sha256_of(clip)
        # other stations of the clinic see it at once, from the relay
        assert [m["id"] for m in station.list_media(cloud.patient_id)] == [item["id"]]
    st = _status_when(setup, lambda s: not s["online"], "the relay to show offline")
    assert st["pending_items"] == 1 and st["pending_bytes"] == clip.stat().st_size
    assert st["last_error"] and "cannot reach the cloud" in st["last_error"]
    assert cloud.media(item["id"]) is None

    setup.wan.outage(False)
    done = setup.drained(timeout=120)
    assert done["online"] and done["failed_items"] == 0
    at_cloud = cloud.media(item["id"])
    assert at_cloud is not None and at_cloud["sha256"] == sha256_of(clip) and at_cloud["size"] == clip.stat().st_size
    assert at_cloud["station_id"] == str(cloud.station_id)
    blob = cloud.ctx.blobs.local_path(at_cloud["sha256"])
    assert blob is not None and sha256_of(blob) == item["sha256"]
    # confirmed by the cloud: the relay's cache may now evict it
    rctx = _relay_db(setup)
    try:
        with rctx.db.read() as s:
            cached = s.get(CachedBlob, item["sha256"])
            assert cached is not None and cached.pinned is False
    finally:
        rctx.db.dispose()


@on_both_clouds
def test_cuts_at_random_byte_counts_resend_at_most_a_chunk_each(make_relay, big_clips: list[Path]) -> None:
    rng = random.Random(20261124)
    faults = Faults(rate_bps=40e6)
    setup: RelaySetup = make_relay(faults=faults)
    cloud = setup.cloud
    clips = big_clips[1:3]
    total = sum(p.stat().st_size for p in clips)
    faults.cut_after_bytes = faults.forwarded + rng.randint(50_000, 2 * CHUNK)
    stop = threading.Event()

    def cutter() -> None:  # a new cut at a random byte count after each one, 8 in all
        seen = 0
        while not stop.is_set() and seen < 8:
            if faults.cuts > seen:
                seen = faults.cuts
                faults.cut_after_bytes = faults.forwarded + rng.randint(50_000, 4 * CHUNK)
            stop.wait(0.01)

    t = threading.Thread(target=cutter, daemon=True)
    before = faults.forwarded
    t.start()
    try:
        with setup.station() as station:
            items = [station.upload(p, cloud.patient_id) for p in clips]
        setup.drained(timeout=180)
    finally:
        stop.set()
        t.join()
    for p, item in zip(clips, items, strict=True):
        at_cloud = cloud.media(item["id"])
        assert at_cloud is not None and at_cloud["sha256"] == sha256_of(p)
    assert faults.cuts >= 3
    sent = faults.forwarded - before
    requests_overhead = 4096 * (total // CHUNK + 10) + 64 * 1024  # headers, HEADs, GETs, the feed's polls
    assert sent - total <= faults.cuts * CHUNK + requests_overhead, (sent, total, faults.cuts)


def test_a_silent_stall_ends_in_a_timeout_and_the_transfer_resumes(make_relay, big_clips: list[Path]) -> None:
    """The stalled PATCH holds the cloud's upload until the cloud's idle timeout ends it (keeping the bytes that
    arrived); the relay's retry then resumes the same upload, it does not start a new one."""
    import dataclasses

    from sqlalchemy import func, select

    from chairside.db.models import Upload
    faults = Faults(rate_bps=8e6)
    setup: RelaySetup = make_relay(faults=faults)
    cloud = setup.cloud
    cloud.ctx.settings = dataclasses.replace(cloud.ctx.settings, upload_idle_timeout_s=3.0)
    clip = big_clips[3]
    with setup.station() as station:
        item = station.upload(clip, cloud.patient_id)
    wait_for(lambda: faults.forwarded > 2 * CHUNK or None, "bytes to flow upstream", timeout=60, every=0.02)
    faults.stall = True
    st = _status_when(setup, lambda s: bool(s["retrying_because"]) and "Timeout" in s["retrying_because"],
                      "the stalled transfer to time out")
    assert st["pending_items"] == 1
    faults.stall = False
    setup.drained(timeout=120)
    at_cloud = cloud.media(item["id"])
    assert at_cloud is not None and at_cloud["sha256"] == sha256_of(clip)
    with cloud.ctx.db.read() as s:  # resumed, not started over
        assert s.scalar(select(func.count()).select_from(Upload).where(Upload.media_id == uuid.UUID(item["id"]))) == 1


def test_relay_refuses_new_uploads_below_its_disk_watermark_but_reads_keep_working(
    make_relay, media_dir: Path
) -> None:
    setup: RelaySetup = make_relay(env={"CHAIRSIDE_RELAY_MIN_FREE_BYTES": str(1 << 60)})
    with setup.station() as station:
        with pytest.raises(ChairsideError) as refused:
            station.upload(media_dir / "clip.mp4", setup.cloud.patient_id, max_retries=0)
        assert refused.value.status == 507
        assert "almost out of disk space" in refused.value.detail
        assert "still on this station" in refused.value.detail
        assert station.get_patient(setup.cloud.patient_id)["chart_no"] == "00001"
        assert station.list_media(setup.cloud.patient_id) == []


def test_over_quota_video_is_refused_online_and_accepted_offline(make_relay, media_dir: Path) -> None:
    setup: RelaySetup = make_relay(start=False)
    up = setup.cloud
    with up.ctx.db.session() as s:  # the contract is at its limit (at the cloud; the relay gets the same row)
        contract = s.get(Contract, up.contract_id)
        assert contract is not None
        contract.stored_video_ms = contract.plan_hours * 3_600_000
        changes.contract_changed(s, contract.id)  # announced, as every change of the counter is
    from tests.relay.conftest import seed_relay

    seed_relay(up, setup.relay.data_dir)
    setup.relay.start()
    wait_for(lambda: setup.status()["online"] or None, "the relay to reach the cloud", timeout=30)
    with setup.station() as station:
        with pytest.raises(ChairsideError) as refused:
            station.upload(media_dir / "clip.mp4", up.patient_id, max_retries=0)
        assert refused.value.status == 403 and "video hours" in refused.value.detail.lower()
        setup.wan.outage(True)
        wait_for(lambda: not setup.status()["online"] or None, "the relay to show offline", timeout=30)
        item = station.upload(media_dir / "clip.mp4", up.patient_id, media_id=uuid.uuid4())
        assert item["kind"] == "video"
    assert setup.status()["accepted_over_quota"] == 1
    with pytest.raises(httpx.HTTPError):
        httpx.get(setup.wan.url + "/api/v1/health", timeout=2).raise_for_status()


def test_a_file_that_arrives_different_is_sent_again_from_the_start(make_relay, big_clips: list[Path]) -> None:
    """Requests carry no per-request checksum: the cloud checks the whole file by its SHA-256 at the last
    byte. Bytes damaged at the relay (after the station's upload) make the cloud answer 460 and drop the
    upload; the relay reports it and sends the file again from the start, until the bytes are right."""
    import os

    setup: RelaySetup = make_relay(faults=Faults(rate_bps=40e6))
    cloud = setup.cloud
    setup.wan.outage(True)
    clip = big_clips[6]
    with setup.station() as station:
        item = station.upload(clip, cloud.patient_id)
    rctx = _relay_db(setup)
    try:
        path = rctx.blobs.local_path(item["sha256"])
    finally:
        rctx.db.dispose()
    assert path is not None
    good = path.read_bytes()
    mode = path.stat().st_mode
    os.chmod(path, 0o600)
    path.write_bytes(good[:100_000] + bytes(b ^ 0xFF for b in good[100_000:100_016]) + good[100_016:])
    setup.wan.outage(False)
    st = _status_when(setup, lambda s: "sent again from the start" in (s["retrying_because"] or ""),
                      "the relay to report the damaged file")
    assert "460" in st["retrying_because"] and st["failed_items"] == 0
    assert cloud.media(item["id"]) is None
    path.write_bytes(good)
    os.chmod(path, mode)
    setup.drained(timeout=120)
    at_cloud = cloud.media(item["id"])
    assert at_cloud is not None and at_cloud["sha256"] == sha256_of(clip)
