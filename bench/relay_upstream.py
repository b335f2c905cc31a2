"""Relay: goodput of one upstream transfer over an emulated WAN, and bytes resent per cut.

The cloud (`chairside cloud serve`) and the relay (`chairside relay serve`) run as subprocesses;
between them, the userspace WAN emulator of the tests (tests/netem.py) at RATE Mbit/s with DELAY ms
one way, cutting the connection every CUT MB. A station puts one real H.264 file into the relay
while the line is down; then the line comes up and the relay's uploader carries it to the cloud.

Reference, measured in the same run through the same emulator: the link rate of a raw TCP
stream (bytes written as fast as the emulator takes them, into a sink). Figures: goodput (file
bytes / seconds from line-up until the cloud shows the item) over that link rate (target >= 0.9),
and the bytes resent per cut (client->cloud bytes through the emulator beyond the file's own and
the requests' headers, per cut; target <= one chunk). The relay sends requests of up to
`--chunk-mib` (relay_upload_chunk_bytes, default 64 MiB) without per-request checksums; the cloud
keeps what arrived before a cut, so a cut resends only the bytes in flight.

    .venv/bin/python bench/relay_upstream.py [--size-mib 300] [--rate-mbit 20] [--delay-ms 40] [--cut-mb 100]
                                             [--chunk-mib 64]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _common import ROOT, WORK, MiB, Relay, Seeded, Server, header, long_video, seed, workdir

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def relay_token(seeded: Seeded) -> str:
    from chairside.context import build_context
    from chairside.settings import Settings
    from chairside.tenancy.service import create_relay
    ctx = build_context(Settings.load(environ={}, data_dir=seeded.data_dir, database_url=seeded.database_url))
    try:
        return create_relay(ctx, seeded.clinic_id, "bench relay")[1]
    finally:
        ctx.db.dispose()


def seed_relay(seeded: Seeded, relay_dir: Path) -> None:
    from chairside.context import build_context
    from chairside.db.models import Clinic, Contract, Patient, Station
    from chairside.feed.rows import to_json, upsert
    from chairside.settings import Settings
    cloud = build_context(Settings.load(environ={}, data_dir=seeded.data_dir, database_url=seeded.database_url))
    relay = build_context(Settings.load(environ={}, data_dir=relay_dir), role="relay")
    try:
        with cloud.db.read() as s:
            rows: list[tuple[Any, dict[str, Any]]] = []
            for model in (Contract, Clinic, Station, Patient):
                key = model.id if model is Contract else model.contract_id
                for row in s.query(model).filter(key == seeded.contract_id):
                    rows.append((model, to_json(row, exclude=frozenset({"feed_seq", "contact_emails",
                                                                       "cancellation_notice_on"}))))
        with relay.db.session() as s:
            for model, body in rows:
                upsert(s, model, body)
                s.flush()
    finally:
        cloud.db.dispose()
        relay.db.dispose()


# -- the reference: the emulator's own link rate ---------------------------------------------------

def _sink() -> tuple[socket.socket, threading.Thread, list[int]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    got = [0]

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(1 << 20):
                    got[0] += len(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t, got


def link_rate(faults_kwargs: dict[str, Any], nbytes: int) -> float:
    """Bytes per second of a raw stream through the emulator, to the last byte at the sink."""
    from tests.netem import Faults, WanProxy

    srv, t, got = _sink()
    with WanProxy(srv.getsockname()[1], Faults(**faults_kwargs)) as wan:
        block = b"\0" * (1 << 20)
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", wan.port)) as c:
            sent = 0
            while sent < nbytes:
                c.sendall(block)
                sent += len(block)
            c.shutdown(socket.SHUT_WR)
            t.join(600)
        elapsed = time.perf_counter() - t0
    srv.close()
    return got[0] / elapsed


def station_put(relay_url: str, token: str, patient_id: str, path: Path) -> dict[str, Any]:
    from chairside.client import Client
    with Client(relay_url, token, timeout=300) as c:
        return c.upload(path, patient_id)


def one_run(src: Path, rate_mbit: float, delay_ms: float, cut_mb: float, chunk: int) -> dict[str, float]:
    from tests.netem import Faults, WanProxy

    with workdir("relay-upstream") as wd:
        seeded = seed(wd / "cloud")
        token = relay_token(seeded)
        seed_relay(seeded, wd / "relay")
        with Server(seeded.data_dir) as server:
            faults = Faults(rate_bps=rate_mbit * 1e6, latency_s=delay_ms / 1000, down=True)
            with WanProxy(server.port, faults) as wan, Relay(wd / "relay", wan.url, token, env={
                    "CHAIRSIDE_RELAY_UPLOAD_CHUNK_BYTES": str(chunk)}) as relay:
                item = station_put(relay.url, seeded.token, str(seeded.patient_id), src)
                before = faults.forwarded
                faults.cut_every_bytes = int(cut_mb * 1e6)
                faults.down = False
                t0 = time.perf_counter()
                deadline = time.monotonic() + 6 * 3600
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {seeded.token}"}) as c:
                    while c.get(f"/api/v1/media/{item['id']}").status_code != 200:
                        if time.monotonic() > deadline:
                            raise RuntimeError("the relay did not deliver the file")
                        time.sleep(0.05)
                elapsed = time.perf_counter() - t0
                at_cloud = httpx.get(f"{server.url}/api/v1/media/{item['id']}",
                                     headers={"Authorization": f"Bearer {seeded.token}"}).json()
                assert at_cloud["sha256"] == item["sha256"], "the cloud holds other bytes"
                sent = faults.forwarded - before
                cuts = faults.cuts
    size = src.stat().st_size
    requests = size / chunk + 4 * (cuts + 1)
    headers_estimate = 600 * requests  # a PATCH's request line and headers are about 500 bytes
    return {"size": size, "seconds": elapsed, "sent": sent, "cuts": cuts,
            "resent": max(0.0, sent - size - headers_estimate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=300)
    parser.add_argument("--rate-mbit", type=float, default=20.0)
    parser.add_argument("--delay-ms", type=float, default=40.0)
    parser.add_argument("--cut-mb", type=float, default=100.0)
    parser.add_argument("--chunk-mib", type=float, default=64.0, help="relay_upload_chunk_bytes (default 64 MiB)")
    parser.add_argument("--reference-mib", type=int, default=64)
    args = parser.parse_args()
    chunk = int(args.chunk_mib * MiB)

    header("relay_upstream: one upstream transfer over an emulated WAN with cuts")
    src = long_video(WORK / f"video-{args.size_mib}MiB.mp4", args.size_mib * MiB)
    print(f"   line: {args.rate_mbit:g} Mbit/s, {args.delay_ms:g} ms one way, a cut every {args.cut_mb:g} MB; "
          f"file {src.stat().st_size / MiB:,.0f} MiB; relay chunk {chunk / MiB:g} MiB")
    ref = link_rate({"rate_bps": args.rate_mbit * 1e6, "latency_s": args.delay_ms / 1000},
                    args.reference_mib * MiB)
    r = one_run(src, args.rate_mbit, args.delay_ms, args.cut_mb, chunk)
    goodput = r["size"] / r["seconds"]
    per_cut = r["resent"] / r["cuts"] if r["cuts"] else 0.0
    print(f"reference (raw stream through the emulator): {ref * 8 / 1e6:6.2f} Mbit/s")
    print(f"relay goodput (file / time to the cloud)   : {goodput * 8 / 1e6:6.2f} Mbit/s over {r['seconds']:.1f} s"
          f" = {goodput / ref:.3f} x link (target >= 0.9) {'PASS' if goodput / ref >= 0.9 else 'FAIL'}")
    print(f"bytes through the emulator                 : {r['sent'] / MiB:,.1f} MiB for a {r['size'] / MiB:,.1f} MiB"
          f" file; {r['cuts']} cuts")
    print(f"resent per cut                             : {per_cut / MiB:.2f} MiB (chunk {chunk / MiB:g} MiB; "
          f"target <= one chunk) {'PASS' if per_cut <= chunk else 'FAIL'}")


if __name__ == "__main__":
    main()
