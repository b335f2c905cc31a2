from __future__ import annotations

import hashlib
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Media, Upload
from chairside.uploads.sweep import sweep_expired
from tests.conftest import LiveServer, Tenant
from tests.hostile.locks import wait_until_locked
from tests.uploads.helpers import TUS, create, head, offset, patch, raw_patch_then_cut

Patient = dict[str, Any]


def _auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


def _nothing_left(ctx: Context) -> None:
    """No media row, no blob, no partial upload file: the refused upload left no trace."""
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Media)) == 0
        assert s.scalar(select(func.count()).select_from(Upload)) == 0
    assert list(ctx.blobs.iter_hashes()) == []
    assert [p.name for p in ctx.settings.uploads_dir.iterdir()] == []


def test_options_advertises_version_extensions_and_checksums(server: LiveServer) -> None:
    r = httpx.options(f"{server.url}/api/v1/uploads/")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert set(r.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}


def test_tuspy_uploads_a_video_that_is_then_listed_probed_and_thumbnailed(
    server: LiveServer, tenant: Tenant, api: Client, patient: Patient, media_dir: Path
) -> None:
    media_id = str(uuid.uuid4())
    client = tus_client.TusClient(f"{server.url}/api/v1/uploads/", headers=_auth(tenant))
    with (media_dir / "clip.mp4").open("rb") as f:  # tuspy leaks the file it opens from a path
        uploader = client.uploader(
            file_stream=f, chunk_size=40_000, upload_checksum=True,
            metadata={"patient_id": patient["id"], "media_id": media_id, "filename": "clip.mp4",
                      "captured_at": "2026-11-20T10:15:00+09:00"},
        )
        uploader.upload()
    items = api.list_media(patient["id"])
    assert [i["id"] for i in items] == [media_id]
    item = items[0]
    assert item["kind"] == "video" and item["codec"] == "h264"
    assert (item["width"], item["height"]) == (640, 360)
    assert item["fps"] == pytest.approx(30, abs=0.01)
    assert item["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert item["sha256"] == hashlib.sha256((media_dir / "clip.mp4").read_bytes()).hexdigest()
    assert item["captured_at"].startswith("2026-11-20T01:15:00")  # stored in UTC
    assert api.thumbnail(media_id)[:3] == b"\xff\xd8\xff"


def test_resume_continues_from_the_servers_offset(
    server: LiveServer, tenant: Tenant, api: Client, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    r = create(server.url, tenant.token, len(data), patient["id"])
    url = server.url + r.headers["Location"]
    assert patch(url, tenant.token, 0, data[:10_000]).headers["Upload-Offset"] == "10000"
    assert offset(url, tenant.token) == 10_000
    r = patch(url, tenant.token, 10_000, data[10_000:])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    assert len(api.list_media(patient["id"])) == 1


def test_a_cut_patch_keeps_the_bytes_that_arrived(
    server: LiveServer, tenant: Tenant, api: Client, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    raw_patch_then_cut(url, tenant.token, 0, len(data), data[:30_000])
    kept = offset(url, tenant.token)
    # What the server had read when the line died is kept (bytes still in its socket buffer
    # at that instant die with the connection; under load that can be the last piece).
    assert 0 < kept <= 30_000
    assert patch(url, tenant.token, kept, data[kept:]).status_code == 204
    (item,) = api.list_media(patient["id"])
    assert item["sha256"] == hashlib.sha256(data).hexdigest()


def test_checksum_mismatch_answers_460_and_leaves_the_offset(
    server: LiveServer, tenant: Tenant, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    assert patch(url, tenant.token, 0, data[:5000], checksum="sha1").status_code == 204
    headers = {**TUS, **_auth(tenant), "Upload-Offset": "5000", "Content-Type": "application/offset+octet-stream",
               "Upload-Checksum": "sha256 " + "A" * 43 + "="}
    r = httpx.patch(url, headers=headers, content=data[5000:9000])
    assert r.status_code == 460
    assert r.headers["content-type"] == "application/problem+json"
    assert offset(url, tenant.token) == 5000
    assert patch(url, tenant.token, 5000, data[5000:], checksum="sha256").status_code == 204


def test_patch_at_a_wrong_offset_is_409_with_the_right_one(
    server: LiveServer, tenant: Tenant, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    patch(url, tenant.token, 0, data[:100])
    r = patch(url, tenant.token, 50, data[50:200])
    assert r.status_code == 409
    assert r.headers["Upload-Offset"] == "100"
    assert "100" in r.json()["detail"]


def test_a_patch_at_a_wrong_offset_of_a_finished_upload_is_409_with_its_length(
    server: LiveServer, tenant: Tenant, patient: Patient, media_dir: Path
) -> None:
    """Not a 404 "upload no longer exists" (its partial file is gone once stored): a client resending from an
    old offset is told the upload is whole, and HEAD agrees; nothing is stored twice."""
    data = (media_dir / "photo.jpg").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    assert patch(url, tenant.token, 0, data).status_code == 204
    r = patch(url, tenant.token, 0, data[:100])
    assert r.status_code == 409, r.text
    assert r.headers["Upload-Offset"] == str(len(data)) and r.json()["type"].endswith("/offset-mismatch")
    assert head(url, tenant.token).headers["Upload-Offset"] == str(len(data))
    assert patch(url, tenant.token, len(data), b"").status_code == 204  # the retry of the last PATCH: done


def test_concurrent_patches_of_one_upload_never_interleave(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    results: list[int] = []

    def slow_body() -> Any:
        for i in range(0, 20_000, 1000):
            yield data[i:i + 1000]
            time.sleep(0.02)

    def first() -> None:
        headers = {**TUS, **_auth(tenant), "Upload-Offset": "0", "Content-Length": "20000",
                   "Content-Type": "application/offset+octet-stream"}
        results.append(httpx.patch(url, headers=headers, content=slow_body()).status_code)

    t = threading.Thread(target=first)
    t.start()
    wait_until_locked(ctx.parts.path(url.rsplit("/", 1)[1]))  # the first PATCH holds the upload now
    second = patch(url, tenant.token, 0, b"\0" * 20_000)
    t.join()
    assert results == [204]
    assert second.status_code in (409, 423)  # waited for the first, then found the offset moved
    rest = patch(url, tenant.token, 20_000, data[20_000:])
    assert rest.status_code == 204
    (item,) = api.list_media(patient["id"])
    assert item["sha256"] == hashlib.sha256(data).hexdigest()


def test_retrying_with_the_same_media_id_never_makes_a_second_item(
    server: LiveServer, tenant: Tenant, api: Client, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    media_id = str(uuid.uuid4())
    for _ in range(2):
        url = server.url + create(server.url, tenant.token, len(data), patient["id"], media_id).headers["Location"]
        assert patch(url, tenant.token, 0, data).status_code == 204
    assert [i["id"] for i in api.list_media(patient["id"])] == [media_id]


def test_a_media_id_reused_for_different_bytes_is_refused(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: Patient, media_dir: Path
) -> None:
    media_id = str(uuid.uuid4())
    api.upload(media_dir / "clip.mp4", patient["id"], media_id=media_id)
    other = (media_dir / "clip2.mp4").read_bytes()
    r = create(server.url, tenant.token, len(other), patient["id"], media_id)
    if r.status_code == 201:  # same length by chance: refused when the bytes are in
        r = patch(server.url + r.headers["Location"], tenant.token, 0, other)
    assert r.status_code == 409
    assert "new id" in r.json()["detail"]
    assert [i["id"] for i in api.list_media(patient["id"])] == [media_id]


def test_creation_with_upload_stores_a_photo_in_one_request(
    server: LiveServer, tenant: Tenant, api: Client, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "photo.jpg").read_bytes()
    headers = {**TUS, **_auth(tenant), "Upload-Length": str(len(data)),
               "Content-Type": "application/offset+octet-stream",
               "Upload-Metadata": create_meta(patient["id"], "photo.jpg")}
    r = httpx.post(f"{server.url}/api/v1/uploads/", headers=headers, content=data)
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Offset"] == str(len(data))
    (item,) = api.list_media(patient["id"])
    assert item["kind"] == "image" and item["mime"] == "image/jpeg"


def create_meta(patient_id: str, filename: str) -> str:
    from tests.uploads.helpers import meta

    return meta(patient_id=patient_id, media_id=str(uuid.uuid4()), filename=filename)


def test_termination_removes_the_upload_and_its_bytes(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: Patient, media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    patch(url, tenant.token, 0, data[:1000])
    r = httpx.delete(url, headers={**TUS, **_auth(tenant)})
    assert r.status_code == 204
    assert head(url, tenant.token).status_code == 404
    _nothing_left(ctx)


def test_an_expired_upload_answers_410_and_the_sweep_removes_its_bytes(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: Patient, media_dir: Path
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from chairside.db.models import utcnow
    data = (media_dir / "clip.mp4").read_bytes()
    urls = []
    for _ in range(2):
        url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
        patch(url, tenant.token, 0, data[:1000])
        urls.append(url)
    assert head(urls[0], tenant.token).headers["Upload-Expires"].endswith("GMT")
    with ctx.db.session() as s:
        s.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert patch(urls[0], tenant.token, 1000, data[1000:2000]).status_code == 410
    assert sweep_expired(ctx) == 1  # the other one; the first was removed when it answered 410
    assert head(urls[1], tenant.token).status_code == 404
    _nothing_left(ctx)


# -- bad input: each a clear 4xx, and nothing left behind ------------------------------------

@pytest.mark.parametrize(("name", "status", "words"), [
    ("truncated.mp4", 422, "damaged"),
    ("notes.txt", 415, "not a photo or video"),
])
def test_refused_files_leave_no_trace(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: Patient, media_dir: Path,
    name: str, status: int, words: str,
) -> None:
    data = (media_dir / name).read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"], filename=name).headers["Location"]
    r = patch(url, tenant.token, 0, data)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert words in r.json()["detail"].lower()
    _nothing_left(ctx)


def test_a_jpeg_named_mp4_is_stored_as_the_photo_it_is(
    server: LiveServer, api: Client, patient: Patient, media_dir: Path
) -> None:
    item = api.upload(media_dir / "jpeg-named.mp4", patient["id"])
    assert item["kind"] == "image" and item["mime"] == "image/jpeg" and item["duration_s"] is None


def test_heic_and_png_photos_are_accepted(api: Client, patient: Patient, media_dir: Path) -> None:
    heic = api.upload(media_dir / "photo.heic", patient["id"])
    png = api.upload(media_dir / "photo.png", patient["id"])
    assert (heic["mime"], png["mime"]) == ("image/heic", "image/png")
    assert api.thumbnail(heic["id"])[:2] == b"\xff\xd8"


@pytest.mark.parametrize(("length", "filename", "status", "code"), [
    (0, "empty.mp4", 400, "empty-file"),
    (10, "../../etc/passwd", 400, "bad-filename"),
    (10, "a\x00b.mp4", 400, "bad-filename"),
    (10, "..\\x.mp4", 400, "bad-filename"),
    (10**15, "huge.mp4", 413, "too-large"),
])
def test_creation_refuses_bad_lengths_and_names(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: Patient,
    length: int, filename: str, status: int, code: str,
) -> None:
    r = create(server.url, tenant.token, length, patient["id"], filename=filename)
    assert r.status_code == status
    assert r.json()["type"].endswith(code)
    _nothing_left(ctx)


def test_creation_refuses_an_unknown_or_foreign_patient_alike(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, patient: Patient
) -> None:
    foreign = create(server.url, other_tenant.token, 100, patient["id"])
    unknown = create(server.url, tenant.token, 100, str(uuid.uuid4()))
    assert foreign.status_code == unknown.status_code == 422
    assert foreign.json()["detail"] == unknown.json()["detail"]
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Upload)) == 0


def test_another_contracts_upload_is_404(
    server: LiveServer, tenant: Tenant, other_tenant: Tenant, patient: Patient
) -> None:
    url = server.url + create(server.url, tenant.token, 100, patient["id"]).headers["Location"]
    assert head(url, other_tenant.token).status_code == 404
    assert patch(url, other_tenant.token, 0, b"x" * 10).status_code == 404
    assert offset(url, tenant.token) == 0


def test_requests_without_tus_version_get_412(server: LiveServer, tenant: Tenant) -> None:
    r = httpx.post(f"{server.url}/api/v1/uploads/", headers={**_auth(tenant), "Upload-Length": "10"})
    assert r.status_code == 412
    assert r.headers["Tus-Version"] == "1.0.0"


def test_tuspy_surfaces_the_servers_refusal(
    server: LiveServer, tenant: Tenant, patient: Patient, media_dir: Path
) -> None:
    client = tus_client.TusClient(f"{server.url}/api/v1/uploads/", headers=_auth(tenant))
    with (media_dir / "notes.txt").open("rb") as f:
        uploader = client.uploader(file_stream=f,
                                   metadata={"patient_id": patient["id"], "media_id": str(uuid.uuid4())})
        with pytest.raises(TusCommunicationError) as e:
            uploader.upload()
    assert e.value.status_code == 415
