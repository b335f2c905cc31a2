"""Import and export throughput against `cp -r` of the same tree, on the same disk, in the same run.

A clinic's SSD is modelled by a tree of patient folders holding real H.264 recordings (one long
clip made once, each copy made distinct by a `free` box at its end, so no two files share a
SHA-256 and the blob store cannot skip one). Each round, alternating:

- reference: `cp -r SSD COPY` then `sync` (the copy on disk, as the import and export leave theirs);
- import:    `chairside import --from SSD --clinic ID --data DATA` into a fresh data folder
             (copy + SHA-256 as read, probe, thumbnail, blob read back and hashed, rows);
- export:    `chairside export --to OUT --contract ID --data DATA` of what was imported
             (stream + SHA-256, fsync, page cache dropped, read back from disk and hashed, BagIt).

ratio = t(cp -r + sync) / t(command): the target is >= 0.7. Medians over the rounds.

    .venv/bin/python bench/transfer.py [--files 8] [--file-mib 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from _common import BIN, WORK, MiB, header, long_video, median, seed, workdir


def make_ssd(root: Path, base: Path, files: int) -> int:
    """`files` distinct recordings in patient folders of 2 each; answers the bytes."""
    total = 0
    for i in range(files):
        folder = root / f"{1000 + i // 2:05d} 患者{i // 2}"
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / f"REC_{i:04d}.mp4"
        shutil.copyfile(base, dst)
        with dst.open("ab") as f:  # a top-level `free` box: still a valid MP4, another SHA-256
            payload = f"chairside bench copy {i}".encode()
            f.write((8 + len(payload)).to_bytes(4, "big") + b"free" + payload)
        total += dst.stat().st_size
    return total


def timed(cmd: list[str]) -> tuple[float, dict[str, object]]:
    os.sync()
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout[done.stdout.rfind("\n{") + 1:] if "\n{" in done.stdout else done.stdout)


def sha_pass(root: Path) -> float:
    """Seconds for one SHA-256 pass over every file of the tree (page cache): the least one verification costs."""
    t = time.perf_counter()
    for path in sorted(root.rglob("*.mp4")):
        h = hashlib.sha256()
        with path.open("rb", buffering=0) as f:
            while chunk := f.read(4 * MiB):
                h.update(chunk)
    return time.perf_counter() - t


def timed_cp(src: Path, dst: Path) -> float:
    os.sync()
    t = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    os.sync()
    elapsed = time.perf_counter() - t
    shutil.rmtree(dst)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--file-mib", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    header(f"transfer: import and export of {args.files} recordings of {args.file_mib} MiB against cp -r + sync")
    base = long_video(WORK / f"video-{args.file_mib}MiB.mp4", args.file_mib * MiB)
    chairside = str(BIN / "chairside")
    cp_s: list[float] = []
    imp_s: list[float] = []
    exp_s: list[float] = []
    sha_s: list[float] = []
    start_s: list[float] = []
    with workdir("transfer") as wd:
        ssd = wd / "ssd"
        total = make_ssd(ssd, base, args.files)
        mib = total / MiB
        print(f"   tree: {args.files} files, {mib:.0f} MiB, on {wd}")
        for run in range(args.runs):
            cp_s.append(timed_cp(ssd, wd / "copy"))
            sha_s.append(sha_pass(ssd))
            t0 = time.perf_counter()
            subprocess.run([chairside, "import", "--help"], check=True, capture_output=True)
            start_s.append(time.perf_counter() - t0)
            seeded = seed(wd / f"data{run}")
            t, summary = timed([chairside, "import", "--from", str(ssd), "--clinic", str(seeded.clinic_id),
                                "--data", str(seeded.data_dir), "--no-progress"])
            assert summary["files"] == args.files and not summary["unverified"], summary
            imp_s.append(t)
            t, summary = timed([chairside, "export", "--to", str(wd / f"out{run}"), "--contract",
                                str(seeded.contract_id), "--data", str(seeded.data_dir), "--no-progress"])
            assert summary["complete"] and summary["bag_valid"], summary
            exp_s.append(t)
            print(f"   round {run + 1}: cp -r {cp_s[-1]:.2f} s · one SHA-256 pass {sha_s[-1]:.2f} s · "
                  f"start-up {start_s[-1]:.2f} s · "
                  f"import {imp_s[-1]:.2f} s · export {exp_s[-1]:.2f} s · load {os.getloadavg()[0]:.1f}")
            shutil.rmtree(wd / f"data{run}")
            shutil.rmtree(wd / f"out{run}")
    cp, imp, exp, sha, start = median(cp_s), median(imp_s), median(exp_s), median(sha_s), median(start_s)
    print(f"   cp -r + sync  {mib / cp:7.0f} MiB/s")
    print(f"   SHA-256       {mib / sha:7.0f} MiB/s   one pass; each command hashes every byte twice (as read, "
          f"as stored / read back): ratio cap on one core {cp / (2 * sha):.2f}, on two {cp / sha:.2f}")
    print(f"   import        {mib / imp:7.0f} MiB/s   ratio {cp / imp:.2f}  {'PASS' if cp / imp >= 0.7 else 'FAIL'}")
    print(f"   export        {mib / exp:7.0f} MiB/s   ratio {cp / exp:.2f}  {'PASS' if cp / exp >= 0.7 else 'FAIL'}")
    print(f"   without the command's start-up ({start:.2f} s, `chairside import --help`; nothing next to a "
          f"days-long run): import ratio {cp / (imp - start):.2f}, export ratio {cp / (exp - start):.2f}")


if __name__ == "__main__":
    main()
