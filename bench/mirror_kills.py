"""The kill series through a relay (issue 11, must-hold 1): N seeded random kills of the primary site.

Each round (tests/mirror/killrun.py): a primary (`cloud serve`), its mirror (`mirror serve`) and a
clinic's relay (`relay serve --upstream PRIMARY,MIRROR`) as real processes; a station uploads
recordings through the relay while an SDK user with both addresses registers and corrects
patients and a viewer reads through the relay; the primary site (app and database) is SIGKILLed
at a random moment (2–6 s, seeded); `mirror promote` runs at once. Printed per round and overall:

- RPO: recordings the relay acknowledged and missing (or damaged) at the new primary: must be 0;
- the metadata window: the kill time minus the acknowledgement of the oldest lost patient write
  (asynchronous replication: the distribution; PostgreSQL synchronous: must be 0);
- RTO: the kill until the SDK's first write acknowledged by the new primary (promote run at once).

Reference in the same run: the window as a ratio of Litestream's configured shipping cadence
(monitor + sync interval), and RTO as a ratio of the promotion command's own time.

    .venv/bin/python bench/mirror_kills.py --kills 20 --seed 1                 # SQLite + Litestream
    .venv/bin/python bench/mirror_kills.py --kills 20 --seed 1 --engine postgres --sync
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

from _common import ROOT, fmt_runs, header, median, percentile, workdir

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sync", action="store_true", help="PostgreSQL: synchronous replication to the standby")
    args = parser.parse_args()

    from tests.mirror import pg
    from tests.mirror.killrun import one_kill

    from chairside.mediafile import generate
    from chairside.mirror import litestream

    mode = "Litestream" if args.engine == "sqlite" else ("synchronous" if args.sync else "asynchronous")
    header(f"mirror site through a relay: {args.kills} seeded random kills ({args.engine}, {mode}, seed {args.seed})")
    rows: list[dict[str, Any]] = []
    with workdir("mirror-kills") as work:
        clips = []
        for i in range(3):
            clip = work / f"clip{i}.mp4"
            generate.make_video(clip, seconds=1.0, width=320, height=240, fps=30, label=f"kill {i}")
            clips.append(clip)
        for k in range(args.kills):
            rng = random.Random(args.seed * 1000 + k)
            folder = work / f"round{k}"
            if args.engine == "postgres":
                with pg.pg_pair() as pair:
                    row = one_kill(folder, rng, clips, pair, synchronous=args.sync)
            else:
                row = one_kill(folder, rng, clips)
            rows.append(row)
            print(f"   kill {k + 1:2d}: relay acked {row['acked_recordings']} recordings, lost "
                  f"{row['lost_recordings']}, duplicated {row['duplicated']}; patient writes acked "
                  f"{row['acked_writes']}, lost {row['lost_writes']} (window {row['window_s']:.2f} s); RTO "
                  f"{row['rto_s']:.1f} s (promote {row['promote_s']:.1f} s, serving as cloud {row['serving_s']:.1f} s)",
                  flush=True)
    lost = sum(r["lost_recordings"] for r in rows)
    windows = [float(r["window_s"]) for r in rows]
    rtos = [float(r["rto_s"]) for r in rows]
    cadence = (_seconds(litestream.MONITOR_INTERVAL) + _seconds(litestream.SYNC_INTERVAL)) \
        if args.engine == "sqlite" else None
    print(f"   RPO: recordings acknowledged by the relay and lost: {lost} of "
          f"{sum(r['acked_recordings'] for r in rows)} (target 0); duplicated {sum(r['duplicated'] for r in rows)}, "
          f"unexpected {sum(r['unexpected'] for r in rows)}")
    print(f"   metadata window (s): {fmt_runs(windows, '.2f')}; median {median(windows):.2f}, "
          f"p95 {percentile(windows, 95):.2f}, max {max(windows):.2f} (target <= 1 s async, 0 sync)")
    if cadence:
        print(f"   window / Litestream cadence ({cadence:.1f} s): max {max(windows) / cadence:.2f}")
    print(f"   RTO (s): {fmt_runs(rtos, '.1f')}; median {median(rtos):.1f}, p95 {percentile(rtos, 95):.1f} "
          f"(target <= 60 s); RTO / promote: median {median([r['rto_s'] / r['promote_s'] for r in rows]):.1f}")


def _seconds(interval: str) -> float:
    return float(interval.removesuffix("ms")) / 1000 if interval.endswith("ms") else float(interval.removesuffix("s"))


if __name__ == "__main__":
    main()
