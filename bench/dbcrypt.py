"""The database's own encryption (SQLCipher): patient writes and searches, encrypted vs in the clear, same run.

Two data folders on the embedded SQLite, seeded alike through the services; one with a master key (so its
database is a SQLCipher file, keys/database.py), the other without. In alternating rounds, in this process
(no HTTP: the figure is the database's cost alone):

- insert: `patients.service.create` (one transaction each: the row, its search terms, the audit entry and the
  feed event, committed with synchronous=FULL), patients per second;
- query: a search by a random two-character prefix (20 hits) and the detail of a random patient, in one
  read transaction each, lookups per second. The database is larger than SQLite's page cache (2 MiB), so
  pages are read, and decrypted, from the file.

The figure is encrypted / clear for each.

    .venv/bin/python bench/dbcrypt.py [--seed 5000] [--rounds 3] [--inserts 300] [--queries 3000]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from pathlib import Path
from typing import Any

from _common import fmt_runs, header, median, operator, workdir

KANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワ"
FAMILY = ["山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤"]


def name(rng: random.Random) -> tuple[str, str]:
    kana = "".join(rng.choice(KANA) for _ in range(3)) + " " + "".join(rng.choice(KANA) for _ in range(3))
    return f"{rng.choice(FAMILY)} {rng.choice(FAMILY)}子", kana


class Site:
    def __init__(self, label: str, data_dir: Path, master_key: Path | None) -> None:
        from chairside.context import build_context
        from chairside.settings import Settings
        from chairside.tenancy.service import create_clinic, create_contract

        self.label = label
        self.ctx = build_context(Settings.load(environ={}, data_dir=data_dir, master_key_file=master_key))
        self.contract_id = create_contract(self.ctx, "医療法人 ベンチ歯科", 100).id
        self.clinic_id = create_clinic(self.ctx, self.contract_id, "ベンチ歯科 本院").id
        self.who = operator(self.contract_id)
        self.ids: list[uuid.UUID] = []
        self.serial = 0

    def insert(self, n: int, rng: random.Random) -> tuple[float, float]:
        """(patients per second, CPU milliseconds of this process per patient)."""
        from chairside.patients import service as patients

        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            self.serial += 1
            full, kana = name(rng)
            p = patients.create(self.ctx, self.who, self.clinic_id, f"{self.serial:06d}", full, kana, sex="female")
            self.ids.append(p.id)
        return n / (time.perf_counter() - t), (time.process_time() - cpu) * 1000 / n

    def query(self, n: int, rng: random.Random) -> tuple[float, float]:
        from chairside.domain.kana import search_key
        from chairside.patients.search import find_patients
        from chairside.tenancy import visibility

        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            with self.ctx.db.read() as s:
                found = find_patients(s, self.who, search_key(rng.choice(KANA) + rng.choice(KANA)), 20)
                one = visibility.patient(s, self.who, rng.choice(self.ids))
                assert one is not None and isinstance(found, list)
        return n / (time.perf_counter() - t), (time.process_time() - cpu) * 1000 / n

    def size_mib(self) -> float:
        db = Path(self.ctx.settings.database_url.split("///", 1)[1])
        wal = db.with_name(db.name + "-wal")
        return (db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / (1 << 20)

    def close(self) -> None:
        self.ctx.db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=5000, help="patients registered in each site before measuring")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inserts", type=int, default=300, help="patients registered per round and site")
    ap.add_argument("--queries", type=int, default=3000, help="search + detail lookups per round and site")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    header("database encryption (SQLCipher) vs in the clear: patient writes and searches")
    from chairside.keys import MasterKey

    with workdir("dbcrypt", keep=args.keep) as wd:
        key = MasterKey.create(wd / "keys" / "master.key")
        clear = Site("clear", wd / "clear", None)
        enc = Site("encrypted", wd / "encrypted", key.path)
        assert clear.ctx.db.key is None and enc.ctx.db.key is not None
        rng = random.Random(7)
        t = time.perf_counter()
        for site in (clear, enc):
            site.insert(args.seed, random.Random(11))
        print(f"seeded {args.seed} patients per site in {time.perf_counter() - t:.1f} s; "
              f"clear {clear.size_mib():.1f} MiB, encrypted {enc.size_mib():.1f} MiB (with WAL)")
        rates: dict[str, dict[str, list[float]]] = {s.label: {"insert": [], "query": []} for s in (clear, enc)}
        cpu: dict[str, dict[str, list[float]]] = {s.label: {"insert": [], "query": []} for s in (clear, enc)}
        for r in range(args.rounds):
            order: list[Any] = [clear, enc] if r % 2 == 0 else [enc, clear]
            for what in ("insert", "query"):
                for site in order:
                    rate, ms = site.insert(args.inserts, rng) if what == "insert" else site.query(args.queries, rng)
                    rates[site.label][what].append(rate)
                    cpu[site.label][what].append(ms)
        clear.close()
        enc.close()
    # Throughput is what a clinic sees; CPU time per operation is steadier on a shared machine (the wait for
    # fsync and for other processes is not in it).
    for what, unit in (("insert", "patients/s"), ("query", "lookups/s")):
        c, e = median(rates["clear"][what]), median(rates["encrypted"][what])
        cc, ce = median(cpu["clear"][what]), median(cpu["encrypted"][what])
        print(f"{what:>6}: clear {fmt_runs(rates['clear'][what])} {unit}, "
              f"encrypted {fmt_runs(rates['encrypted'][what])} {unit}; median ratio encrypted/clear = {e / c:.2f}")
        print(f"        CPU per operation: clear {cc:.2f} ms, encrypted {ce:.2f} ms; ratio clear/encrypted = "
              f"{cc / ce:.2f}")


if __name__ == "__main__":
    main()
