"""The primary's mirror endpoints and the mirror's follower, in process, on SQLite and PostgreSQL.

The primary is the real app on loopback (LiveServer); the mirror's follower runs its rounds
from the test (one round at a time, so every figure is checked at a known moment) into a real
blob store of its own. The WAN between the sites is tests/netem.py's emulator.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest

from chairside.blobs import open_blob_store
from chairside.blobs.base import BlobStore
from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Media, Patient
from chairside.mirror import service, standby
from chairside.mirror.follower import Follower, Refused, WrongPrimary
from chairside.relay.upstream import Upstream
from tests.admin_cli import run_admin
from tests.conftest import LiveServer
from tests.factories import Tenant
from tests.netem import Faults, WanProxy


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _follower(tmp_path: Path, primary: str, token: str, transport: httpx.BaseTransport | None = None) -> Follower:
    data = tmp_path / "mirror-site"
    state = standby.StandbyState(primary=primary, token=token, database_url="postgresql://standby")  # blobs only
    standby.save(data, state)
    return Follower(data, open_blob_store(str(data / "blobs")), state, transport=transport)


def _round(follower: Follower) -> None:
    with follower.client() as http, ThreadPoolExecutor(4) as pool:
        follower.round(http, pool)


def _stored(blobs: BlobStore, sha256: str) -> str | None:
    if blobs.stat(sha256) is None:
        return None
    h = hashlib.sha256()
    with blobs.open_range(sha256, 0, None) as chunks:
        for chunk in chunks:
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def mirror_token(ctx: Context) -> str:
    _, token = service.create_mirror(ctx, "Osaka DR")
    return token


def _upload(api: Client, tenant: Tenant, media_dir: Path, chart: str, name: str = "clip.mp4") -> dict[str, object]:
    patient = api.create_patient(tenant.clinic_ids[0], chart, "山田 太郎", "ヤマダ タロウ")
    return api.upload(media_dir / name, patient["id"])


def test_admin_mirror_create_list_revoke_and_the_token_is_stored_hashed(ctx: Context) -> None:
    created = run_admin(ctx, "mirror", "create", "--name", "Osaka DR")
    assert created.exit_code == 0, created.stderr
    body = created.json()
    assert body["token"].startswith("cs_mr_") and body["name"] == "Osaka DR"
    listed = run_admin(ctx, "mirror", "list").json()["items"]
    assert [m["id"] for m in listed] == [body["id"]] and "token" not in listed[0]
    assert listed[0]["blobs_behind"] == 0 and listed[0]["revoked_at"] is None
    (row,) = service.list_mirrors(ctx)
    assert row.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()  # never the token itself
    revoked = run_admin(ctx, "mirror", "revoke", body["id"])
    assert revoked.exit_code == 0 and revoked.json()["revoked_at"] is not None
    assert run_admin(ctx, "mirror", "revoke", str(uuid.uuid4())).exit_code == 2


def test_a_wrong_missing_or_revoked_token_gets_401_problem_json(ctx: Context, server: LiveServer, tenant: Tenant,
                                                                 mirror_token: str) -> None:
    with httpx.Client(base_url=server.url) as http:
        wrong: tuple[dict[str, str], ...] = (
            {}, {"Authorization": "Bearer cs_mr_nottherightone"}, {"Authorization": f"Bearer {tenant.token}"})
        for headers in wrong:
            r = http.get("/api/v1/mirror/pending", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["detail"].startswith("このミラー用トークン")  # Japanese first, then English
            assert "not valid at this primary" in r.json()["detail"]
        good = {"Authorization": f"Bearer {mirror_token}"}
        assert http.get("/api/v1/mirror/hello", headers=good).status_code == 200
        (mirror,) = service.list_mirrors(ctx)
        service.revoke_mirror(ctx, mirror.id)
        r = http.get("/api/v1/mirror/hello", headers=good)
        assert r.status_code == 401 and r.json()["type"].endswith("/mirror-revoked")


def test_the_mirror_copies_every_blob_verified_and_the_figures_follow(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, media_dir: Path, mirror_token: str, tmp_path: Path,
) -> None:
    first = _upload(api, tenant, media_dir, "00001")
    second = _upload(api, tenant, media_dir, "00002", "photo.jpg")
    with httpx.Client(base_url=server.url) as http:
        (before,) = http.get("/api/v1/health").json()["mirrors"]
    assert before["blobs_behind"] == 2 and before["lag_s"] >= 0

    def mirrored(item: dict[str, object]) -> str | None:  # what a relay's done-check sees (relay/sender.py)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tenant.token}"}) as http:
            r = http.get(f"/api/v1/media/{item['id']}")
            assert r.status_code == 200
            value: str | None = r.headers.get("chairside-mirrored")
            return value

    assert mirrored(first) == "no"  # stored at the primary only: a relay keeps it pinned and pending
    follower = _follower(tmp_path, server.url, mirror_token)
    _round(follower)
    assert mirrored(first) == mirrored(second) == "yes"
    with httpx.Client(base_url=server.url) as http:  # nobody else learns anything of the item
        assert "chairside-mirrored" not in http.get(f"/api/v1/media/{first['id']}").headers
    for item in (first, second):
        assert _stored(follower.blobs, str(item["sha256"])) == item["sha256"]
        with ctx.db.read() as s:
            row = s.get(Media, uuid.UUID(str(item["id"])))
            assert row is not None and row.thumb_sha256 is not None
            assert _stored(follower.blobs, row.thumb_sha256) == row.thumb_sha256  # the thumbnail too
    assert follower.blobs.stat(_sha(media_dir / "clip.mp4")) is not None

    with httpx.Client(base_url=server.url) as http:
        health = http.get("/api/v1/health").json()
    assert health["role"] == "cloud" and health["epoch"] == 1 and health["fenced"] is False
    (after,) = health["mirrors"]
    assert after["blobs_behind"] == 0 and after["lag_s"] == 0 and after["name"] == "Osaka DR"
    figures = standby.load(follower.data_dir).figures()  # type: ignore[union-attr]
    assert figures["blobs_behind"] == 0 and figures["role"] == "mirror" and figures["notice"] is None
    assert figures["lag_s"] is not None and figures["lag_s"] < 60
    copied = follower.state.bytes_copied
    assert copied >= (media_dir / "clip.mp4").stat().st_size

    _round(follower)  # nothing new: nothing fetched again
    assert follower.state.bytes_copied == copied


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the follower, not the database, is under test
def test_a_mirror_pointed_at_another_primary_is_refused_and_copies_nothing(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, media_dir: Path, mirror_token: str, tmp_path: Path,
) -> None:
    item = _upload(api, tenant, media_dir, "00001")
    follower = _follower(tmp_path, server.url, mirror_token)
    follower.state.deployment_id = str(uuid.uuid4())  # this folder follows another deployment
    with follower.client() as http, ThreadPoolExecutor(2) as pool, pytest.raises(WrongPrimary) as refused:
        follower.round(http, pool)
    assert "wrong-primary" in str(refused.value) and "check --primary" in str(refused.value)
    assert follower.blobs.stat(str(item["sha256"])) is None
    figures = follower.state.figures()
    follower.state.last_error = str(refused.value)
    assert follower.state.figures()["notice"] is not None and figures["blobs_behind"] is None

    other = _follower(tmp_path / "b", server.url, "cs_mr_" + "x" * 43)
    with other.client() as http, ThreadPoolExecutor(2) as pool, pytest.raises(Refused):
        other.round(http, pool)


class Corrupting(httpx.HTTPTransport):
    """A line that flips one byte of every blob's body (a faulty link or middlebox), while `bad` is set."""

    bad = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not (self.bad and "/mirror/blobs/" in request.url.path):
            return response
        body = bytearray(response.read())
        body[len(body) // 2] ^= 0xFF
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the follower, not the database, is under test
def test_a_blob_damaged_on_the_way_is_not_kept_nor_counted_and_comes_again(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, media_dir: Path, mirror_token: str, tmp_path: Path,
) -> None:
    item = _upload(api, tenant, media_dir, "00001")
    line = Corrupting()
    follower = _follower(tmp_path, server.url, mirror_token, transport=line)
    with follower.client() as http, ThreadPoolExecutor(2) as pool, pytest.raises(RuntimeError):
        follower.round(http, pool)
    assert follower.blobs.stat(str(item["sha256"])) is None  # nothing under the key
    with httpx.Client(base_url=server.url) as http:
        (behind,) = http.get("/api/v1/health").json()["mirrors"]
    assert behind["blobs_behind"] == 1  # not reported as stored at the mirror
    line.bad = False
    _round(follower)
    assert _stored(follower.blobs, str(item["sha256"])) == item["sha256"]


def test_two_mirrors_claiming_the_next_epoch_at_once_exactly_one_wins(ctx: Context, server: LiveServer) -> None:
    tokens = [service.create_mirror(ctx, f"DR {i}")[1] for i in range(2)]
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def claim(token: str) -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
            barrier.wait()
            answers.append(http.post("/api/v1/mirror/fence", json={"epoch": 2, "primary": token[-6:]}).status_code)

    threads = [threading.Thread(target=claim, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 409]
    epoch = service.read_epoch(ctx)
    assert epoch.fenced and epoch.fenced_epoch == 2 and epoch.epoch == 1


def test_a_fenced_cloud_refuses_every_write_naming_the_new_primary_and_still_reads(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, mirror_token: str,
) -> None:
    patient = api.create_patient(tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tenant.token}"}) as http:
        assert http.get("/api/v1/health").headers["chairside-epoch"] == "1"
        fenced = http.post("/api/v1/mirror/fence", json={"epoch": 2, "primary": "https://osaka.example.jp"},
                           headers={"Authorization": f"Bearer {mirror_token}"})
        assert fenced.status_code == 200
        for method, path in (("POST", "/api/v1/patients"), ("PATCH", f"/api/v1/patients/{patient['id']}"),
                             ("POST", "/api/v1/uploads/")):
            r = http.request(method, path, json={})
            assert r.status_code == 503, (method, path)
            body = r.json()
            assert r.headers["content-type"].startswith("application/problem+json") and body["type"].endswith("/fenced")
            assert body["detail"].startswith("このサイトは本サイトではなくなりました")
            assert "https://osaka.example.jp" in body["detail"] and body["primary"] == "https://osaka.example.jp"
            assert body["epoch"] == 2
        assert http.get(f"/api/v1/patients/{patient['id']}").status_code == 200  # reads still work
        health = http.get("/api/v1/health").json()
        assert health["fenced"] is True and health["primary"] == "https://osaka.example.jp" and health["epoch"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the follower, not the database, is under test
def test_a_cut_link_stalls_the_mirror_raises_its_lag_and_notice_and_it_catches_up_alone(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, media_dir: Path, mirror_token: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(standby, "NOTICE_LAG_S", 0.5)
    first = _upload(api, tenant, media_dir, "00001")
    with WanProxy(server.port, Faults(latency_s=0.005)) as wan:
        follower = _follower(tmp_path, wan.url, mirror_token)
        _round(follower)
        copied = follower.state.bytes_copied
        assert follower.state.figures()["blobs_behind"] == 0
        wan.outage()
        second = _upload(api, tenant, media_dir, "00002", "clip2.mp4")
        with follower.client() as http, ThreadPoolExecutor(2) as pool, pytest.raises(httpx.HTTPError):
            follower.round(http, pool)
        time.sleep(0.6)  # the notice's threshold, shortened for the test: time must pass for a lag to grow
        stalled = follower.state.figures()
        assert stalled["lag_s"] > 0.5 and stalled["notice"] is not None
        assert stalled["notice"].startswith("ミラーが本サイトから遅れています")
        with httpx.Client(base_url=server.url) as http:
            (seen,) = http.get("/api/v1/health").json()["mirrors"]
        assert seen["blobs_behind"] == 1
        wan.outage(False)
        _round(follower)
    assert _stored(follower.blobs, str(second["sha256"])) == second["sha256"]
    assert follower.blobs.stat(str(first["sha256"])) is not None
    # Only the new recording (and its thumbnail) crossed the link again: nothing already here was re-read.
    assert follower.state.bytes_copied - copied < (media_dir / "clip.mp4").stat().st_size + 200_000
    assert follower.state.figures()["notice"] is None



def test_the_sdk_and_a_relay_follow_the_primary_of_the_newest_epoch_and_never_write_to_an_older_one(
    ctx: Context, server: LiveServer, tenant: Tenant, mirror_token: str, tmp_path: Path,
) -> None:
    from chairside.context import build_context
    from chairside.settings import Settings

    # Site B: the promoted mirror, at epoch 2, holding the same contract (as a restored copy would).
    b_ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "b"))
    try:
        from tests.factories import make_tenant

        b_tenant = make_tenant(b_ctx, clinics=1)
        assert service.take_epoch(b_ctx, 2) == 2
        with LiveServer(b_ctx) as b:
            with Client([server.url, b.url], tenant.token) as sdk:
                sdk.search_patients()  # site A, epoch 1: nothing newer known yet
                assert sdk.failover is not None and sdk.failover.current_url == server.url
            httpx.post(f"{server.url}/api/v1/mirror/fence", json={"epoch": 2, "primary": b.url},
                       headers={"Authorization": f"Bearer {mirror_token}"}).raise_for_status()
            relay_link = Upstream(f"{server.url},{b.url}", b_tenant.token)  # `relay serve --upstream A,B`

            async def relay_write() -> int:
                client = relay_link.async_client()
                try:
                    r = await client.post("/api/v1/patients", json={
                        "clinic_id": str(b_tenant.clinic_ids[0]), "chart_no": "R0001", "name": "中継 一郎",
                        "name_kana": "チュウケイ イチロウ"})
                    return r.status_code
                finally:
                    await relay_link.aclose()

            assert anyio.run(relay_write) == 201  # A refused it (fenced): written at B
            assert relay_link.addresses.current == 1 and relay_link.addresses.highest_epoch == 2
            with Client([server.url, b.url], b_tenant.token) as sdk:
                made = sdk.create_patient(b_tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ")
                assert sdk.failover is not None and sdk.failover.current_url == b.url  # A refused: fenced
                assert sdk.failover.highest_epoch == 2
                assert sdk.get_patient(made["id"])["chart_no"] == "00001"
                b.server.should_exit = True  # B goes down: A is fenced and older, so nowhere to write
                b.thread.join(20)
                with pytest.raises(httpx.TransportError):
                    sdk.create_patient(b_tenant.clinic_ids[0], "00002", "佐藤 花子", "サトウ ハナコ")
            with ctx.db.read() as s:  # nothing of B's contract was ever written at A
                assert s.get(Patient, uuid.UUID(str(made["id"]))) is None
    finally:
        b_ctx.db.dispose()
