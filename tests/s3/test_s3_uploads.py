"""tus uploads, Range reads and zip exports on a cloud whose blob store is a real S3 server (SeaweedFS).

The bytes of an upload go to the bucket as they arrive: nothing but an empty lock file is on the
server's disk between PATCHes, the multipart parts and the tail object are in the bucket, and the
finished blob is a server-side copy. The main path runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import functools
import hashlib
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chairside.blobs.s3 import MIN_PART_SIZE, S3BlobStore
from chairside.context import Context, build_context
from chairside.settings import Settings
from chairside.uploads import s3stream
from tests.conftest import LiveServer
from tests.factories import Tenant, make_patient, make_relay_token, make_tenant
from tests.s3.helpers import blob_url, fresh_bucket, padded_clip, staged_objects, unfinished_multipart
from tests.seaweed import SeaweedS3, seaweed_s3  # noqa: F401  (the fixture)
from tests.uploads.helpers import TIMEOUT_S, create, head, patch, raw_patch_then_cut

AUTH = "Authorization"
# Requests to a server storing into SeaweedFS on a busy machine may take longer than httpx's 5 s default.
_get = functools.partial(httpx.get, timeout=TIMEOUT_S)
_post = functools.partial(httpx.post, timeout=TIMEOUT_S)
_patch = functools.partial(httpx.patch, timeout=TIMEOUT_S)
# The S3 side of these does not depend on the database: SQLite only, to keep the suite's time (the main path
# above runs on both).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def s3ctx(database_url: str, tmp_path: Path, seaweed_s3: SeaweedS3) -> Iterator[tuple[Context, str]]:  # noqa: F811
    bucket = fresh_bucket(seaweed_s3)
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "data", database_url=database_url,
                                      blob_url=blob_url(seaweed_s3, bucket)))
    # 5 MiB parts (S3's minimum), so that a 12 MiB file is several parts and a tail.
    ctx.blobs = S3BlobStore(bucket, prefix="blobs/", endpoint_url=seaweed_s3.endpoint_url,
                            access_key=seaweed_s3.access_key, secret_key=seaweed_s3.secret_key,
                            part_size=MIN_PART_SIZE)
    try:
        yield ctx, bucket
    finally:
        ctx.blobs.close()
        ctx.db.dispose()


def _local_bytes(ctx: Context) -> int:
    return sum(p.stat().st_size for p in ctx.settings.uploads_dir.rglob("*") if p.is_file())


def test_a_tus_upload_streams_to_the_bucket_and_serves_ranges_and_exports(
    s3ctx: tuple[Context, str], seaweed_s3: SeaweedS3, media_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    ctx, bucket = s3ctx
    assert s3stream.enabled(ctx)
    tenant = make_tenant(ctx)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    data = padded_clip(media_dir / "clip.mp4", tmp_path / "big.mp4", 12 << 20).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with LiveServer(ctx) as server:
        r = create(server.url, tenant.token, len(data), str(patient.id), filename="big.mp4", sha256=sha)
        assert r.status_code == 201, r.text
        url = server.url + r.headers["Location"]
        cut = 7 << 20  # one full part and a 2 MiB tail
        assert patch(url, tenant.token, 0, data[:cut], checksum="sha1").status_code == 204
        # Between PATCHes the bytes are in the bucket, not on this server's disk.
        assert _local_bytes(ctx) == 0
        assert any("/tail-" in k for k in staged_objects(seaweed_s3, bucket))
        assert unfinished_multipart(seaweed_s3, bucket)
        # A damaged PATCH keeps nothing, a cut one keeps what arrived.
        good = patch(url, tenant.token, cut, data[cut:cut + 100], checksum="sha1")
        assert good.status_code == 204
        damaged = _patch(url, content=data[cut + 100:cut + 200], headers={
            AUTH: f"Bearer {tenant.token}", "Tus-Resumable": "1.0.0", "Upload-Offset": str(cut + 100),
            "Content-Type": "application/offset+octet-stream", "Upload-Checksum": "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA="})
        assert damaged.status_code == 460
        assert int(head(url, tenant.token).headers["Upload-Offset"]) == cut + 100
        raw_patch_then_cut(url, tenant.token, cut + 100, len(data) - cut - 100, data[cut + 100:cut + 100 + (4 << 20)])
        at = int(head(url, tenant.token).headers["Upload-Offset"])
        assert cut + 100 <= at <= cut + 100 + (4 << 20)
        assert _local_bytes(ctx) == 0
        done = patch(url, tenant.token, at, data[at:])
        assert done.status_code == 204, done.text
        # Nothing of the upload is left: no local file, no staged object, no unfinished multipart upload.
        assert _local_bytes(ctx) == 0
        assert staged_objects(seaweed_s3, bucket) == [] and unfinished_multipart(seaweed_s3, bucket) == []
        items = _get(f"{server.url}/api/v1/patients/{patient.id}/media",
                          headers={AUTH: f"Bearer {tenant.token}"}).json()["items"]
        assert [(i["filename"], i["sha256"]) for i in items] == [("big.mp4", sha)]
        media_id = items[0]["id"]
        stored = seaweed_s3.client().head_object(Bucket=bucket, Key=f"blobs/{sha}")
        assert stored["ContentLength"] == len(data) and stored["Metadata"]["sha256"] == sha
        # Range and ETag as from a filesystem store.
        content = f"{server.url}/api/v1/media/{media_id}/content"
        part = _get(content, headers={AUTH: f"Bearer {tenant.token}", "Range": "bytes=6000000-6000099"})
        assert part.status_code == 206 and part.content == data[6000000:6000100]
        assert part.headers["content-range"] == f"bytes 6000000-6000099/{len(data)}"
        etag = part.headers["etag"]
        assert sha in etag
        assert _get(content, headers={AUTH: f"Bearer {tenant.token}", "If-None-Match": etag}).status_code == 304
        tail = _get(content, headers={AUTH: f"Bearer {tenant.token}", "Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == data[-10:]
        assert _get(content, headers={AUTH: f"Bearer {tenant.token}",
                                           "Range": f"bytes={len(data)}-"}).status_code == 416
        # The zip export streams the blob out of the bucket.
        z = _post(f"{server.url}/api/v1/exports/zip", headers={AUTH: f"Bearer {tenant.token}"},
                       json={"media_ids": [media_id]})
        assert z.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
        entry = next(n for n in names if n.endswith(".mp4"))
        assert zipfile.ZipFile(io.BytesIO(z.content)).read(entry) == data
        # The same media id again with the same bytes: the same item, no second blob copy work left behind.
        again = create(server.url, tenant.token, len(data), str(patient.id), media_id=media_id, filename="big.mp4")
        assert again.status_code == 201
        assert patch(server.url + again.headers["Location"], tenant.token, 0, data).status_code == 204
        assert len(_get(f"{server.url}/api/v1/patients/{patient.id}/media",
                             headers={AUTH: f"Bearer {tenant.token}"}).json()["items"]) == 1
        assert staged_objects(seaweed_s3, bucket) == [] and unfinished_multipart(seaweed_s3, bucket) == []


@SQLITE_ONLY
def test_a_relay_forwards_a_photo_and_reads_it_back_from_the_bucket(
    s3ctx: tuple[Context, str], seaweed_s3: SeaweedS3, media_dir: Path  # noqa: F811
) -> None:
    ctx, bucket = s3ctx
    tenant = make_tenant(ctx)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    relay = make_relay_token(ctx, tenant.clinic_ids[0])
    data = (media_dir / "photo.jpg").read_bytes()  # smaller than a part: one tail object, no multipart upload
    with LiveServer(ctx) as server:
        r = create(server.url, relay, len(data), str(patient.id), filename="p.jpg",
                   station_id=str(tenant.station_ids[0]))
        assert r.status_code == 201, r.text
        url = server.url + r.headers["Location"]
        assert patch(url, relay, 0, data[:1000]).status_code == 204
        assert unfinished_multipart(seaweed_s3, bucket) == []
        assert patch(url, relay, 1000, data[1000:]).status_code == 204
        items = _get(f"{server.url}/api/v1/patients/{patient.id}/media",
                          headers={AUTH: f"Bearer {tenant.token}"}).json()["items"]
        assert len(items) == 1 and items[0]["sha256"] == hashlib.sha256(data).hexdigest()
        got = _get(f"{server.url}/api/v1/media/{items[0]['id']}/content", headers={AUTH: f"Bearer {relay}"})
        assert got.status_code == 200 and got.content == data
        thumb = _get(f"{server.url}/api/v1/media/{items[0]['id']}/thumbnail", headers={AUTH: f"Bearer {relay}"})
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        assert staged_objects(seaweed_s3, bucket) == []


@SQLITE_ONLY
def test_a_file_that_is_not_media_is_refused_and_leaves_nothing_in_the_bucket(
    s3ctx: tuple[Context, str], seaweed_s3: SeaweedS3, media_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    ctx, bucket = s3ctx
    tenant: Tenant = make_tenant(ctx)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    truncated = (media_dir / "truncated.mp4").read_bytes() + bytes(6 << 20)  # > a part: a multipart upload
    with LiveServer(ctx) as server:
        r = create(server.url, tenant.token, len(truncated), str(patient.id), media_id=str(uuid.uuid4()))
        url = server.url + r.headers["Location"]
        refused = patch(url, tenant.token, 0, truncated)
        assert refused.status_code in (415, 422), refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert staged_objects(seaweed_s3, bucket) == [] and unfinished_multipart(seaweed_s3, bucket) == []
        assert list(ctx.blobs.iter_hashes()) == []
        assert head(url, tenant.token).status_code == 404


@SQLITE_ONLY
def test_an_expired_upload_is_swept_from_the_bucket_too(
    s3ctx: tuple[Context, str], seaweed_s3: SeaweedS3, media_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from chairside.db.models import Upload, UploadS3State, utcnow
    from chairside.uploads.sweep import sweep_expired

    ctx, bucket = s3ctx
    tenant = make_tenant(ctx)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    data = padded_clip(media_dir / "clip.mp4", tmp_path / "left.mp4", 8 << 20).read_bytes()
    with LiveServer(ctx) as server:
        r = create(server.url, tenant.token, len(data), str(patient.id))
        url = server.url + r.headers["Location"]
        assert patch(url, tenant.token, 0, data[:6 << 20]).status_code == 204  # a part and a tail
        assert staged_objects(seaweed_s3, bucket) and unfinished_multipart(seaweed_s3, bucket)
        with ctx.db.session() as s:
            s.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
        assert sweep_expired(ctx) == 1
        assert staged_objects(seaweed_s3, bucket) == [] and unfinished_multipart(seaweed_s3, bucket) == []
        with ctx.db.session() as s:
            assert s.get(UploadS3State, r.headers["Location"].rsplit("/", 1)[1]) is None
        assert head(url, tenant.token).status_code == 404


@SQLITE_ONLY
def test_a_bucket_that_refuses_is_a_503_problem_and_the_offset_stays(
    s3ctx: tuple[Context, str], seaweed_s3: SeaweedS3, media_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    ctx, bucket = s3ctx
    tenant = make_tenant(ctx)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    data = padded_clip(media_dir / "clip.mp4", tmp_path / "refused.mp4", 6 << 20).read_bytes()
    good = ctx.blobs
    ctx.blobs = S3BlobStore(bucket, prefix="blobs/", endpoint_url=seaweed_s3.endpoint_url,
                            access_key=seaweed_s3.access_key, secret_key="wrong-secret", part_size=MIN_PART_SIZE)
    try:
        with LiveServer(ctx) as server:
            r = create(server.url, tenant.token, len(data), str(patient.id))
            url = server.url + r.headers["Location"]
            refused = patch(url, tenant.token, 0, data)
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["type"].endswith("/storage-unavailable") and refused.headers["retry-after"]
            assert head(url, tenant.token).headers["Upload-Offset"] == "0"
            ctx.blobs.close()
            ctx.blobs = good  # the bucket answers again: the same upload resumes from 0 and completes
            assert patch(url, tenant.token, 0, data).status_code == 204
            assert staged_objects(seaweed_s3, bucket) == [] and unfinished_multipart(seaweed_s3, bucket) == []
    finally:
        ctx.blobs = good
