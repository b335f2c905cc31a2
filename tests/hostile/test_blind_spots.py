"""The suite's blind spots: behaviour that a one-line break left every other test passing. Each test here was
proved by breaking its line once and watching it fail (docs/testing.md lists the breaks)."""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
import time
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Account, CachedBlob, DeviceSession, Media, Upload, utcnow
from chairside.media import trash
from chairside.media.ingest import IngestRequest, file_sha256, ingest
from chairside.relay import cache
from chairside.uploads.sweep import sweep_expired
from tests.admin_cli import run_admin
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer, make_patient, make_relay_token, make_tenant, operator
from tests.relay.follow_fixtures import relay_context
from tests.uploads.helpers import TUS, create, head, meta, patch


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the relay pins what the cloud has not confirmed ------------------------------------------------------------


def test_a_recording_acknowledged_at_a_relay_is_pinned_until_the_cloud_confirms_it(
        tmp_path: Path, media_dir: Path) -> None:
    """Broken by: `pinned=True` → `pinned=False` in media/ingest.py queue_upload (the pin was only ever checked
    after confirmation, when it is already gone)."""
    rctx = relay_context(tmp_path / "relay", "http://127.0.0.1:9", "cs_rl_unused")
    try:
        tenant = make_tenant(rctx, clinics=1)
        patient = make_patient(rctx, tenant.contract_id, tenant.clinic_ids[0])
        path = Path(shutil.copy(media_dir / "clip.mp4", tmp_path / "rec.mp4"))
        item = ingest(rctx.db, rctx.blobs, IngestRequest(
            path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=uuid.uuid4(),
            contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0], patient_id=patient.id,
            filename="rec.mp4", captured_at=None, source="station", queue_upstream=True))
        with rctx.db.read() as s:
            rows = {r.sha256: r.pinned for r in s.scalars(select(CachedBlob))}
        assert rows == {item.sha256: True, item.thumb_sha256: True}
        # a relay short of disk trims its cache to nothing: what the cloud has not confirmed stays
        rctx.settings = rctx.settings.__class__(**{**rctx.settings.__dict__, "relay_cache_bytes": 0})
        cache.ensure_free(rctx)
        assert rctx.blobs.stat(item.sha256) is not None and rctx.blobs.stat(item.thumb_sha256) is not None
    finally:
        rctx.db.dispose()


# --- the feed's long poll wakes on a new event ------------------------------------------------------------------


def test_the_feeds_long_poll_answers_as_soon_as_an_event_is_written(ctx: Context, server: LiveServer,
                                                                   tenant: Tenant) -> None:
    """Broken by: never breaking out of the wait when the head moves (api/feed.py). The poll waits 60 s; the
    client gives up after 30 s, so a poll that only answers at its deadline fails here."""
    token = make_relay_token(ctx, tenant.clinic_ids[0])
    with httpx.Client(base_url=server.url, headers=_auth(token), timeout=30) as relay:
        first = relay.get("/api/v1/feed", params={"after": 0})
        cursor = first.json()["next"]
        answer: dict[str, Any] = {}

        def poll() -> None:
            answer["r"] = relay.get("/api/v1/feed", params={"after": cursor, "wait": 60})

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(1.0)  # let the poll start waiting (it answers correctly either way: the event is after it)
        patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], chart_no="feed-1")
        poller.join(40)
    assert "r" in answer, "the long poll did not answer"
    r = answer["r"]
    assert r.status_code == 200, r.text
    assert str(patient.id) in [i["id"] for i in r.json()["items"]]


# --- trash purge --older-than-days -------------------------------------------------------------------------------


def test_trash_purge_older_than_days_removes_only_old_trash(ctx: Context, tenant: Tenant, api: Client,
                                                          patient: dict[str, Any], media_dir: Path) -> None:
    """Broken by: dropping `Media.deleted_at < cutoff` in media/trash.py purge_older_than."""
    old = api.upload(media_dir / "photo.jpg", patient["id"])
    recent = api.upload(media_dir / "clip.mp4", patient["id"])
    kept = api.upload(media_dir / "photo.png", patient["id"])
    who = operator(tenant.contract_id)
    with ctx.db.session() as s:
        trash.trash(ctx, s, who, uuid.UUID(old["id"]), at=utcnow() - timedelta(days=40))
        trash.trash(ctx, s, who, uuid.UUID(recent["id"]), at=utcnow() - timedelta(days=3))
    result = run_admin(ctx, "trash", "purge", "--older-than-days", "30")
    assert result.exit_code == 0, result.stderr
    assert result.json()["purged"] == 1
    with ctx.db.read() as s:
        left = {str(m.id) for m in s.scalars(select(Media))}
    assert left == {recent["id"], kept["id"]}
    assert ctx.blobs.stat(old["sha256"]) is None
    assert ctx.blobs.stat(recent["sha256"]) is not None


# --- sessions: the absolute expiry, and a disabled account's open session --------------------------------------


def test_a_session_ends_at_its_absolute_expiry_even_when_active(ctx: Context, server: LiveServer,
                                                               viewer: Viewer) -> None:
    """Broken by: dropping `or session.expires_at <= now` in auth/principal.py session_principal."""
    token = sign_in(server, viewer)
    assert httpx.get(f"{server.url}/api/v1/me", headers=_auth(token)).status_code == 200
    with ctx.db.session() as s:  # signed in 7 days ago, active a second ago
        s.execute(update(DeviceSession).values(expires_at=utcnow() - timedelta(seconds=1), last_seen_at=utcnow()))
    r = httpx.get(f"{server.url}/api/v1/me", headers=_auth(token))
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", r.text


def test_a_disabled_accounts_open_session_is_refused(ctx: Context, server: LiveServer, viewer: Viewer) -> None:
    """Broken by: dropping the `account.disabled_at` branch in auth/principal.py session_principal."""
    token = sign_in(server, viewer)
    assert httpx.get(f"{server.url}/api/v1/me", headers=_auth(token)).status_code == 200
    with ctx.db.session() as s:
        s.execute(update(Account).where(Account.id == viewer.account_id).values(disabled_at=utcnow()))
    r = httpx.get(f"{server.url}/api/v1/me", headers=_auth(token))
    assert r.status_code == 401 and r.json()["type"].endswith("account-disabled"), r.text


# --- the whole-file SHA-256 -------------------------------------------------------------------------------------


def test_the_whole_file_is_checked_against_the_sha256_the_client_sent(ctx: Context, server: LiveServer,
                                                                     tenant: Tenant, patient: dict[str, Any],
                                                                     media_dir: Path) -> None:
    """Broken by: skipping the comparison with `upload.expected_sha256` in uploads/service.py complete."""
    data = (media_dir / "clip.mp4").read_bytes()
    wrong = hashlib.sha256(b"another file").hexdigest()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"], sha256=wrong).headers["Location"]
    r = patch(url, tenant.token, 0, data)
    assert r.status_code == 460 and r.json()["type"].endswith("checksum-mismatch"), r.text
    with ctx.db.read() as s:
        assert s.scalars(select(Media)).all() == []
    right = hashlib.sha256(data).hexdigest()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"], sha256=right).headers["Location"]
    assert patch(url, tenant.token, 0, data).status_code == 204


# --- paths that had no test -------------------------------------------------------------------------------------


def test_a_body_longer_than_the_upload_is_refused_and_nothing_moves(ctx: Context, server: LiveServer,
                                                                    tenant: Tenant, patient: dict[str, Any]) -> None:
    url = server.url + create(server.url, tenant.token, 1000, patient["id"]).headers["Location"]
    r = patch(url, tenant.token, 0, b"x" * 1001)
    assert r.status_code == 400 and r.json()["type"].endswith("too-long"), r.text

    def chunked() -> Any:
        yield b"x" * 600
        yield b"x" * 600

    r = httpx.patch(url, content=chunked(), headers={**TUS, **_auth(tenant.token), "Upload-Offset": "0",
                                                     "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 400, r.text
    assert int(head(url, tenant.token).headers["Upload-Offset"]) <= 1000
    with ctx.db.read() as s:
        assert s.scalars(select(Media)).all() == []


def test_crash_between_the_last_byte_and_ingest_is_finished_by_the_next_head(
        ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path) -> None:
    """The last bytes are in (the row says so) but the server stopped before storing: HEAD stores it."""
    data = (media_dir / "photo.jpg").read_bytes()
    media_id = str(uuid.uuid4())
    url = server.url + create(server.url, tenant.token, len(data), patient["id"], media_id).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    ctx.parts.path(upload_id).write_bytes(data)  # the bytes as the crashed PATCH left them, synced
    with ctx.db.session() as s:
        s.execute(update(Upload).where(Upload.id == upload_id).values(offset=len(data)))
    r = head(url, tenant.token)
    assert r.status_code == 200 and r.headers["Upload-Offset"] == str(len(data))
    with ctx.db.read() as s:
        item = s.get(Media, uuid.UUID(media_id))
    assert item is not None and item.sha256 == hashlib.sha256(data).hexdigest()
    assert not ctx.parts.path(upload_id).exists()


def test_the_sweep_removes_orphan_partial_files_only_when_old(ctx: Context) -> None:
    ctx.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    # A partial file, one staged for storing and one copied back after a crash (uploads/service.py), no row.
    orphans = [ctx.settings.uploads_dir / f"deadbeef{n}{suffix}" for n, suffix in enumerate((".part", ".ingest",
                                                                                           ".copy"))]
    for orphan in orphans:
        orphan.write_bytes(b"x" * 100)
    assert sweep_expired(ctx) == 0 and all(o.exists() for o in orphans)  # young: a row may be about to commit
    later = utcnow() + timedelta(seconds=ctx.settings.upload_expiry_s + 60)
    assert sweep_expired(ctx, now=later) == 3
    assert not any(o.exists() for o in orphans)


def test_viewers_and_stations_of_the_same_contract_cannot_purge_or_manage_stations(
        ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any], viewer: Viewer,
        media_dir: Path) -> None:
    item = api.upload(media_dir / "photo.jpg", patient["id"])
    api_session = sign_in(server, viewer)
    trashed = httpx.delete(f"{server.url}/api/v1/media/{item['id']}", headers=_auth(tenant.token))
    assert trashed.status_code in (200, 204), trashed.text
    station = str(tenant.station_ids[1])
    for token in (tenant.token, api_session):
        for method, path, body in (
                ("POST", f"/api/v1/media/{item['id']}/purge", None),
                ("PUT", f"/api/v1/stations/{station}/scope", {"clinic_ids": None}),
                ("POST", f"/api/v1/stations/{station}/revoke", None),
                ("GET", "/api/v1/stations", None)):
            r = httpx.request(method, server.url + path, json=body, headers=_auth(token))
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
    with ctx.db.read() as s:
        assert s.get(Media, uuid.UUID(item["id"])) is not None


@pytest.mark.parametrize("field", ["media_id", "patient_id"])
def test_a_tus_id_of_another_contract_answers_like_an_unknown_one(
        ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, patient: dict[str, Any],
        media_dir: Path, field: str) -> None:
    """An id sent in a body never tells anything of another contract. A patient id of another contract answers as
    an unknown one. A media id is global (client-made, unguessable UUIDs, one row each), so another contract's
    answers as this contract's own id sent with another file does: 409 media-id-conflict, the same body
    (docs/security.md, "Ids in bodies")."""
    data = (media_dir / "photo.jpg").read_bytes()
    theirs_patient = make_patient(ctx, other_tenant.contract_id, other_tenant.clinic_ids[0], chart_no="x1")
    with Client(server.url, other_tenant.token) as them:
        theirs = them.upload(media_dir / "clip.mp4", str(theirs_patient.id))

    def attempt(value: str) -> httpx.Response:
        values = {"patient_id": patient["id"], "media_id": str(uuid.uuid4()), "filename": "a.jpg", field: value}
        created = httpx.post(f"{server.url}/api/v1/uploads/", headers={
            **TUS, **_auth(tenant.token), "Upload-Length": str(len(data)), "Upload-Metadata": meta(**values)})
        if created.status_code != 201:
            return created
        return patch(server.url + created.headers["Location"], tenant.token, 0, data)

    foreign = theirs["id"] if field == "media_id" else str(theirs_patient.id)
    if field == "media_id":
        with Client(server.url, tenant.token) as us:
            ours = us.upload(media_dir / "clip.mp4", patient["id"])["id"]  # then sent again with a photo
        a, b = attempt(foreign), attempt(ours)
    else:
        a, b = attempt(foreign), attempt(str(uuid.uuid4()))
    assert a.status_code == b.status_code, (a.text, b.text)
    if a.status_code >= 400:  # the same body, but for the id itself
        sent_a, sent_b = (foreign, ours) if field == "media_id" else (foreign, None)
        body_a = a.text.replace(sent_a, "<id>")
        body_b = b.text.replace(sent_b, "<id>") if sent_b else b.text
        assert body_a == body_b



# --- survivors of mutmut over tenancy/visibility.py (docs/testing.md) -------------------------------------------


def test_a_clinic_scoped_station_sees_only_its_clinics_patients_media_and_creates_only_there(
        ctx: Context, server: LiveServer, tenant: Tenant, api: Client, media_dir: Path) -> None:
    """Kills the survivors `x_media__mutmut_7..12` (the clinic filter of media dropped) and `x_clinic__mutmut_3`
    (the clinic check inverted): the tests that owned visibility.py only ever used unscoped callers."""
    from chairside.db.models import Station
    from chairside.tenancy.service import set_clinic_scope

    here, there = tenant.clinic_ids
    theirs = api.create_patient(there, "s-2", "遠藤 花", "エンドウ ハナ")
    item = api.upload(media_dir / "photo.jpg", theirs["id"])
    set_clinic_scope(ctx, operator(tenant.contract_id), Station, tenant.station_ids[1], [here])
    scoped = tenant.station_tokens[1]  # the second clinic's station, now seeing only the first clinic
    with ctx.db.read() as s:
        assert s.get(Station, tenant.station_ids[1]).clinic_scope == [str(here)]  # type: ignore[union-attr]
    with Client(server.url, scoped) as chair:
        mine = chair.create_patient(here, "s-1", "近藤 空", "コンドウ ソラ")  # its own scope: allowed
        assert mine["clinic_id"] == str(here)
        own = chair.upload(media_dir / "photo.png", mine["id"])
        assert chair.get_media(own["id"])["id"] == own["id"]  # and it sees what is in its scope
        assert [m["id"] for m in chair.list_media(mine["id"])] == [own["id"]]
    for path in (f"/api/v1/media/{item['id']}", f"/api/v1/media/{item['id']}/content",
                 f"/api/v1/patients/{theirs['id']}/media"):
        r = httpx.get(server.url + path, headers=_auth(scoped))
        assert r.status_code == 404, (path, r.status_code)
    refused = httpx.post(f"{server.url}/api/v1/patients", headers=_auth(scoped), json={
        "clinic_id": str(there), "chart_no": "s-3", "name": "外 太郎", "name_kana": "ソト タロウ"})
    assert refused.status_code in (403, 404, 422), refused.text


def test_trashed_items_are_hidden_unless_asked_for(ctx: Context, server: LiveServer, tenant: Tenant, api: Client,
                                                  patient: dict[str, Any], media_dir: Path) -> None:
    """Kills the survivors `x_media__mutmut_1` and `x_media_item__mutmut_1` (include_deleted on by default)."""
    item = api.upload(media_dir / "photo.jpg", patient["id"])
    with ctx.db.session() as s:
        trash.trash(ctx, s, operator(tenant.contract_id), uuid.UUID(item["id"]))
    auth = _auth(tenant.token)
    assert httpx.get(f"{server.url}/api/v1/media/{item['id']}", headers=auth).json()["deleted_at"]  # shown, marked
    assert httpx.get(f"{server.url}/api/v1/media/{item['id']}/content", headers=auth).status_code == 404
    listing = httpx.get(f"{server.url}/api/v1/patients/{patient['id']}/media", headers=_auth(tenant.token))
    assert listing.status_code == 200 and item["id"] not in [m["id"] for m in listing.json()["items"]]
    # what relies on the default: a patient's export leaves the trash out; a trashed item takes no new tags
    kept = api.upload(media_dir / "photo.png", patient["id"])
    export = httpx.get(f"{server.url}/api/v1/exports/zip", params={"patient_id": patient["id"]}, headers=auth)
    assert export.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
    assert len(names) == 3 and any(n.endswith(".png") for n in names), names  # two manifests and the PNG
    assert kept["id"]
    tags = httpx.put(f"{server.url}/api/v1/media/{item['id']}/tags", headers=auth, json={"tags": ["術前"]})
    assert tags.status_code == 404, tags.text
