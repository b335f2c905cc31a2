"""Backups: a generation of new media vs a plain copy of the same bytes to the same target; an unchanged site's next
generation; restore time per GiB; verify's read rate vs the disk's sequential read.

    .venv/bin/python bench/backup.py [--gib 3] [--blob-mib 256] [--workers 4] [--keep]

The data folder is seeded through the services (contract, clinic, patient), then media rows naming blobs of
random bytes (a backup never parses media: it reads rows and bytes, so random bytes are an honest and worst case
workload: nothing compresses or dedupes). Every blob is encrypted on the way (AES-256-GCM under a master key),
as in production. Page caches of the files read are dropped (posix_fadvise DONTNEED) before each timed read, so
the reference and the measured run both start from the disk.

Targets: backup/plain copy >= 0.8; unchanged next generation reads 0 blobs; verify/sequential read >= 0.8.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import GiB, MiB, header, seed, workdir


def _drop_cache(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _make_blobs(ctx: Any, scratch: Path, count: int, size: int) -> list[tuple[str, int]]:
    """Random blobs into the site's blob store (encrypted at rest when it has a master key), named by their
    SHA-256; no whole blob in memory."""
    made = []
    for i in range(count):
        tmp = scratch / f"seed-{i}.bin"
        hasher = hashlib.sha256()
        with open(tmp, "wb") as out:
            left = size
            while left:
                piece = os.urandom(min(left, 8 * MiB))
                hasher.update(piece)
                out.write(piece)
                left -= len(piece)
        sha = hasher.hexdigest()
        ctx.blobs.put_file(sha, tmp, verified=True)
        tmp.unlink(missing_ok=True)
        made.append((sha, size))
    return made


def _add_rows(ctx: Any, seeded: Any, blobs: list[tuple[str, int]]) -> None:
    from datetime import UTC, datetime

    from chairside.db.models import Media

    with ctx.db.session() as s:
        for sha, size in blobs:
            s.add(Media(id=uuid.uuid4(), contract_id=seeded.contract_id, clinic_id=seeded.clinic_id,
                        patient_id=seeded.patient_id, kind="video", mime="video/mp4", sha256=sha, size=size,
                        filename="bench.mp4", captured_at=datetime.now(UTC), source="station"))


def _plain_copy(blob_root: Path, target: Path) -> float:
    """Read each stored blob and write it to the target folder: temp file, fsync, rename (what a copy tool does)."""
    target.mkdir(parents=True)
    started = time.perf_counter()
    for path in sorted(p for p in blob_root.rglob("*") if p.is_file() and len(p.name) == 64):
        tmp = target / (path.name + ".tmp")
        with open(path, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(MiB):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target / path.name)
    return time.perf_counter() - started


def _sequential_read(root: Path) -> tuple[float, int]:
    started = time.perf_counter()
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(4 * MiB):
                total += len(chunk)
    return time.perf_counter() - started, total


class CountingStore:
    """Counts reads of the primary's blobs (an unchanged site's next generation must read none)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def open_range(self, *args: object, **kwargs: object) -> Iterator[bytes]:
        self.reads += 1
        return self.inner.open_range(*args, **kwargs)  # type: ignore[attr-defined,no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--gib", type=float, default=3.0, help="new media in the generation (GiB)")
    parser.add_argument("--blob-mib", type=int, default=256, help="size of each recording (MiB)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="alternating plain copy / backup rounds")
    parser.add_argument("--clear-primary", action="store_true",
                        help="the primary's blobs in the clear (default: encrypted at rest, the production default)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from chairside.backup import catalog
    from chairside.backup.restore import restore, restore_settings
    from chairside.backup.run import run_backup
    from chairside.backup.seal import KeySealer
    from chairside.backup.targets import FolderTarget
    from chairside.backup.verify import verify
    from chairside.context import build_context
    from chairside.keys import MasterKey
    from chairside.settings import Settings

    count = max(1, round(args.gib * GiB / (args.blob_mib * MiB)))
    size = args.blob_mib * MiB
    header(f"backup: {count} recordings of {args.blob_mib} MiB ({count * size / GiB:.2f} GiB) of new media, "
           f"encrypted, folder target on the same disk, {args.workers} workers")
    with workdir("backup", keep=args.keep) as work:
        data = work / "data"
        seeded = seed(data)
        master = MasterKey.create(work / "keys" / "master.key")
        settings = Settings.load(environ={}, data_dir=data,
                                 master_key_file=None if args.clear_primary else master.path)
        ctx = build_context(settings)
        blobs = _make_blobs(ctx, work, count, size)
        _add_rows(ctx, seeded, blobs)
        total = count * size
        url = settings.database_url
        source = ctx.blobs
        kind = "in the clear (hashed on the way)" if args.clear_primary else "encrypted at rest (authenticated on read)"
        print(f"   primary's blobs: {kind}")

        # Alternate the reference and the measured run (the machine's load changes from minute to minute): the
        # figure is the median of the per-round ratios.
        ratios = []
        for rnd in range(args.rounds):
            _drop_cache(data / "blobs")
            plain_s = _plain_copy(data / "blobs", work / f"plain-target-{rnd}")
            shutil.rmtree(work / f"plain-target-{rnd}")
            _drop_cache(data / "blobs")
            target = FolderTarget(work / f"target-{rnd}")
            started = time.perf_counter()
            first = run_backup(url, source, target, KeySealer(master, target), work / "scratch", workers=args.workers)
            backup_s = time.perf_counter() - started
            ratios.append(plain_s / backup_s)
            print(f"   round {rnd + 1}: plain copy {total / MiB / plain_s:6.0f} MiB/s ({plain_s:.1f} s), "
                  f"backup (new) {total / MiB / backup_s:6.0f} MiB/s ({backup_s:.1f} s), ratio {ratios[-1]:.2f}")
            if rnd + 1 < args.rounds:
                shutil.rmtree(work / f"target-{rnd}")
        ratio = statistics.median(ratios)
        print(f"   backup/plain = {ratio:.2f} (median of {args.rounds})  {'PASS' if ratio >= 0.8 else 'FAIL'} (>= 0.8)")

        counting = CountingStore(source)
        started = time.perf_counter()
        second = run_backup(url, counting, target, KeySealer(master, target), work / "scratch",  # type: ignore[arg-type]
                            workers=args.workers)
        again_s = time.perf_counter() - started
        print(f"   unchanged next  {again_s:8.2f} s, blobs read: {counting.reads}, new blobs: {second.new_blobs}  "
              f"{'PASS' if counting.reads == 0 else 'FAIL'} (0 reads)")

        _drop_cache(target.root)
        seq_s, seq_bytes = _sequential_read(target.root / "blobs")
        _drop_cache(target.root)
        started = time.perf_counter()
        report = verify(target, KeySealer(master, target), catalog.load(target, first.generation),
                        workers=args.workers)
        verify_s = time.perf_counter() - started
        seq_rate, verify_rate = seq_bytes / seq_s, total / verify_s
        vratio = verify_rate / seq_rate
        print(f"   sequential read {seq_rate / MiB:8.0f} MiB/s ({seq_s:.1f} s, {seq_bytes / GiB:.2f} GiB stored)")
        print(f"   verify          {verify_rate / MiB:8.0f} MiB/s ({verify_s:.1f} s, ok={report.ok})  "
              f"verify/sequential = {vratio:.2f}  {'PASS' if vratio >= 0.8 else 'FAIL'} (>= 0.8)")

        _drop_cache(target.root)
        started = time.perf_counter()
        restored = restore(target, KeySealer(master, target), catalog.load(target, second.generation),
                           restore_settings(work / "restored", None, settings.master_key_file),
                           workers=args.workers)
        restore_s = time.perf_counter() - started
        print(f"   restore         {restore_s / (total / GiB):8.2f} s per GiB ({restore_s:.1f} s, "
              f"{restored.restored_blobs} blobs, {restored.restored_bytes / GiB:.2f} GiB)")
        ctx.db.dispose()


if __name__ == "__main__":
    main()
