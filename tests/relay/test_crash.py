"""kill -9 of the relay at seeded random points, during station uploads and during upstream transfers:
every acknowledged upload reaches the cloud exactly once with its SHA-256, no blob is damaged, and
each kill costs at most about one chunk of resent bytes on the WAN."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from chairside.context import build_context
from chairside.db.models import Media, OutboxOp
from chairside.settings import Settings
from tests.netem import Faults
from tests.relay.conftest import CHUNK, RelaySetup, on_both_clouds, sha256_of


@on_both_clouds
def test_kill_9_at_random_points_loses_nothing_and_resends_at_most_a_chunk_per_kill(
    make_relay, big_clips: list[Path]
) -> None:
    rng = random.Random(5_2026)
    faults = Faults(rate_bps=24e6)  # 3 MB/s: each 3 MB file takes about a second upstream
    setup: RelaySetup = make_relay(faults=faults)
    cloud = setup.cloud
    clips = big_clips[:6]
    acknowledged: dict[str, dict[str, Any]] = {}
    kills = 0

    def station_upload(path: Path, out: list[dict[str, Any]]) -> None:
        with setup.station(timeout=30) as station:
            out.append(station.upload(path, cloud.patient_id, chunk_size=512 * 1024, retry_delay=0.2,
                                      max_retries=40))

    for clip in clips:
        # 1. kill during the station's upload to the relay (or during its ingest)
        out: list[dict[str, Any]] = []
        t = threading.Thread(target=station_upload, args=(clip, out))
        t.start()
        time.sleep(rng.uniform(0.0, 0.6))
        setup.relay.kill9()
        kills += 1
        setup.relay.start()
        t.join(180)
        assert out, "the station's upload did not finish after the relay came back"
        acknowledged[str(clip)] = out[0]
        # 2. kill during the relay's transfers to the cloud
        time.sleep(rng.uniform(0.1, 1.2))
        setup.relay.kill9()
        kills += 1
        setup.relay.start()

    assert kills >= 10
    setup.drained(timeout=240)
    st = setup.status()
    assert st["failed_items"] == 0

    total = 0
    for clip in clips:
        item = acknowledged[str(clip)]
        sha = sha256_of(clip)
        assert item["sha256"] == sha
        at_cloud = cloud.media(item["id"])
        assert at_cloud is not None and at_cloud["sha256"] == sha and at_cloud["size"] == clip.stat().st_size
        blob = cloud.ctx.blobs.local_path(sha)
        assert blob is not None and sha256_of(blob) == sha  # the cloud's copy is whole
        total += clip.stat().st_size
    with cloud.ctx.db.read() as s:  # exactly once: one row per acknowledged upload, nothing else
        assert s.scalar(select(func.count()).select_from(Media).where(Media.contract_id == cloud.contract_id)) == \
            len(clips)

    rctx = build_context(Settings.load(environ={}, data_dir=setup.relay.data_dir), role="relay", upgrade=False)
    try:
        for sha in rctx.blobs.iter_hashes():  # no blob at the relay is damaged
            path = rctx.blobs.local_path(sha)
            assert path is not None and sha256_of(path) == sha
        with rctx.db.read() as s:
            ops = s.scalars(select(OutboxOp).where(OutboxOp.kind == "media.upload")).all()
            assert len(ops) == len(clips) and all(op.done_at is not None for op in ops)
    finally:
        rctx.db.dispose()

    # Bytes resent on the WAN: what went through the proxy beyond the files themselves, less the
    # requests' own headers (generously: 4 KiB per chunk-sized request, plus polls and probes).
    overhead = 4096 * (total // CHUNK + 20 * len(clips)) + 256 * 1024
    resent = faults.forwarded - total
    assert resent <= kills * CHUNK + overhead, (resent, kills, faults.forwarded, total)
