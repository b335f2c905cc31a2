"""The relay's feed follower against a live cloud: replication, catch-up, restart, LWW, merges, tombstones."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import CachedBlob, Clinic, Contract, Media, OutboxOp, Patient, Station
from chairside.feed import changes
from chairside.media.trash import purge_media
from chairside.relay import follower
from chairside.relay.runtime import runtime_of
from tests.conftest import LiveServer
from tests.netem import WanProxy
from tests.relay.follow_fixtures import (  # noqa: F401  (fixtures)
    BackgroundFollower,
    Cloud,
    RelayApi,
    catch_up,
    cloud,
    relay_context,
    relay_ctx,
    wait_for,
)


def _row(rctx: Context, model: type, ident: object) -> object | None:
    with rctx.db.read() as s:
        return s.get(model, uuid.UUID(str(ident)))


def test_changes_at_another_branch_appear_at_the_relay(cloud: Cloud, relay_ctx: Context, media_dir: Path) -> None:
    other_branch = cloud.station(1)
    with LiveServer(relay_ctx) as relay:  # the relay whole: its lifespan runs the follower (relay/runner.py)
        p = other_branch.create_patient(cloud.clinic_ids[1], "B-0001", "佐藤 花子", "サトウ ハナコ",
                                        birth_date="1975-06-01", sex="female")
        item = other_branch.upload(media_dir / "clip.mp4", p["id"])
        media = wait_for(lambda: _row(relay_ctx, Media, item["id"]), "the media item at the relay")
        patient = _row(relay_ctx, Patient, p["id"])
        assert isinstance(patient, Patient) and isinstance(media, Media)
        assert (patient.chart_no, patient.name, patient.name_kana, str(patient.birth_date)) == (
            "B-0001", "佐藤 花子", "サトウ ハナコ", "1975-06-01")
        assert (media.sha256, media.size, str(media.patient_id)) == (item["sha256"], item["size"], p["id"])
        # The default prefetch (thumbnails) brings the preview ahead of use, verified by its hash.
        thumb = media.thumb_sha256
        assert thumb is not None
        wait_for(lambda: relay_ctx.blobs.stat(thumb), "the prefetched thumbnail")
        path = relay_ctx.blobs.local_path(thumb)
        assert path is not None and hashlib.sha256(path.read_bytes()).hexdigest() == thumb
        # An edit at the cloud follows too.
        r = httpx.patch(f"{cloud.url}/api/v1/patients/{p['id']}", json={"name": "佐藤 華子"},
                        headers={"Authorization": f"Bearer {cloud.station_tokens[1]}"})
        assert r.status_code == 200, r.text
        wait_for(lambda: getattr(_row(relay_ctx, Patient, p["id"]), "name", None) == "佐藤 華子", "the edit")
        st = wait_for(lambda: (lambda x: x if x["behind"] == 0 and x["cursor"] > 0 else None)(
            follower.status(relay_ctx)), "the follower to be current")
        # The replica is searchable at the relay like at the cloud (search terms rebuilt).
        with Client(relay.url, cloud.station_tokens[0]) as local:
            assert [x["id"] for x in local.search_patients("さとう")] == [p["id"]]
        r = httpx.get(f"{relay.url}/api/v1/relay/status",
                      headers={"Authorization": f"Bearer {cloud.station_tokens[0]}"})
        assert r.status_code == 200, r.text
        assert r.json()["feed"]["behind"] == 0 and r.json()["cache"]["items"] >= 1
    with cloud.ctx.db.read() as s:
        head = s.scalar(select(Contract.feed_seq).where(Contract.id == cloud.contract_id))
    assert st["cursor"] == head and st["applied_at"] is not None and st["last_error"] is None


def _seed_feed(ctx: Context, contract_id: uuid.UUID, clinic_id: uuid.UUID, patients: int,
               media: int) -> list[uuid.UUID]:
    """Patients, then media for all but the first 100 patients, each with its feed event (the real emit code).

    Not through the services (tests/factories.py): thousands of rows in one transaction, and media rows
    without files (ingest needs them; the relays here prefetch nothing)."""
    ids: list[uuid.UUID] = []
    with ctx.db.session() as s:
        for i in range(patients):
            p = Patient(contract_id=contract_id, clinic_id=clinic_id, chart_no=f"{i:06d}", name=f"患者 {i}",
                        name_kana=f"カンジャ {i}", sex="unknown")
            s.add(p)
            changes.patient_changed(s, p)
            ids.append(p.id)
        now = datetime.now(UTC)
        for j in range(media):
            pid = ids[100 + j % (patients - 100)]
            sha = hashlib.sha256(f"blob {j}".encode()).hexdigest()
            m = Media(id=uuid.uuid4(), contract_id=contract_id, clinic_id=clinic_id, patient_id=pid, kind="image",
                      mime="image/jpeg", sha256=sha, size=1000 + j, filename=f"IMG_{j:05d}.JPG", captured_at=now,
                      source="station")
            s.add(m)
            changes.media_changed(s, m)
    return ids


def test_offline_relay_catches_up_over_pages_and_resumes_after_restart(cloud: Cloud, tmp_path: Path) -> None:
    ids = _seed_feed(cloud.ctx, cloud.contract_id, cloud.clinic_ids[1], patients=500, media=2000)
    with cloud.ctx.db.read() as s:
        head = s.scalar(select(Contract.feed_seq).where(Contract.id == cloud.contract_id))
    assert head is not None and head >= 2500
    data = tmp_path / "relay"
    rctx = relay_context(data, cloud.url, cloud.relay_token, relay_prefetch="none")

    async def five_pages() -> None:
        client = runtime_of(rctx).upstream.async_client()
        try:
            for _ in range(5):
                page = await follower.sync_once(rctx, client, limit=100)
                assert page["more"] is True
        finally:
            await client.aclose()

    asyncio.run(five_pages())
    assert follower.cursor(rctx) == 500
    assert follower.status(rctx)["behind"] == head - 500
    # A patient applied in the first pages is removed here: replaying from the start would bring it back.
    with rctx.db.session() as s:
        gone = s.get(Patient, ids[5])
        assert gone is not None
        s.delete(gone)
    rctx.db.dispose()

    restarted = relay_context(data, cloud.url, cloud.relay_token, relay_prefetch="none")
    try:
        assert follower.cursor(restarted) == 500
        assert catch_up(restarted, limit=100) == head
        status = follower.status(restarted)
        assert (status["cursor"], status["head"], status["behind"]) == (head, head, 0)
        with restarted.db.read() as s:
            assert s.scalar(select(func.count()).select_from(Patient)) == 499
            assert s.scalar(select(func.count()).select_from(Media)) == 2000
            assert s.get(Patient, ids[5]) is None  # resumed from the cursor, not from the start
            assert s.get(Patient, ids[499]) is not None
    finally:
        restarted.db.dispose()


def _patch(url: str, token: str, patient_id: str, **fields: str) -> None:
    r = httpx.patch(f"{url}/api/v1/patients/{patient_id}", json=fields, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def test_last_writer_wins_per_field(cloud: Cloud, relay_ctx: Context) -> None:
    p = cloud.station(0).create_patient(cloud.clinic_ids[0], "L-1", "田中 一郎", "タナカ イチロウ")
    catch_up(relay_ctx)
    with RelayApi(relay_ctx) as relay:
        # Offline: the cloud edits the kana and the name; then the relay edits the name (a newer clock).
        _patch(cloud.url, cloud.station_tokens[1], p["id"], name_kana="タナカ イチロー", name="田中 市郎")
        _patch(relay.url, cloud.station_tokens[0], p["id"], name="田中 一朗")
        with relay_ctx.db.read() as s:
            assert s.scalar(select(func.count()).select_from(OutboxOp).where(
                OutboxOp.kind == "patient.update", OutboxOp.entity_id == uuid.UUID(p["id"]))) == 1
        catch_up(relay_ctx)  # back online: the cloud's older name edit arrives after the relay's own
        local = _row(relay_ctx, Patient, p["id"])
        assert isinstance(local, Patient)
        assert local.name == "田中 一朗"  # the newer local edit survives the older cloud event
        assert local.name_kana == "タナカ イチロー"  # a field edited only at the cloud is taken
        # A later cloud edit is newer than the relay's: it wins.
        _patch(cloud.url, cloud.station_tokens[1], p["id"], name="田中 壱郎")
        catch_up(relay_ctx)
        local = _row(relay_ctx, Patient, p["id"])
        assert isinstance(local, Patient) and local.name == "田中 壱郎"
        # The relay's clock has seen the cloud's: its next edit is newer than every one applied.
        assert local.field_clocks is not None
        assert relay_ctx.clock.get().now() > max(local.field_clocks.values())
        with Client(relay.url, cloud.station_tokens[0]) as station:
            assert [x["name"] for x in station.search_patients("たなか")] == ["田中 壱郎"]


def test_chart_number_collision_flags_the_local_patient(cloud: Cloud, relay_ctx: Context) -> None:
    catch_up(relay_ctx)
    with RelayApi(relay_ctx) as relay, Client(relay.url, cloud.station_tokens[0]) as at_relay:
        local = at_relay.create_patient(cloud.clinic_ids[0], "C-777", "鈴木 健一", "スズキ ケンイチ")
        remote = cloud.station(0).create_patient(cloud.clinic_ids[0], "C-777", "鈴木 健二", "スズキ ケンジ")
        catch_up(relay_ctx)
        mine, theirs = _row(relay_ctx, Patient, local["id"]), _row(relay_ctx, Patient, remote["id"])
        assert isinstance(mine, Patient) and isinstance(theirs, Patient)
        assert mine.merge_with == uuid.UUID(remote["id"])  # flagged for staff to merge, never joined
        assert theirs.merge_with is None and theirs.chart_no == "C-777"
        assert sorted(x["id"] for x in at_relay.search_patients("C-777")) == sorted([local["id"], remote["id"]])


def test_tombstones_delete_rows_and_unused_blobs(cloud: Cloud, relay_ctx: Context, media_dir: Path) -> None:
    station = cloud.station(1)
    p = station.create_patient(cloud.clinic_ids[1], "T-1", "高橋 誠", "タカハシ マコト")
    item = station.upload(media_dir / "clip.mp4", p["id"])
    catch_up(relay_ctx)
    with RelayApi(relay_ctx) as relay, Client(relay.url, cloud.station_tokens[0]) as at_relay:
        at_relay.thumbnail(item["id"])  # fetched from the cloud and kept
        assert b"".join(at_relay.iter_content(item["id"])) == (media_dir / "clip.mp4").read_bytes()
        wait_for(lambda: _row_sha(relay_ctx, item["sha256"]), "the video to be cached")
    media = _row(relay_ctx, Media, item["id"])
    assert isinstance(media, Media) and media.thumb_sha256 is not None
    thumb = media.thumb_sha256
    assert relay_ctx.blobs.stat(thumb) is not None
    station.trash(item["id"])
    assert purge_media(cloud.ctx.db, cloud.ctx.blobs, uuid.UUID(item["id"]))
    catch_up(relay_ctx)
    assert _row(relay_ctx, Media, item["id"]) is None
    assert relay_ctx.blobs.stat(item["sha256"]) is None and relay_ctx.blobs.stat(thumb) is None
    assert _row_sha(relay_ctx, item["sha256"]) is None and _row_sha(relay_ctx, thumb) is None


def _row_sha(rctx: Context, sha: str) -> CachedBlob | None:
    with rctx.db.read() as s:
        return s.get(CachedBlob, sha)


def test_a_tombstone_keeps_blobs_that_are_pinned_or_still_used(cloud: Cloud, relay_ctx: Context) -> None:
    catch_up(relay_ctx)
    pinned, shared = b"recorded here, not yet confirmed", b"the same bytes, another item"
    hashes = [hashlib.sha256(b).hexdigest() for b in (pinned, shared)]
    with relay_ctx.db.session() as s:
        patient = Patient(contract_id=cloud.contract_id, clinic_id=cloud.clinic_ids[0], chart_no="K-1",
                          name="森 蓮", name_kana="モリ レン", sex="male")
        s.add(patient)
        s.flush()
        rows = [Media(id=uuid.uuid4(), contract_id=cloud.contract_id, clinic_id=cloud.clinic_ids[0],
                      patient_id=patient.id, kind="image", mime="image/jpeg", sha256=sha, size=32,
                      filename="a.jpg", captured_at=datetime.now(UTC), source="station") for sha in hashes]
        rows.append(Media(id=uuid.uuid4(), contract_id=cloud.contract_id, clinic_id=cloud.clinic_ids[0],
                          patient_id=patient.id, kind="image", mime="image/jpeg", sha256=hashes[1], size=32,
                          filename="b.jpg", captured_at=datetime.now(UTC), source="station"))
        s.add_all(rows)
        s.add_all([CachedBlob(sha256=hashes[0], size=32, pinned=True), CachedBlob(sha256=hashes[1], size=32)])
        ids = [r.id for r in rows]
    for data, sha in zip((pinned, shared), hashes, strict=True):
        relay_ctx.blobs.put_stream(sha, [data])
    cursor = follower.cursor(relay_ctx)
    tombstones = [{"seq": cursor + 1 + i, "kind": "media.purged", "id": str(ids[i]), "clinic_id": None,
                   "at": datetime.now(UTC).isoformat(),
                   "body": {"id": str(ids[i]), "sha256": hashes[i], "patient_id": str(ids[i])}} for i in range(2)]
    follower.apply_page(relay_ctx, {"items": tombstones, "next": cursor + 2, "more": False, "head": cursor + 2})
    assert _row(relay_ctx, Media, ids[0]) is None and _row(relay_ctx, Media, ids[1]) is None
    assert relay_ctx.blobs.stat(hashes[0]) is not None  # pinned: the cloud has not confirmed it
    assert relay_ctx.blobs.stat(hashes[1]) is not None  # still the content of another item
    assert follower.cursor(relay_ctx) == cursor + 2


def test_stations_sign_in_at_the_relay_while_the_wan_is_down(cloud: Cloud, tmp_path: Path) -> None:
    p = cloud.station(1).create_patient(cloud.clinic_ids[1], "W-1", "伊藤 愛", "イトウ アイ")
    with WanProxy(cloud.server.port) as wan:
        rctx = relay_context(tmp_path / "relay", wan.url, cloud.relay_token, relay_prefetch="none")
        catch_up(rctx)
    try:  # the WAN is down from here on
        with rctx.db.read() as s:
            assert s.scalar(select(func.count()).select_from(Station)) == 2
            assert s.scalar(select(func.count()).select_from(Clinic)) == 2
        with RelayApi(rctx) as relay:
            for token in cloud.station_tokens:
                with Client(relay.url, token) as station:
                    assert [x["id"] for x in station.search_patients("いとう")] == [p["id"]]
            r = httpx.get(f"{relay.url}/api/v1/patients", headers={"Authorization": "Bearer cs_st_not-a-station"})
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
            # The follower keeps trying, reports the failure, and does not crash.
            with BackgroundFollower(rctx):
                wait_for(lambda: follower.status(rctx)["last_error"], "the follower to report the WAN down")
            assert "cannot reach the cloud" in str(runtime_of(rctx).upstream.last_error)
    finally:
        rctx.db.dispose()


def test_contract_quota_counts_videos_not_yet_at_the_cloud(cloud: Cloud, relay_ctx: Context) -> None:
    catch_up(relay_ctx)
    with relay_ctx.db.session() as s:
        s.add(OutboxOp(op_id=uuid.uuid4(), kind="media.upload", entity_id=uuid.uuid4(),
                       body={"duration_ms": 90_000, "kind": "video"}, size=10))
        s.add(OutboxOp(op_id=uuid.uuid4(), kind="media.upload", entity_id=uuid.uuid4(),
                       body={"duration_ms": 5_000, "kind": "video"}, size=10, done_at=datetime.now(UTC)))
    with cloud.ctx.db.session() as s:
        contract = s.get(Contract, cloud.contract_id)
        assert contract is not None
        contract.stored_video_ms = 1_000_000
        changes.contract_changed(s, contract.id)
    catch_up(relay_ctx)
    local = _row(relay_ctx, Contract, cloud.contract_id)
    assert isinstance(local, Contract) and local.stored_video_ms == 1_090_000
