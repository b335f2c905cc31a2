"""A relay back after a month offline: how long it takes to catch up with the cloud's feed, and its memory.

The cloud's data folder is seeded through the services, each row with its feed event: a contract,
a clinic, a station, a relay token, `--patients` patients, and `--media` media items of them
(rows written with the real emit code of `feed.changes`, without files: one real thumbnail blob
shared by all, so the relay's default prefetch of thumbnails does its work). Then `chairside cloud
serve` and, on a fresh data folder, `chairside relay serve` start; the relay's follower pulls the
feed (pages of 500) and applies it. Measured: the time from the relay's start until its status
says `behind: 0` at the cloud's head, and the relay process's peak RSS (sampled every 20 ms).

Reference, in the same run: the time to download the same feed pages with httpx without
applying them (what the network and the cloud alone cost).

    .venv/bin/python bench/relay_catchup.py [--patients 1000] [--media 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from _common import BIN, MiB, Server, free_port, header, operator, seed, stop, tree_rss, workdir

TARGET_S = 60.0
TARGET_RSS = 200 * MiB


def seed_cloud(data_dir: Path, patients: int, media: int) -> tuple[str, str, int]:
    """Answers the station token, the relay token and the feed's head."""
    from chairside.context import build_context
    from chairside.db.models import Contract, Media
    from chairside.feed import changes
    from chairside.mediafile.generate import make_jpeg
    from chairside.mediafile.thumbnails import make_thumbnail
    from chairside.patients import service as patients_service
    from chairside.settings import Settings
    from chairside.tenancy.service import create_relay
    seeded = seed(data_dir)  # through the services: each row with its feed event
    ctx = build_context(Settings.load(environ={}, data_dir=data_dir))
    try:
        photo = data_dir.parent / "photo.jpg"
        make_jpeg(photo, width=800, height=600)
        thumb = make_thumbnail(photo, "image", 480)
        thumb_sha = hashlib.sha256(thumb).hexdigest()
        ctx.blobs.put_stream(thumb_sha, [thumb])
        _, relay_token = create_relay(ctx, seeded.clinic_id)
        t = time.perf_counter()
        ids = [patients_service.create(ctx, operator(seeded.contract_id), seeded.clinic_id, f"{10_000 + i}",
                                       f"患者 {i}", f"カンジャ {i}", sex="unknown").id for i in range(patients)]
        # The media rows are written here with their feed events (the real emit code), not ingested: ingest
        # needs each item's file, and the relay's catch-up fetches only the thumbnails (the one made above).
        month_ago = datetime.now(UTC) - timedelta(days=30)
        for start in range(0, media, 1000):
            with ctx.db.session() as s:
                for j in range(start, min(media, start + 1000)):
                    video = j % 3 == 0
                    m = Media(id=uuid.uuid4(), contract_id=seeded.contract_id, clinic_id=seeded.clinic_id,
                              patient_id=ids[j % len(ids)], kind="video" if video else "image",
                              mime="video/mp4" if video else "image/jpeg",
                              sha256=hashlib.sha256(f"bench {j}".encode()).hexdigest(), size=1_000_000 + j,
                              filename=f"REC_{j:05d}.MP4" if video else f"IMG_{j:05d}.JPG",
                              captured_at=month_ago + timedelta(minutes=8 * j), duration_s=600.0 if video else None,
                              width=1920, height=1080, thumb_sha256=thumb_sha, source="station")
                    s.add(m)
                    changes.media_changed(s, m)
        with ctx.db.read() as s:
            contract = s.get(Contract, seeded.contract_id)
            assert contract is not None
            head = contract.feed_seq
        print(f"   seeded {patients:,} patients and {media:,} media with their feed events in "
              f"{time.perf_counter() - t:.0f} s; feed head {head:,}")
        return seeded.token, relay_token, head
    finally:
        ctx.db.dispose()


def download_only(url: str, relay_token: str) -> tuple[float, int]:
    """The reference: every feed page, fetched and parsed, nothing applied."""
    t = time.perf_counter()
    after, events = 0, 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {relay_token}"}, timeout=60) as client:
        while True:
            r = client.get("/api/v1/feed", params={"after": after, "limit": 500})
            r.raise_for_status()
            page = r.json()
            events += len(page["items"])
            after = page["next"]
            if not page["more"]:
                break
    return time.perf_counter() - t, events


def catch_up(cloud_url: str, relay_token: str, station_token: str, head: int, data_dir: Path) -> tuple[float, int]:
    port = free_port()
    env = {**os.environ, "CHAIRSIDE_RELAY_FEED_WAIT_S": "5"}
    args = [str(BIN / "chairside"), "relay", "serve", "--data", str(data_dir), "--upstream", cloud_url,
            "--token", relay_token, "--host", "127.0.0.1", "--port", str(port)]
    log = (data_dir.parent / "relay.log").open("wb")
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    peak, elapsed, last_poll = 0, None, 0.0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {station_token}"},
                          timeout=10) as client:
            while time.perf_counter() - t < 600:
                if proc.poll() is not None:
                    raise RuntimeError(f"relay exited: {(data_dir.parent / 'relay.log').read_text()[-2000:]}")
                peak = max(peak, tree_rss(proc.pid))
                if time.perf_counter() - last_poll >= 0.1:
                    last_poll = time.perf_counter()
                    with contextlib.suppress(httpx.HTTPError):
                        r = client.get("/api/v1/relay/status")
                        if r.status_code == 200:
                            feed = r.json().get("feed") or {}
                            if feed.get("cursor") == head and feed.get("behind") == 0:
                                elapsed = time.perf_counter() - t
                                break
                time.sleep(0.02)
        if elapsed is None:
            raise RuntimeError("the relay did not catch up within 10 minutes")
        for _ in range(25):  # the thumbnail prefetch settles after the feed: keep sampling memory a little
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.02)
        return elapsed, peak
    finally:
        stop(proc)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--media", type=int, default=5000)
    args = parser.parse_args()
    header(f"relay catch-up: {args.patients:,} patients and {args.media:,} media waiting in the feed")
    with workdir("relay-catchup") as wd:
        station_token, relay_token, head = seed_cloud(wd / "cloud", args.patients, args.media)
        with Server(wd / "cloud") as cloud:
            ref_s, events = download_only(cloud.url, relay_token)
            print(f"   reference: download the {events:,} events' pages only: {ref_s:.1f} s")
            took, peak = catch_up(cloud.url, relay_token, station_token, head, wd / "relay")
        from sqlalchemy import create_engine, text

        engine = create_engine(f"sqlite:///{wd / 'relay' / 'chairside.db'}")
        with engine.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ("patients", "media")}
        engine.dispose()
        print(f"   relay (start to behind=0): {took:.1f} s = x{took / ref_s:.1f} the download alone; "
              f"replica holds {counts['patients']:,} patients, {counts['media']:,} media")
        print(f"   relay peak RSS: {peak / MiB:.0f} MB")
        ok_t, ok_m = took <= TARGET_S, peak <= TARGET_RSS
        print(f"target catch-up <= {TARGET_S:.0f} s: {'PASS' if ok_t else 'FAIL'}; "
              f"peak RSS <= {TARGET_RSS / MiB:.0f} MB: {'PASS' if ok_m else 'FAIL'}")


if __name__ == "__main__":
    main()
