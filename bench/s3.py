"""tus ingest to a real S3 store (SeaweedFS) vs to the filesystem store, in the same run; server memory; and the
cost of the SHA-256 re-read when an upload's last PATCH lands on a server that did not see the earlier ones.

For each store a fresh `chairside cloud serve` (SQLite) takes one upload of a real MP4 (a generated clip made
`--size-mib` large with a top-level `free` box of random bytes) in tus PATCHes of `--chunk-mib`, as tuspy
sends them. Figures: wall-clock MiB/s, server CPU seconds per GiB, and the server's VmHWM against its VmHWM
before the upload. The reference is the filesystem store measured in the same run.

The re-read: the same upload on S3, but the server is restarted before the last PATCH (its in-memory
running hash is gone, as on another server): the last PATCH's time against the last PATCH's time without a
restart.

    .venv/bin/python bench/s3.py [--size-mib 1024] [--chunk-mib 64] [--runs 1]
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import struct
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from _common import ROOT, WORK, MiB, Seeded, Server, header, median, seed, workdir

sys.path.insert(0, str(ROOT))  # the tests' SeaweedFS launcher (tests/seaweed.py): one way to start it
from tests.seaweed import SeaweedS3


def padded_clip(path: Path, size: int) -> Path:
    if path.exists() and path.stat().st_size == size:
        return path
    from chairside.mediafile.generate import make_video

    clip = path.with_suffix(".clip.mp4")
    make_video(clip, seconds=1.0, width=640, height=360, fps=30)
    head = clip.read_bytes()
    extra = size - len(head) - 8
    with path.open("wb") as f:
        f.write(head)
        f.write(struct.pack(">I4s", extra + 8, b"free"))
        while extra:
            n = min(extra, 8 * MiB)
            f.write(os.urandom(n))
            extra -= n
    clip.unlink()
    return path


class LoggingServer(Server):
    """`chairside cloud serve` with INFO logging on (the S3 completion logs where its time goes)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env=env)
        code = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
                "from chairside.cli import main; sys.argv[0] = 'chairside'; main()")
        self.args = [sys.executable, "-c", code, *self.args[1:]]


def vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _meta(seeded: Seeded, name: str) -> str:
    values = {"patient_id": str(seeded.patient_id), "media_id": str(uuid.uuid4()), "filename": name}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def _chunks(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left:
            block = f.read(min(left, MiB))
            if not block:
                raise RuntimeError("short read")
            left -= len(block)
            yield block


def tus_upload(url: str, seeded: Seeded, src: Path, chunk: int, *, between: object = None) -> tuple[float, float]:
    """Upload `src` in PATCHes of `chunk`; answer (seconds in all, seconds of the last PATCH). `between`, when
    given, is called before the last PATCH (and answers the URL to send it to)."""
    size = src.stat().st_size
    auth = {"Authorization": f"Bearer {seeded.token}", "Tus-Resumable": "1.0.0"}
    with httpx.Client(timeout=600) as http:
        t0 = time.perf_counter()
        r = http.post(f"{url}/api/v1/uploads/", headers={**auth, "Upload-Length": str(size),
                                                          "Upload-Metadata": _meta(seeded, src.name)})
        r.raise_for_status()
        location = r.headers["Location"]
        offset, last = 0, 0.0
        while offset < size:
            n = min(chunk, size - offset)
            if offset + n == size and between is not None:
                url = between()  # type: ignore[operator]
            t1 = time.perf_counter()
            r = http.patch(url + location, content=_chunks(src, offset, n), headers={
                **auth, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(n)})
            if r.status_code != 204:
                raise RuntimeError(f"PATCH at {offset}: {r.status_code} {r.text[:300]}")
            last = time.perf_counter() - t1
            offset = int(r.headers["Upload-Offset"])
        return time.perf_counter() - t0, last


def one(src: Path, chunk: int, env: dict[str, str] | None, name: str) -> dict[str, float]:
    with workdir(f"s3-{name}") as wd:
        seeded = seed(wd / "data")
        with LoggingServer(seeded.data_dir, env=env) as server:
            warm = padded_clip(WORK / "s3-warm-9MiB.mp4", 9 * MiB)
            tus_upload(server.url, seeded, warm, chunk)  # loads PyAV, boto3, the thumbnailer
            before, cpu0 = vm(server.pid, "VmHWM"), server.cpu_seconds()
            seconds, last = tus_upload(server.url, seeded, src, chunk)
            cpu = server.cpu_seconds() - cpu0
            after = vm(server.pid, "VmHWM")
        for line in server.log_path.read_text(errors="replace").splitlines():
            if "on S3 stored" in line and str(src.stat().st_size) in line:
                print(f"   server log: {line.strip()[-150:]}")
    size = src.stat().st_size
    return {"mibs": size / MiB / seconds, "cpu_per_gib": cpu / (size / (1 << 30)), "hwm_before": before,
            "hwm_after": after, "last": last}


def with_bucket(s3: SeaweedS3) -> dict[str, str]:
    """A fresh bucket per measurement: the same bytes stored before would skip the blob's copy."""
    bucket = s3.make_bucket(f"bench{secrets.token_hex(4)}")
    return {**s3.env(), "CHAIRSIDE_BLOB_URL": f"s3://{bucket}/blobs?endpoint_url={s3.endpoint_url}"}


def reread(src: Path, chunk: int, env: dict[str, str]) -> float:
    """The last PATCH's seconds when the server restarted just before it (the running hash is lost)."""
    with workdir("s3-reread") as wd:
        seeded = seed(wd / "data")
        server = Server(seeded.data_dir, env=env).__enter__()
        holder = [server]

        def restart() -> str:
            holder[0].__exit__(None, None, None)
            holder[0] = Server(seeded.data_dir, env=env).__enter__()
            return holder[0].url

        try:
            _, last = tus_upload(server.url, seeded, src, chunk, between=restart)
        finally:
            holder[0].__exit__(None, None, None)
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    header("s3: tus ingest to SeaweedFS S3 vs the filesystem store, same run")
    src = padded_clip(WORK / f"s3-{args.size_mib}MiB.mp4", args.size_mib * MiB)
    chunk = args.chunk_mib * MiB
    print(f"   file: {src.stat().st_size / MiB:,.0f} MiB MP4; PATCHes of {args.chunk_mib} MiB; runs: {args.runs}")
    with SeaweedS3(WORK / f"seaweed-{secrets.token_hex(4)}") as s3:
        fs, on_s3, rereads = [], [], []
        for run in range(1, args.runs + 1):
            fs.append(one(src, chunk, None, "fs"))
            on_s3.append(one(src, chunk, with_bucket(s3), "s3"))
            rereads.append(reread(src, chunk, with_bucket(s3)))
            for label, r in (("filesystem", fs[-1]), ("S3", on_s3[-1])):
                print(f"   run {run} {label:10}: {r['mibs']:6.1f} MiB/s, server CPU {r['cpu_per_gib']:5.1f} s/GiB, "
                      f"VmHWM {r['hwm_before'] / MiB:.0f} -> {r['hwm_after'] / MiB:.0f} MiB, "
                      f"last PATCH {r['last']:.2f} s")
            print(f"   run {run} S3, server restarted before the last PATCH: last PATCH {rereads[-1]:.2f} s")
    m_fs = {k: median([r[k] for r in fs]) for k in fs[0]}
    m_s3 = {k: median([r[k] for r in on_s3]) for k in on_s3[0]}
    print(f"reference (filesystem): {m_fs['mibs']:6.1f} MiB/s, {m_fs['cpu_per_gib']:.1f} CPU s/GiB")
    print(f"S3 (SeaweedFS)        : {m_s3['mibs']:6.1f} MiB/s, {m_s3['cpu_per_gib']:.1f} CPU s/GiB"
          f" = {m_s3['mibs'] / m_fs['mibs']:.2f} x filesystem")
    growth_fs = (m_fs["hwm_after"] - m_fs["hwm_before"]) / MiB
    print(f"S3 server VmHWM growth: {(m_s3['hwm_after'] - m_s3['hwm_before']) / MiB:.0f} MiB on a "
          f"{src.stat().st_size / MiB:.0f} MiB upload (filesystem: {growth_fs:.0f} MiB)")
    print(f"hash re-read at completion (server changed): last PATCH {median(rereads):.2f} s vs "
          f"{m_s3['last']:.2f} s with the running hash")


if __name__ == "__main__":
    main()
