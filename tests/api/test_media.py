from __future__ import annotations

import io
import random
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from chairside.client import ChairsideError, Client
from chairside.context import Context
from chairside.media.ranges import Unsatisfiable, parse_range
from tests.conftest import LiveServer
from tests.factories import Tenant


@pytest.fixture
def video(api: Client, patient: dict[str, Any], media_dir: Path) -> dict[str, Any]:
    return api.upload(media_dir / "clip.mp4", patient["id"])


def _get(server: LiveServer, tenant: Tenant, path: str, **headers: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {tenant.token}", **headers})


def test_media_detail_has_the_promised_fields(api: Client, video: dict[str, Any]) -> None:
    item = api.get_media(video["id"])
    for field in ("id", "kind", "sha256", "size", "duration_s", "width", "height", "fps", "codec", "captured_at"):
        assert item[field] is not None, field


def test_content_without_range_is_the_whole_file_with_validators(
    server: LiveServer, tenant: Tenant, video: dict[str, Any], media_dir: Path
) -> None:
    r = _get(server, tenant, f"/api/v1/media/{video['id']}/content")
    assert r.status_code == 200
    assert r.content == (media_dir / "clip.mp4").read_bytes()
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == f'"{video["sha256"]}"'
    assert r.headers["cache-control"].startswith("private")
    assert r.headers["content-type"] == "video/mp4"


def test_random_ranges_return_exactly_those_bytes(
    server: LiveServer, tenant: Tenant, video: dict[str, Any], media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    rng = random.Random(7)
    for _ in range(20):
        start = rng.randrange(len(data))
        end = min(len(data) - 1, start + rng.randrange(1, 300_000))
        r = _get(server, tenant, f"/api/v1/media/{video['id']}/content", Range=f"bytes={start}-{end}")
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
        assert r.content == data[start:end + 1]
    r = _get(server, tenant, f"/api/v1/media/{video['id']}/content", Range="bytes=-100")
    assert r.status_code == 206 and r.content == data[-100:]
    r = _get(server, tenant, f"/api/v1/media/{video['id']}/content", Range=f"bytes=100-{10 * len(data)}")
    assert r.status_code == 206 and r.content == data[100:]


@pytest.mark.parametrize("spec", ["bytes=-0", "bytes={size}-", "bytes={size}-{size2}"])
def test_unsatisfiable_ranges_answer_416_with_the_size(
    server: LiveServer, tenant: Tenant, video: dict[str, Any], spec: str
) -> None:
    size = video["size"]
    r = _get(server, tenant, f"/api/v1/media/{video['id']}/content",
             Range=spec.format(size=size, size2=size + 10))
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    assert r.headers["content-type"] == "application/problem+json"
    assert str(size) in r.json()["detail"]


def test_if_range_with_a_stale_etag_sends_the_whole_file(
    server: LiveServer, tenant: Tenant, video: dict[str, Any]
) -> None:
    path = f"/api/v1/media/{video['id']}/content"
    fresh = _get(server, tenant, path, Range="bytes=0-9", **{"If-Range": f'"{video["sha256"]}"'})
    stale = _get(server, tenant, path, Range="bytes=0-9", **{"If-Range": '"0000"'})
    assert (fresh.status_code, len(fresh.content)) == (206, 10)
    assert (stale.status_code, len(stale.content)) == (200, video["size"])


def test_if_none_match_answers_304(server: LiveServer, tenant: Tenant, video: dict[str, Any]) -> None:
    r = _get(server, tenant, f"/api/v1/media/{video['id']}/content", **{"If-None-Match": f'"{video["sha256"]}"'})
    assert r.status_code == 304 and r.content == b""


def test_head_gives_length_and_no_body(server: LiveServer, tenant: Tenant, video: dict[str, Any]) -> None:
    r = httpx.head(f"{server.url}/api/v1/media/{video['id']}/content",
                   headers={"Authorization": f"Bearer {tenant.token}"})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(video["size"]) and r.content == b""


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 100, None), ("bytes=0-0", 100, (0, 0)), ("bytes=90-", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)), ("bytes=-1000", 100, (0, 99)), ("bytes=5-2", 100, None),
    ("items=0-5", 100, None), ("bytes=0-1,5-6", 100, None), ("bytes=abc", 100, None),
])
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    r = parse_range(header, size)
    assert (None if r is None else (r.start, r.end)) == expected


@pytest.mark.parametrize("header", ["bytes=-0", "bytes=100-", "bytes=100-200"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


def test_video_thumbnail_is_a_frame_from_the_clip_not_the_black_lead(
    api: Client, video: dict[str, Any]
) -> None:
    img = Image.open(io.BytesIO(api.thumbnail(video["id"])))
    assert img.format == "JPEG"
    assert ImageStat.Stat(img.convert("L")).mean[0] > 20


def test_trash_hides_restore_returns_and_purge_removes_the_blob(
    ctx: Context, api: Client, patient: dict[str, Any], video: dict[str, Any], media_dir: Path
) -> None:
    api.trash(video["id"])
    assert api.list_media(patient["id"]) == []
    assert api.get_media(video["id"])["deleted_at"] is not None
    api.restore(video["id"])
    assert [m["id"] for m in api.list_media(patient["id"])] == [video["id"]]
    # A second item with the same bytes shares the blob: purging one must keep it for the other.
    twin = api.upload(media_dir / "clip.mp4", patient["id"])
    assert twin["sha256"] == video["sha256"]
    from chairside.media.trash import purge_media
    api.trash(video["id"])
    assert purge_media(ctx.db, ctx.blobs, uuid.UUID(video["id"])) is True
    assert ctx.blobs.stat(video["sha256"]) is not None
    with pytest.raises(ChairsideError) as e:
        api.get_media(video["id"])
    assert e.value.status == 404
    api.trash(twin["id"])
    purge_media(ctx.db, ctx.blobs, uuid.UUID(twin["id"]))
    assert ctx.blobs.stat(video["sha256"]) is None
    assert list(ctx.blobs.iter_hashes()) == []


def test_listing_pages_with_a_cursor(api: Client, patient: dict[str, Any], media_dir: Path,
                                     server: LiveServer, tenant: Tenant) -> None:
    ids = {api.upload(media_dir / "photo.png", patient["id"])["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{server.url}/api/v1/patients/{patient['id']}/media", params=params,
                         headers={"Authorization": f"Bearer {tenant.token}"}).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 and set(seen) == ids
    assert api.list_media(patient["id"], kind="video") == []


def test_another_contracts_media_is_404_everywhere(
    server: LiveServer, video: dict[str, Any], other_tenant: Tenant
) -> None:
    for path in ("", "/content", "/thumbnail"):
        r = _get(server, other_tenant, f"/api/v1/media/{video['id']}{path}")
        assert r.status_code == 404, path
        assert "etag" not in r.headers
