"""The timeline filtered by tooth: one patient's items read with `?tooth=16`, against the same timeline unfiltered.

A database built by the migrations (SQLite, and PostgreSQL with --db postgres) is seeded in bulk with one
contract, `--patients` patients of ~`--per-patient` items each, and one patient with `--big` items; a
`--tagged` share of every item shows 1–3 teeth (FDI, weighted to the molars and incisors). Then, in this
process (the same select and ORM loading as `GET /api/v1/patients/{id}/media`, api/media.py; no HTTP):

- the first page (200) of the big patient's timeline, unfiltered: the reference;
- the first page filtered by one common tooth (16) and by a rare one (the one fewest items show);
- the whole filtered timeline (limit 1000).

Printed: the median of `--repeat` runs of each, and its ratio to the reference in the same run; and the
query plan, which must show the media index (patient_id, captured_at) and the media_teeth primary key probe.

    .venv/bin/python bench/teeth.py [--patients 2000] [--per-patient 50] [--big 3000] [--tagged 0.3]
                                    [--repeat 25] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text

from chairside.context import Context, build_context
from chairside.db.models import Clinic, Contract, Media, MediaTooth, Patient
from chairside.domain import teeth as rules
from chairside.media import teeth
from chairside.settings import Settings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
COMMON = [16, 26, 36, 46, 11, 21, 17, 27, 37, 47]


def _seed(db_url: str, data: Path, args: argparse.Namespace) -> tuple[Context, uuid.UUID]:
    ctx = build_context(Settings.load(environ={}, data_dir=data, database_url=db_url))
    rng = random.Random(7)
    contract, clinic = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    with ctx.db.session() as s:
        s.execute(insert(Contract).values(id=contract, name="bench", plan_hours=100, created_at=now))
        s.execute(insert(Clinic).values(id=clinic, contract_id=contract, name="本院", created_at=now))
    patients = [uuid.uuid4() for _ in range(args.patients)]
    big = patients[0]
    with ctx.db.session() as s:
        s.execute(insert(Patient), [dict(id=p, contract_id=contract, clinic_id=clinic, chart_no=f"{i:05d}",
                                         name="患者", name_kana="カンジャ", sex="unknown", created_at=now,
                                         updated_at=now) for i, p in enumerate(patients)])
    weights = [8 if n in COMMON else 1 for n in rules.PERMANENT]
    for i, p in enumerate(patients):
        count = args.big if p == big else args.per_patient
        rows, toothed = [], []
        for k in range(count):
            mid = uuid.uuid4()
            rows.append(dict(id=mid, contract_id=contract, clinic_id=clinic, patient_id=p, kind="image",
                             mime="image/jpeg", sha256=f"{i:032x}{k:032x}", size=1000, filename=f"{k}.jpg",
                             captured_at=now - timedelta(minutes=k), source="station", created_at=now))
            if rng.random() < args.tagged:
                for n in set(rng.choices(rules.PERMANENT, weights, k=rng.randint(1, 3))):
                    toothed.append(dict(media_id=mid, tooth=n, contract_id=contract))
        with ctx.db.session() as s:
            s.execute(insert(Media), rows)
            if toothed:
                s.execute(insert(MediaTooth), toothed)
    return ctx, big


def _page(ctx: Context, patient: uuid.UUID, limit: int, wanted: list[int] | None) -> int:
    with ctx.db.read() as s:
        q = select(Media).where(Media.patient_id == patient, Media.deleted_at.is_(None))
        if wanted:
            q = q.where(teeth.shows_any(wanted))
        rows = s.scalars(q.order_by(Media.captured_at.desc(), Media.id.desc()).limit(limit + 1)).all()
        teeth.of_items(s, [m.id for m in rows[:limit]])
        return min(len(rows), limit)


def _median_ms(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    fn()  # warm
    times, n = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        n = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), n


def run(db_url: str, label: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ctx, big = _seed(db_url, Path(tmp), args)
        print(f"\n[{label}] seeded {args.patients} patients, {args.big} items for the big one "
              f"in {time.perf_counter() - started:.1f} s")
        with ctx.db.read() as s:
            counts = dict(s.execute(select(MediaTooth.tooth, func.count()).join(Media, Media.id == MediaTooth.media_id)
                                    .where(Media.patient_id == big).group_by(MediaTooth.tooth)).all())
        rare = min(counts, key=lambda n: counts[n])
        ref, n_ref = _median_ms(lambda: _page(ctx, big, 200, None), args.repeat)
        print(f"  unfiltered first page: {n_ref} items, {ref:.2f} ms (reference)")
        for what, wanted, limit in (("tooth 16, first page", [16], 200), (f"tooth {rare} (rare), first page",
                                    [rare], 200), ("tooth 16, whole timeline", [16], 1000)):
            ms, n = _median_ms(lambda w=wanted, lim=limit: _page(ctx, big, lim, w), args.repeat)
            print(f"  {what}: {n} items of {counts.get(wanted[0], 0)}, {ms:.2f} ms, ratio {ms / ref:.2f}")
        if label == "sqlite":
            with ctx.db.read() as s:
                q = select(Media.id).where(Media.patient_id == big, Media.deleted_at.is_(None),
                                           teeth.shows_any([16])).order_by(Media.captured_at.desc()).limit(201)
                compiled = q.compile(compile_kwargs={"literal_binds": True})
                plan = s.execute(text("EXPLAIN QUERY PLAN " + str(compiled))).all()
            for row in plan:
                print("   plan:", row[-1])
        ctx.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--per-patient", type=int, default=50)
    parser.add_argument("--big", type=int, default=3000)
    parser.add_argument("--tagged", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--db", default="sqlite")
    args = parser.parse_args()
    for which in args.db.split(","):
        if which == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                run(f"sqlite:///{tmp}/bench.db", "sqlite", args)
        else:
            import psycopg
            name = f"bench_teeth_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                run(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "postgres", args)
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
