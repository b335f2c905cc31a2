"""Photos as browsers can show them: HEIC becomes a JPEG made once and kept; JPEG is served as it is."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from chairside.client import Client
from chairside.context import Context
from chairside.media.derivatives import cached_display
from tests.conftest import LiveServer
from tests.factories import Tenant


def _get(server: LiveServer, tenant: Tenant, path: str, **headers: str) -> httpx.Response:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {tenant.token}", **extra})


def test_a_heic_photo_is_shown_as_an_upright_jpeg_made_once(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    item = api.upload(media_dir / "photo.heic", patient["id"])
    assert cached_display(ctx, uuid.UUID(item["id"])) is None
    r = _get(server, tenant, f"/api/v1/media/{item['id']}/display")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.format == "JPEG" and picture.size == (item["width"], item["height"])
    stored = cached_display(ctx, uuid.UUID(item["id"]))
    assert stored and r.headers["etag"] == f'"{stored}"'
    again = _get(server, tenant, f"/api/v1/media/{item['id']}/display", if_none_match=r.headers["etag"])
    assert again.status_code == 304
    # The original is kept as it came.
    original = _get(server, tenant, f"/api/v1/media/{item['id']}/content").content
    assert original == (media_dir / "photo.heic").read_bytes()


def test_a_made_copy_that_went_missing_is_made_again(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    item = api.upload(media_dir / "photo.heic", patient["id"])
    first = _get(server, tenant, f"/api/v1/media/{item['id']}/display").content
    sha = cached_display(ctx, uuid.UUID(item["id"]))
    assert sha
    ctx.blobs.delete(sha)
    assert _get(server, tenant, f"/api/v1/media/{item['id']}/display").content == first


def test_a_jpeg_is_served_as_it_is(server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any],
                                   media_dir: Path, ctx: Context) -> None:
    item = api.upload(media_dir / "photo.jpg", patient["id"])
    r = _get(server, tenant, f"/api/v1/media/{item['id']}/display")
    assert r.content == (media_dir / "photo.jpg").read_bytes()
    assert cached_display(ctx, uuid.UUID(item["id"])) is None


def test_a_large_photo_is_made_smaller(
    server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any], tmp_path: Path
) -> None:
    from chairside.mediafile import generate
    generate.make_png(tmp_path / "scan.png", width=3200, height=1800)
    item = api.upload(tmp_path / "scan.png", patient["id"])
    picture = Image.open(io.BytesIO(_get(server, tenant, f"/api/v1/media/{item['id']}/display").content))
    assert picture.format == "JPEG" and picture.size == (2560, 1440)


def test_a_video_has_no_display_copy(server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any],
                                     media_dir: Path) -> None:
    item = api.upload(media_dir / "clip.mp4", patient["id"])
    r = _get(server, tenant, f"/api/v1/media/{item['id']}/display")
    assert r.status_code == 404 and r.json()["type"].endswith("not-a-photo")


def test_purging_a_photo_removes_its_display_copy(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    from tests.conftest import sign_in
    from tests.factories import make_account

    item = api.upload(media_dir / "photo.heic", patient["id"])
    _get(server, tenant, f"/api/v1/media/{item['id']}/display").raise_for_status()
    copy = cached_display(ctx, uuid.UUID(item["id"]))
    assert copy and ctx.blobs.stat(copy) is not None
    boss = {"Authorization": f"Bearer {sign_in(server, make_account(ctx, tenant, 'boss', admin=True))}"}
    httpx.delete(f"{server.url}/api/v1/media/{item['id']}", headers=boss).raise_for_status()
    httpx.post(f"{server.url}/api/v1/media/{item['id']}/purge", headers=boss).raise_for_status()
    assert cached_display(ctx, uuid.UUID(item["id"])) is None
    assert ctx.blobs.stat(copy) is None
