"""One kill of the primary site with a relay in front: the scenario of must-hold 1 (issue 11).

A primary (`cloud serve`, SQLite shipped by Litestream or PostgreSQL streaming to a hot standby),
its mirror (`mirror serve`) and a clinic's relay (`relay serve --upstream PRIMARY,MIRROR`), all real
processes. While a station uploads recordings through the relay, an SDK user with both addresses
registers and corrects patients, and a viewer reads through the relay, the primary site (its app
and its database) is SIGKILLed at a seeded random moment; `mirror promote` runs at once. Then:
every recording the relay acknowledged to the station is at the new primary with its SHA-256,
exactly once; the relay's outbox drains there. Measured: lost recordings (RPO, must be 0), the
metadata window (the kill time minus the acknowledgement of the oldest lost patient write) and
RTO (the kill until the SDK's first write acknowledged by the new primary).

Used by tests/mirror/test_relay_kill.py (one seeded kill per engine) and bench/mirror_kills.py.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chairside.client import Client
from chairside.context import build_context
from chairside.mirror import postgres, service
from chairside.settings import Settings
from tests.conftest import free_port
from tests.factories import make_patient, make_relay_token, make_tenant
from tests.mirror.pg import PgPair
from tests.mirror.sites import chairside, cloud_site, mirror_site, wait_for
from tests.relay.conftest import RelayProcess, seed_relay_from


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Load:
    relay_url: str
    urls: list[str]
    token: str
    clinic_id: str
    patients: list[str]
    clips: list[Path]
    stop: threading.Event = field(default_factory=threading.Event)
    recordings: list[tuple[float, str, str, str]] = field(default_factory=list)  # (ack, media id, sha256, patient)
    writes: list[tuple[float, str, str]] = field(default_factory=list)  # (ack, patient id, name it now has)
    reads: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def station(self) -> None:
        """Uploads through the relay; the relay's answer is its acknowledgement."""
        n = 0
        with Client(self.relay_url, self.token, timeout=60) as sdk:
            while not self.stop.is_set():
                clip, patient = self.clips[n % len(self.clips)], self.patients[n % len(self.patients)]
                n += 1
                try:
                    item = sdk.upload(clip, patient, media_id=str(uuid.uuid4()))
                    self.recordings.append((time.time(), str(item["id"]), sha256_file(clip), patient))
                except Exception as e:  # counted; the relay is never killed, so there should be none
                    self.errors[f"station: {type(e).__name__}"] += 1
                    time.sleep(0.2)

    def editor(self) -> None:
        """Registers and corrects patients with the SDK given both addresses (it follows the newest epoch)."""
        n = 0
        with Client(self.urls, self.token, timeout=10) as sdk:
            while not self.stop.is_set():
                n += 1
                try:
                    p = sdk.create_patient(self.clinic_id, f"K{n:05d}", "山田 太郎", "ヤマダ タロウ")
                    self.writes.append((time.time(), str(p["id"]), "山田 太郎"))
                    sdk._json("PATCH", f"/api/v1/patients/{p['id']}", json={"name": f"山田 太郎{n}"})
                    self.writes.append((time.time(), str(p["id"]), f"山田 太郎{n}"))
                except Exception as e:  # the primary is gone until the mirror is promoted
                    self.errors[f"editor: {type(e).__name__}"] += 1
                    time.sleep(0.2)

    def viewer(self) -> None:
        """Reads through the relay (its viewer's routes): a patient's list and one item's bytes."""
        with Client(self.relay_url, self.token, timeout=30) as sdk:
            while not self.stop.is_set():
                try:
                    items = sdk.list_media(self.patients[0])
                    if items:
                        for _ in sdk.iter_content(items[-1]["id"]):
                            pass
                    self.reads += 1
                except Exception as e:  # counted
                    self.errors[f"viewer: {type(e).__name__}"] += 1
                time.sleep(0.1)


def one_kill(work: Path, rng: random.Random, clips: list[Path], pair: PgPair | None = None,
             synchronous: bool = False, drain_timeout: float = 90.0) -> dict[str, Any]:
    """One round; answers the figures (see the module's docstring)."""
    url_a, url_b = (pair.url_a, pair.url_b) if pair is not None else (None, None)
    ctx = build_context(Settings.load(environ={}, data_dir=work / "a", database_url=url_a))
    try:
        tenant = make_tenant(ctx, clinics=1)
        clinic = tenant.clinic_ids[0]
        relay_token = make_relay_token(ctx, clinic, "本院 relay")
        patients = [str(make_patient(ctx, tenant.contract_id, clinic, f"P{i:04d}").id) for i in range(3)]
        mirror_token = service.create_mirror(ctx, "DR")[1]
        seed_relay_from(ctx, tenant.contract_id, work / "relay")
    finally:
        ctx.db.dispose()
    if pair is not None and synchronous:
        postgres.set_synchronous(pair.url_a, True)
    primary = cloud_site(work / "a", free_port(), url_a).start()
    mirror = mirror_site(work / "b", free_port(), primary.url, mirror_token, url_b).start()
    relay = RelayProcess(work / "relay", f"{primary.url},{mirror.url}", relay_token)
    load = Load(relay_url="", urls=[primary.url, mirror.url], token=tenant.token, clinic_id=str(clinic),
                patients=patients, clips=clips)
    threads: list[threading.Thread] = []
    try:
        relay.start()
        load.relay_url = relay.url
        wait_for(lambda: mirror.health().get("lag_s") is not None, "the mirror's first round", timeout=60)
        threads = [threading.Thread(target=f, daemon=True) for f in (load.station, load.editor, load.viewer)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(2.0, 6.0))
        primary.kill9()  # the site is lost: its app (and Litestream) at once ...
        if pair is not None:
            pair.lose_a()  # ... and its database server
        killed = time.time()
        promoted = json.loads(chairside("mirror", "promote", "--data", str(mirror.data)).stdout)
        wait_for(lambda: mirror.role() == "cloud", "the promoted mirror", timeout=120)
        serving = time.time() - killed
        wait_for(lambda: any(at > killed for at, _, _ in load.writes), "a write acknowledged by the new primary",
                 timeout=60)
        time.sleep(1.0)  # a little more load against the new primary
        load.stop.set()
        for t in threads:
            t.join(90)
        rto = min(at for at, _, _ in load.writes if at > killed) - killed

        def drained() -> bool:
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                return int(relay.status(tenant.token)["pending_items"]) == 0
            return False

        wait_for(drained, "the relay's outbox to drain to the new primary", timeout=drain_timeout, every=0.25)
        return {**_check(mirror.url, load, killed), "rto_s": rto, "promote_s": promoted["took_s"],
                "serving_s": serving,
                "epoch": promoted["epoch"], "reads": load.reads, "errors": dict(load.errors)}
    finally:
        load.stop.set()
        relay.stop()
        primary.kill9()
        mirror.kill9()


def _check(new_primary: str, load: Load, killed: float) -> dict[str, Any]:
    lost: list[str] = []
    with Client(new_primary, load.token, timeout=60) as sdk:
        for _, media_id, sha, _patient in load.recordings:
            try:
                item = sdk.get_media(media_id)
                got = hashlib.sha256()
                for chunk in sdk.iter_content(media_id):
                    got.update(chunk)
                if item["sha256"] != sha or got.hexdigest() != sha:
                    lost.append(media_id)
            except Exception:  # missing or unreadable: lost
                lost.append(media_id)
        stored = [m["id"] for p in load.patients for m in sdk.list_media(p)]
        final = {pid: name for _, pid, name in load.writes}
        last_ack = {pid: at for at, pid, _ in load.writes}
        first_ack = {pid: at for at, pid, _ in reversed(load.writes)}
        missing_at: list[float] = []
        for patient_id, name in final.items():
            try:
                if sdk.get_patient(patient_id)["name"] != name:
                    missing_at.append(last_ack[patient_id])  # the correction was lost
            except Exception:  # the registration was lost
                missing_at.append(first_ack[patient_id])
    acked = {m for _, m, _, _ in load.recordings}
    counts = collections.Counter(stored)
    return {"acked_recordings": len(load.recordings), "lost_recordings": len(lost),
            "duplicated": sum(1 for c in counts.values() if c > 1),
            "unexpected": len(set(stored) - acked),
            "acked_writes": len(load.writes), "lost_writes": len(missing_at),
            "window_s": 0.0 if not missing_at else max(0.0, killed - min(missing_at))}
