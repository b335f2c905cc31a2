"""`chairside mirror rejoin` on SQLite: the old primary's own folder becomes the new primary's mirror.

Real processes (tests/mirror/sites.py). After a kill and a promotion, the old primary comes back
fenced; rejoin is refused while it runs, with a token the new primary does not know, and then
moves its database aside (kept) and keeps its blobs: the mirror it becomes fetches none of the
recordings it already holds. (PostgreSQL's rejoin with pg_rewind: tests/mirror/test_pg_sync.py.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chairside.client import Client
from chairside.context import build_context
from chairside.mirror import service, standby
from chairside.settings import Settings
from tests.conftest import free_port
from tests.factories import make_tenant
from tests.mirror.sites import chairside, cloud_site, mirror_site, wait_for


@pytest.mark.timeout(600)  # three server processes on a shared 2-core machine
def test_the_old_primary_rejoins_in_its_own_folder_keeps_its_blobs_and_its_old_database(
    tmp_path: Path, media_dir: Path,
) -> None:
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "osaka"))
    try:
        tenant, token = make_tenant(ctx, clinics=1), service.create_mirror(ctx, "Kobe DR")[1]
    finally:
        ctx.db.dispose()
    primary = cloud_site(tmp_path / "osaka", free_port()).start()
    mirror = mirror_site(tmp_path / "kobe", free_port(), primary.url, token).start()
    try:
        with Client(primary.url, tenant.token) as api:
            patient = api.create_patient(tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ")
            item = api.upload(media_dir / "clip.mp4", patient["id"])
        since = time.time()
        wait_for(lambda: (s := standby.load(mirror.data)) is not None and s.blobs_behind == 0
                 and (s.caught_up_to or 0) > since + 1.5, "the mirror to catch up")
        primary.kill9()
        assert json.loads(chairside("mirror", "promote", "--data", str(mirror.data)).stdout)["epoch"] == 2
        wait_for(lambda: mirror.role() == "cloud", "the mirror to serve as the cloud")
        ctx = build_context(Settings.load(environ={}, data_dir=mirror.data), upgrade=False)
        try:
            rejoin_token = service.create_mirror(ctx, "Osaka (rejoined)")[1]
        finally:
            ctx.db.dispose()

        primary.start()  # back after the fire, fenced; while it runs, rejoin is refused
        wait_for(lambda: primary.health()["fenced"], "the old primary to be fenced", timeout=60)
        running = chairside("mirror", "rejoin", "--data", str(primary.data), "--primary", mirror.url, "--token",
                            rejoin_token, check=False)
        assert running.returncode == 2 and "まだ動いています" in running.stderr and "stop it first" in running.stderr
        primary.stop()
        unknown = chairside("mirror", "rejoin", "--data", str(primary.data), "--primary", mirror.url, "--token",
                            "cs_mr_" + "x" * 43, check=False)
        assert unknown.returncode == 2 and "not valid at the new primary" in unknown.stderr

        done = json.loads(chairside("mirror", "rejoin", "--data", str(primary.data), "--primary", mirror.url,
                                    "--token", rejoin_token).stdout)
        assert done["metadata"] == "litestream" and done["epoch"] == 2
        kept = Path(done["kept_aside"])
        assert (kept / "chairside.db").exists() and not (primary.data / "chairside.db").exists()  # kept, not lost
        assert list((primary.data / "blobs").rglob(str(item["sha256"])))  # the blobs stay where they were

        rejoined = mirror_site(primary.data, free_port(), mirror.url, rejoin_token).start()
        try:
            joined = time.time()
            wait_for(lambda: (s := standby.load(rejoined.data)) is not None and s.blobs_behind == 0
                     and (s.caught_up_to or 0) > joined, "the rejoined mirror to catch up")
            health = rejoined.health()
            assert health["role"] == "mirror" and health["epoch"] == 2 and health["primary"] == mirror.url
            copied = standby.load(rejoined.data)
            assert copied is not None and copied.blobs_copied == 0  # it held every recording: nothing fetched again
            with Client(mirror.url, tenant.token) as api:
                later = api.upload(media_dir / "photo.jpg", patient["id"])
            wait_for(lambda: list((rejoined.data / "blobs").rglob(str(later["sha256"]))), "a new recording copied")
        finally:
            rejoined.kill9()
    finally:
        primary.kill9()
        mirror.kill9()
