"""A real run through the HTTP API with encryption at rest: nothing recognisable is left on disk.

A real H.264 clip and a patient whose name carries a marker are stored through the API (tus upload,
ingest, thumbnail); then every file of the data folder's blob store and partial uploads is searched
for pieces of the clip, of its thumbnail and for the marker. The bytes still come back exact,
Range reads across the 64 KiB chunk boundaries included.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from chairside.blobs.crypt import CHUNK, EncryptedBlobStore
from chairside.client import Client
from chairside.context import Context
from tests.conftest import LiveServer
from tests.factories import Tenant

MARKER = "ZQXJ秘密患者マーカー"


def windows(data: bytes, n: int = 8, width: int = 48) -> list[bytes]:
    """`n` pieces of `data` spread over it (skipping the first bytes, which are common to all MP4s)."""
    step = max(1, (len(data) - 4096) // n)
    return [data[at:at + width] for at in range(4096, len(data) - width, step)][:n]


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_no_plaintext_of_media_or_names_reaches_the_blob_store(ctx: Context, server: LiveServer, api: Client,
                                                                tenant: Tenant, media_dir: Path) -> None:
    assert isinstance(ctx.blobs, EncryptedBlobStore)
    patient = api.create_patient(tenant.clinic_ids[0], "00077", f"{MARKER} 太郎", "ヤマダ タロウ")
    clip = (media_dir / "clip.mp4").read_bytes()
    item = api.upload(media_dir / "clip.mp4", patient["id"])
    photo = api.upload(media_dir / "photo.jpg", patient["id"])
    assert item["sha256"] == hashlib.sha256(clip).hexdigest()
    thumb = api.thumbnail(item["id"])

    # The bytes come back exact, whole and by ranges across chunk boundaries.
    assert b"".join(api.iter_content(item["id"])) == clip
    for start, end in [(CHUNK - 3, CHUNK + 2), (0, 0), (2 * CHUNK - 1, 3 * CHUNK), (len(clip) - 10, len(clip) - 1)]:
        assert b"".join(api.iter_content(item["id"], start, end)) == clip[start:end + 1], (start, end)

    # Nothing recognisable on disk: the blob store (media, thumbnails) and the partial uploads.
    blob_root = ctx.blobs.backend.local_path(item["sha256"])
    assert blob_root is not None
    stored = files_under(ctx.settings.data_dir / "blobs", ctx.settings.uploads_dir)
    assert len(stored) >= 3  # the clip, the photo, the thumbnails
    needles = [*windows(clip), *windows(thumb, 4, 32), *windows((media_dir / "photo.jpg").read_bytes(), 4, 32),
               MARKER.encode()]
    for path in stored:
        raw = path.read_bytes()
        for needle in needles:
            assert needle not in raw, f"{path} holds plaintext"
    assert photo["sha256"] != item["sha256"]


def test_a_tampered_blob_is_not_served(ctx: Context, server: LiveServer, api: Client, tenant: Tenant,
                                       media_dir: Path) -> None:
    assert isinstance(ctx.blobs, EncryptedBlobStore)
    patient = api.create_patient(tenant.clinic_ids[0], "00078", "改ざん 確認", "カイザン カクニン")
    item = api.upload(media_dir / "clip2.mp4", patient["id"])
    path = ctx.blobs.backend.local_path(item["sha256"])
    assert path is not None
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.chmod(0o640)
    path.write_bytes(bytes(raw))
    headers = {"Authorization": f"Bearer {tenant.token}"}
    try:
        with httpx.stream("GET", f"{server.url}/api/v1/media/{item['id']}/content", headers=headers) as r:
            body = b"".join(r.iter_bytes())
        complete = len(body) == int(r.headers["content-length"])
    except httpx.HTTPError:  # the connection is cut where the altered chunk begins
        complete = False
    assert not complete
