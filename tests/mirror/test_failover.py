"""A primary site lost to SIGKILL, its mirror promoted, the old primary fenced and rejoined: real processes.

SQLite at the primary, shipped by Litestream; blobs copied by the mirror's follower. Each site is
a `chairside … serve` process in its own process group (tests/mirror/sites.py). The 20-kill
series with random moments is bench/mirror.py; here one kill, after the mirror caught up, and a
write in flight at the moment of the kill.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from chairside.cli import app
from chairside.client import Client
from chairside.context import build_context
from chairside.mirror import service, standby
from chairside.settings import Settings
from tests.conftest import free_port
from tests.factories import Tenant, make_tenant
from tests.mirror.sites import chairside, cloud_site, mirror_site, wait_for


def _seed(data: Path) -> tuple[Tenant, str]:
    """A contract at the primary, and a mirror registered there (its token)."""
    ctx = build_context(Settings.load(environ={}, data_dir=data))
    try:
        return make_tenant(ctx, clinics=1), service.create_mirror(ctx, "Kobe DR")[1]
    finally:
        ctx.db.dispose()


def _new_mirror_at(data: Path, name: str) -> str:
    ctx = build_context(Settings.load(environ={}, data_dir=data), upgrade=False)
    try:
        return service.create_mirror(ctx, name)[1]
    finally:
        ctx.db.dispose()


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _caught_up(data: Path, since: float) -> bool:
    state = standby.load(data)
    return bool(state and state.blobs_behind == 0 and (state.metadata_synced_at or 0) > since
                and (state.caught_up_to or 0) > since)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_mirror_is_promoted_after_a_kill_holds_everything_and_the_old_primary_is_fenced_then_rejoins(
    tmp_path: Path, media_dir: Path,
) -> None:
    tenant, token = _seed(tmp_path / "osaka")
    primary = cloud_site(tmp_path / "osaka", free_port()).start()
    mirror = mirror_site(tmp_path / "kobe", free_port(), primary.url, token).start()
    stored: list[dict[str, Any]] = []
    try:
        with Client(primary.url, tenant.token) as api:
            for i, clip in enumerate(("clip.mp4", "clip2.mp4", "photo.jpg")):
                patient = api.create_patient(tenant.clinic_ids[0], f"0000{i}", "山田 太郎", "ヤマダ タロウ")
                stored.append({"patient": patient["id"], **api.upload(media_dir / clip, patient["id"])})
        last_ack = time.time()
        wait_for(lambda: _caught_up(mirror.data, last_ack + 1.0), "the mirror to catch up", timeout=60)
        health = mirror.health()
        assert health["role"] == "mirror" and health["epoch"] == 1 and health["blobs_behind"] == 0
        assert health["lag_s"] is not None and health["notice"] is None
        (seen,) = primary.health()["mirrors"]
        assert seen["blobs_behind"] == 0 and seen["name"] == "Kobe DR"
        refused = httpx.post(f"{mirror.url}/api/v1/patients", json={}, timeout=5)
        assert refused.status_code == 503 and primary.url in refused.json()["detail"]  # names the primary

        primary.kill9()
        killed_at = time.monotonic()
        promoted = json.loads(chairside("mirror", "promote", "--data", str(mirror.data)).stdout)
        assert promoted["epoch"] == 2 and promoted["primary_was_alive"] is False
        wait_for(lambda: mirror.role() == "cloud", "the mirror to serve as the cloud")
        with Client(mirror.url, tenant.token) as api:
            for item in stored:  # every acknowledged recording, with its bytes intact, exactly once
                media = api.get_media(item["id"])
                assert media["sha256"] == item["sha256"] and media["patient_id"] == item["patient"]
                assert [m["id"] for m in api.list_media(item["patient"])] == [item["id"]]
                assert _sha(api.download(item["id"], tmp_path / "check.bin")) == item["sha256"]
            patient = api.create_patient(tenant.clinic_ids[0], "10000", "佐藤 花子", "サトウ ハナコ")
            rto = time.monotonic() - killed_at
            again = api.upload(media_dir / "clip.mp4", stored[0]["patient"], media_id=stored[0]["id"])
            assert again["id"] == stored[0]["id"]  # re-sent by id after the failover: nothing duplicated
        print(f"RTO (kill → first write at the promoted mirror, promote run at once): {rto:.1f} s")
        assert mirror.health()["epoch"] == 2

        primary.start()  # the old primary comes back: the new one fences it within seconds
        wait_for(lambda: primary.health()["fenced"], "the old primary to be fenced", timeout=30)
        r = httpx.post(f"{primary.url}/api/v1/patients", headers={"Authorization": f"Bearer {tenant.token}"},
                       json={"clinic_id": str(tenant.clinic_ids[0]), "chart_no": "99999", "name": "x",
                             "name_kana": "x"}, timeout=5)
        assert r.status_code == 503 and r.json()["type"].endswith("/fenced")
        detail = r.json()["detail"]
        assert detail.startswith("このサイトは本サイトではなくなりました") and mirror.url in detail
        assert patient["id"]
        primary.kill9()

        # Rejoin: the old site follows the new primary from a fresh folder (a new base copy).
        rejoin_token = _new_mirror_at(mirror.data, "Osaka (rejoined)")
        rejoined = mirror_site(tmp_path / "osaka2", free_port(), mirror.url, rejoin_token).start()
        try:
            joined = time.time()
            wait_for(lambda: _caught_up(rejoined.data, joined), "the rejoined mirror to catch up")
            assert json.loads(_cli("mirror", "status", "--data", str(rejoined.data)).stdout)["blobs_behind"] == 0
            blobs = rejoined.data / "blobs"
            assert all(list(blobs.rglob(item["sha256"])) for item in stored)
        finally:
            rejoined.kill9()
    finally:
        primary.kill9()
        mirror.kill9()


def test_promoting_while_the_primary_is_up_is_refused_and_force_fences_it(tmp_path: Path) -> None:
    tenant, token = _seed(tmp_path / "osaka")
    primary = cloud_site(tmp_path / "osaka", free_port()).start()
    mirror = mirror_site(tmp_path / "kobe", free_port(), primary.url, token).start()
    try:
        started = time.time()
        wait_for(lambda: _caught_up(mirror.data, started), "the mirror's first copy")
        refused = _cli("mirror", "promote", "--data", str(mirror.data))
        assert refused.exit_code == 2 and "まだ動いています" in refused.stderr and "--force" in refused.stderr
        assert mirror.health()["role"] == "mirror"
        with Client(primary.url, tenant.token) as api:
            kept = api.create_patient(tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ")
        promoted = json.loads(_cli("mirror", "promote", "--data", str(mirror.data), "--force").stdout)
        assert promoted["primary_was_alive"] is True and promoted["epoch"] == 2
        r = httpx.post(f"{primary.url}/api/v1/patients", json={}, timeout=5,
                       headers={"Authorization": f"Bearer {tenant.token}"})
        assert r.status_code == 503 and r.json()["epoch"] == 2
        wait_for(lambda: mirror.role() == "cloud", "the mirror to serve as the cloud")
        with Client(mirror.url, tenant.token) as api:  # the write made just before the fence is there
            assert api.get_patient(kept["id"])["chart_no"] == "00001"
        again = _cli("mirror", "promote", "--data", str(mirror.data))
        assert again.exit_code == 2 and "already" in again.stderr
    finally:
        primary.kill9()
        mirror.kill9()


@pytest.mark.parametrize("folder", ["empty", "not-a-mirror"])
def test_mirror_status_and_promote_refuse_a_folder_that_is_not_a_mirror(tmp_path: Path, folder: str) -> None:
    data = tmp_path / folder
    data.mkdir()
    for command in (["mirror", "status"], ["mirror", "promote"]):
        r = _cli(*command, "--data", str(data))
        assert r.exit_code == 2 and "not a mirror" in r.stderr
