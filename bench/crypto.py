"""Encryption at rest: ingest and random-range serving, encrypted vs in the clear, in the same run.

Two `chairside cloud serve` processes over two data folders seeded alike; one has a master key
(CHAIRSIDE_MASTER_KEY_FILE, the key outside its data folder), the other none. In alternating rounds:

- ingest: the same real H.264 video uploaded with the SDK (tus, 16 MiB chunks) as a new item to each;
  the figure is MiB/s of the whole upload (the final PATCH includes ingest: probe, thumbnail, storing
  the blob, which is where the encryption happens).
- serving: CLIENTS threads reading random RANGE-byte ranges of that video for SECONDS each; MiB/s.

The figure is encrypted / clear for each (target >= 0.9), two ways: MiB/s of the wall clock, and MiB per
CPU-second of the server process (`tree_cpu_seconds` before and after each phase). On a shared machine the
wall-clock rates swing with the neighbours' load; the CPU cost per MiB does not, and it is what sets the
throughput of a CPU-bound server (the ingest's extra write of the encrypted copy is disk time, not CPU: the
wall-clock ratio is the one that shows it).

    .venv/bin/python bench/crypto.py [--size-mib 256] [--rounds 3] [--seconds 10] [--clients 8] [--range-kib 1024]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from _common import WORK, MiB, Server, fmt_runs, header, long_video, median, seed, tree_cpu_seconds, workdir
from _load import run_python

TARGET = 0.9


def upload(url: str, token: str, patient_id: uuid.UUID, video: Path) -> tuple[float, str]:
    from chairside.client import Client

    with Client(url, token) as client:
        t = time.perf_counter()
        item = client.upload(video, patient_id, media_id=uuid.uuid4())
        return time.perf_counter() - t, str(item["id"])


def in_process(video: Path, wd: Path, rounds: int, length: int) -> tuple[list[float], list[float]]:
    """Random `length`-byte ranges read as the byte-serving path reads them, without HTTP: a clear blob with one
    `preadv` into a fresh buffer (`media/ranges.py _read_cached`), an encrypted one with `read_plain` (one read,
    chunks decrypted into place). The cost of decryption alone. One thread, 1.5 s per round and store; MiB per
    CPU-second of this process."""
    import hashlib
    import os
    import random

    from chairside.blobs import FilesystemBlobStore
    from chairside.blobs.crypt import EncryptedBlobStore

    sha = hashlib.sha256()
    with open(video, "rb") as f:
        while block := f.read(4 * MiB):
            sha.update(block)
    key = os.urandom(32)
    clear = FilesystemBlobStore(wd / "inproc-clear")
    enc = EncryptedBlobStore(FilesystemBlobStore(wd / "inproc-enc"), lambda: ("bench", key), lambda _id: key)
    clear.put_file(sha.hexdigest(), video)
    enc.put_file(sha.hexdigest(), video)
    size = video.stat().st_size
    clear_path = clear.local_path(sha.hexdigest())
    assert clear_path is not None

    def read_clear(start: int) -> bytearray:
        buf = bytearray(length)
        fd = os.open(clear_path, os.O_RDONLY)
        try:
            os.preadv(fd, [buf], start)
        finally:
            os.close(fd)
        return buf

    def read_encrypted(start: int) -> bytearray:
        got = enc.read_plain(sha.hexdigest(), start, length)
        assert got is not None
        return got

    read = {"clear": read_clear, "encrypted": read_encrypted}
    rates: dict[str, list[float]] = {"clear": [], "encrypted": []}
    for r in range(rounds):
        for name in ("clear", "encrypted") if r % 2 == 0 else ("encrypted", "clear"):
            rng = random.Random(r)
            done, t, c = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t < 1.5:
                s = rng.randrange(0, size - length)
                done += len(read[name](s))
            rates[name].append(done / MiB / (time.process_time() - c))
    return rates["clear"], rates["encrypted"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--range-kib", type=int, default=1024)
    args = parser.parse_args()
    header("encryption at rest: ingest and range serving, encrypted vs clear")
    video = long_video(WORK / f"crypto-{args.size_mib}.mp4", args.size_mib * MiB)
    size = video.stat().st_size
    length = args.range_kib * 1024
    from chairside.keys import MasterKey

    with workdir("crypto") as wd:
        key = MasterKey.create(wd / "keys" / "master.key")
        folders = {"clear": wd / "clear" / "data", "encrypted": wd / "encrypted" / "data"}
        seeded = {name: seed(folder) for name, folder in folders.items()}
        env = {"clear": {}, "encrypted": {"CHAIRSIDE_MASTER_KEY_FILE": str(key.path)}}
        ingest: dict[str, list[float]] = {"clear": [], "encrypted": []}
        serve: dict[str, list[float]] = {"clear": [], "encrypted": []}
        ingest_cpu: dict[str, list[float]] = {"clear": [], "encrypted": []}  # MiB per server CPU-second
        serve_cpu: dict[str, list[float]] = {"clear": [], "encrypted": []}
        items: dict[str, str] = {}
        servers = {name: Server(folders[name], env=env[name]) for name in folders}
        for s in servers.values():
            s.__enter__()
        try:
            for r in range(args.rounds):
                order = ["clear", "encrypted"] if r % 2 == 0 else ["encrypted", "clear"]
                for name in order:
                    cpu = tree_cpu_seconds(servers[name].pid)
                    seconds, items[name] = upload(servers[name].url, seeded[name].token, seeded[name].patient_id,
                                                  video)
                    ingest_cpu[name].append(size / MiB / (tree_cpu_seconds(servers[name].pid) - cpu))
                    ingest[name].append(size / MiB / seconds)
                for name in order:
                    cpu = tree_cpu_seconds(servers[name].pid)
                    load = run_python(f"{servers[name].url}/api/v1/media/{items[name]}/content",
                                      {"Authorization": f"Bearer {seeded[name].token}"}, size, length,
                                      args.clients, args.seconds, seed=r + 1)
                    assert load.errors == 0, (name, load)
                    serve_cpu[name].append(load.bytes / MiB / (tree_cpu_seconds(servers[name].pid) - cpu))
                    serve[name].append(load.mib_s)
                print(f"round {r + 1}: ingest clear {ingest['clear'][-1]:.0f} / encrypted "
                      f"{ingest['encrypted'][-1]:.0f} MiB/s; serving clear {serve['clear'][-1]:.0f} / encrypted "
                      f"{serve['encrypted'][-1]:.0f} MiB/s")
        finally:
            for s in servers.values():
                s.__exit__(None, None, None)
        inproc_clear, inproc_enc = in_process(video, wd, args.rounds * 2, length)
    ri = median(ingest["encrypted"]) / median(ingest["clear"])
    rs = median(serve["encrypted"]) / median(serve["clear"])
    rci = median(ingest_cpu["encrypted"]) / median(ingest_cpu["clear"])
    rcs = median(serve_cpu["encrypted"]) / median(serve_cpu["clear"])
    print(f"video: {size / MiB:.0f} MiB; {args.rounds} rounds; {args.clients} clients × {args.range_kib} KiB ranges "
          f"for {args.seconds:.0f} s")
    print(f"ingest  MiB/s clear {fmt_runs(ingest['clear'])}  encrypted {fmt_runs(ingest['encrypted'])}  "
          f"ratio {ri:.2f} (target ≥ {TARGET})")
    print(f"serving MiB/s clear {fmt_runs(serve['clear'])}  encrypted {fmt_runs(serve['encrypted'])}  "
          f"ratio {rs:.2f} (target ≥ {TARGET})")
    print(f"ingest  MiB per server CPU-s clear {fmt_runs(ingest_cpu['clear'])}  encrypted "
          f"{fmt_runs(ingest_cpu['encrypted'])}  ratio {rci:.2f} (target ≥ {TARGET})")
    print(f"serving MiB per server CPU-s clear {fmt_runs(serve_cpu['clear'])}  encrypted "
          f"{fmt_runs(serve_cpu['encrypted'])}  ratio {rcs:.2f} (target ≥ {TARGET})")
    print(f"the read alone (no HTTP, 1 thread) MiB per CPU-s clear {fmt_runs(inproc_clear)}  encrypted "
          f"{fmt_runs(inproc_enc)}  ratio {median(inproc_enc) / median(inproc_clear):.2f}")


if __name__ == "__main__":
    main()
