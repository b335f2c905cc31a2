"""Relay memory: peak RSS of `chairside relay serve` while a station puts a large file into it and
the relay forwards it to the cloud (tus, requests of `relay_upload_chunk_bytes`, default 64 MiB,
streamed from one reused buffer; the whole file's SHA-256 checked by the cloud).

Same sampling as bench/rss.py (psutil every 50 ms, children included, plus VmHWM at the end).
Reference: the relay's own RSS when idle just before the upload.

    .venv/bin/python bench/relay_rss.py [--size-mib 5120]
"""

from __future__ import annotations

import argparse
import time

import httpx

from _common import WORK, MiB, Relay, Server, header, long_video, seed, tree_rss, workdir
from chairside.settings import Settings
from relay_upstream import relay_token, seed_relay, station_put
from rss import Sampler, hwm

TARGET_MB = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=5120)
    args = parser.parse_args()
    header("relay_rss: peak resident memory of the relay taking and forwarding a large file")
    src = long_video(WORK / f"video-{args.size_mib}MiB.mp4", args.size_mib * MiB)
    request_mib = Settings.load().relay_upload_chunk_bytes / MiB
    print(f"   file: {src.stat().st_size / MiB:,.0f} MiB real H.264 MP4; relay requests of {request_mib:g} MiB; "
          "upstream on loopback (no emulated WAN)")
    with workdir("relay-rss") as wd:
        seeded = seed(wd / "cloud")
        token = relay_token(seeded)
        seed_relay(seeded, wd / "relay")
        with Server(seeded.data_dir) as server, Relay(wd / "relay", server.url, token) as relay:
            time.sleep(1.0)
            idle = tree_rss(relay.pid)
            sampler = Sampler(relay.pid)
            sampler.start()
            t0 = time.perf_counter()
            item = station_put(relay.url, seeded.token, str(seeded.patient_id), src)
            t_in = time.perf_counter() - t0
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {seeded.token}"}) as c:
                while c.get(f"/api/v1/media/{item['id']}").status_code != 200:
                    time.sleep(0.1)
            t_all = time.perf_counter() - t0
            peak = sampler.stop()
            peak_hwm = hwm(relay.pid)
    top = max(peak, peak_hwm) / 1e6
    print(f"   station -> relay: {t_in:.0f} s; until the cloud shows it: {t_all:.0f} s"
          f" ({src.stat().st_size / MiB / t_all:.0f} MiB/s end to end); {sampler.samples} samples")
    print(f"reference (relay idle): {idle / 1e6:6.0f} MB")
    print(f"relay peak            : {top:6.0f} MB (sampled {peak / 1e6:.0f} MB, VmHWM {peak_hwm / 1e6:.0f} MB)"
          f" = {top / (idle / 1e6):.2f} x idle")
    print(f"relay peak vs target  : {top:.0f} MB (target <= {TARGET_MB} MB) {'PASS' if top <= TARGET_MB else 'FAIL'}")


if __name__ == "__main__":
    main()
