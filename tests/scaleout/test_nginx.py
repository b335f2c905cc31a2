"""nginx in front of two `chairside cloud serve` processes on PostgreSQL: media bytes sent by nginx
(X-Accel-Redirect) answer exactly what the app answers when it sends them itself.

One cluster per module: two app servers with CHAIRSIDE_OFFLOAD=nginx behind nginx, and a third
server on the same database and blob folder reached directly, with offload off. Every request is
made to both; status, the headers a client relies on, and the bytes must be identical, and right.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chairside.client import Client
from chairside.context import build_context
from chairside.settings import Settings
from tests.conftest import scratch_pg_database
from tests.factories import make_patient, make_tenant
from tests.scaleout.cluster import NGINX, Cluster, get

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not NGINX.exists(), reason="Debian's nginx is not installed")]

COMPARED = ("content-type", "content-length", "content-range", "etag", "accept-ranges", "cache-control",
            "content-disposition", "last-modified")


@dataclass
class World:
    cluster: Cluster
    token: str
    foreign_token: str
    video: dict[str, object]
    photo: dict[str, object]
    video_bytes: bytes

    @property
    def front(self) -> str:
        return self.cluster.nginx.url

    @property
    def direct(self) -> str:
        assert self.cluster.direct is not None
        return self.cluster.direct.url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Iterator[World]:
    root = tmp_path_factory.mktemp("cluster")
    with scratch_pg_database() as url:
        ctx = build_context(Settings.load(environ={}, data_dir=root / "data", database_url=url))
        tenant = make_tenant(ctx)
        foreign = make_tenant(ctx, name="よその歯科", clinics=1)
        patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
        ctx.db.dispose()
        with Cluster(root, url) as cluster:
            assert cluster.direct is not None
            with Client(cluster.direct.url, tenant.token) as api:
                video = api.upload(media_dir / "clip.mp4", patient.id)
                photo = api.upload(media_dir / "photo.jpg", patient.id)
            yield World(cluster, tenant.token, foreign.token, video, photo, (media_dir / "clip.mp4").read_bytes())


def both(w: World, path: str, token: str | None = None, method: str = "GET", **headers: str) -> httpx.Response:
    """The same request direct and through nginx: asserts the answers are the same, returns nginx's."""
    hdrs = {"Authorization": f"Bearer {token or w.token}", **headers}
    direct = httpx.request(method, w.direct + path, headers=hdrs, timeout=60)
    front = httpx.request(method, w.front + path, headers=hdrs, timeout=60)
    assert front.status_code == direct.status_code, (path, headers, front.text[:300])
    for name in COMPARED:
        assert front.headers.get(name) == direct.headers.get(name), (name, path, headers)
    assert front.content == direct.content, (path, headers)
    assert "x-accel-redirect" not in front.headers
    return front


def test_whole_file_is_the_recording_with_its_strong_etag(world: World) -> None:
    r = both(world, f"/api/v1/media/{world.video['id']}/content")
    assert r.status_code == 200
    assert r.content == world.video_bytes
    assert r.headers["etag"] == f'"{hashlib.sha256(world.video_bytes).hexdigest()}"'
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["accept-ranges"] == "bytes"
    assert "last-modified" not in r.headers


@pytest.mark.parametrize("spec", ["bytes=0-99", "bytes=1000-", "bytes=-50", "bytes=7-7", "bytes=100-99999999"])
def test_one_range_is_206_with_exactly_those_bytes(world: World, spec: str) -> None:
    r = both(world, f"/api/v1/media/{world.video['id']}/content", Range=spec)
    assert r.status_code == 206
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.headers["content-range"])
    assert m is not None
    start, end, size = map(int, m.groups())
    assert size == len(world.video_bytes)
    assert r.content == world.video_bytes[start:end + 1]


@pytest.mark.parametrize("spec", ["bytes=99999999-", "bytes=-0"])
def test_unsatisfiable_range_is_416_problem_json_from_the_app(world: World, spec: str) -> None:
    r = both(world, f"/api/v1/media/{world.video['id']}/content", Range=spec)
    assert r.status_code == 416
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["content-range"] == f"bytes */{len(world.video_bytes)}"
    assert r.json()["status"] == 416


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=5-2", "items=0-5", "bytes=abc"])
def test_ranges_the_app_ignores_send_the_whole_file_through_nginx_too(world: World, spec: str) -> None:
    r = both(world, f"/api/v1/media/{world.video['id']}/content", Range=spec)
    assert r.status_code == 200
    assert r.content == world.video_bytes


def test_if_range_current_etag_is_206_stale_or_date_is_whole(world: World) -> None:
    path = f"/api/v1/media/{world.video['id']}/content"
    etag = both(world, path, method="HEAD").headers["etag"]
    assert both(world, path, Range="bytes=10-19", **{"If-Range": etag}).status_code == 206
    stale = both(world, path, Range="bytes=10-19", **{"If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == world.video_bytes
    weak = both(world, path, Range="bytes=10-19", **{"If-Range": "W/" + etag})
    assert weak.status_code == 200
    dated = both(world, path, Range="bytes=10-19", **{"If-Range": "Mon, 07 Dec 2026 00:00:00 GMT"})
    assert dated.status_code == 200


def test_if_none_match_is_304_and_a_stale_one_is_the_file(world: World) -> None:
    path = f"/api/v1/media/{world.video['id']}/content"
    etag = both(world, path, method="HEAD").headers["etag"]
    r = both(world, path, **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert both(world, path, **{"If-None-Match": '"other"'}).status_code == 200
    assert both(world, path, **{"If-Modified-Since": "Mon, 07 Dec 2099 00:00:00 GMT"}).status_code == 200


def test_if_match_is_answered_the_same(world: World) -> None:
    path = f"/api/v1/media/{world.video['id']}/content"
    assert both(world, path, **{"If-Match": '"not-it"'}).status_code == 200  # the app ignores If-Match: so does nginx
    assert both(world, path, **{"If-Unmodified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"}).status_code == 200


def test_head_has_the_length_and_no_body(world: World) -> None:
    r = both(world, f"/api/v1/media/{world.video['id']}/content", method="HEAD")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == len(world.video_bytes)


def test_thumbnail_is_sent_whole_even_with_a_range_and_304_on_its_etag(world: World) -> None:
    path = f"/api/v1/media/{world.photo['id']}/thumbnail"
    r = both(world, path)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    ranged = both(world, path, Range="bytes=0-9")
    assert ranged.status_code == 200 and ranged.content == r.content
    assert both(world, path, **{"If-None-Match": r.headers["etag"]}).status_code == 304


def test_foreign_and_unknown_ids_are_the_same_problem_json_404(world: World) -> None:
    foreign = both(world, f"/api/v1/media/{world.video['id']}/content", token=world.foreign_token)
    unknown = both(world, f"/api/v1/media/{uuid.uuid4()}/content")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.headers["content-type"] == "application/problem+json"
    assert {**foreign.json(), "instance": None} == {**unknown.json(), "instance": None}
    assert both(world, f"/api/v1/media/{world.photo['id']}/thumbnail", token=world.foreign_token).status_code == 404
    assert both(world, f"/api/v1/media/{world.video['id']}/content", token="not-a-token").status_code == 401


def test_the_app_behind_nginx_answers_a_redirect_and_no_body(world: World) -> None:
    app = world.cluster.apps[0].url
    r = get(f"{app}/api/v1/media/{world.video['id']}/content", world.token, Range="bytes=0-9")
    assert r.status_code == 206 and r.content == b""
    sha = hashlib.sha256(world.video_bytes).hexdigest()
    assert r.headers["x-accel-redirect"] == f"/_chairside/range/{sha[:2]}/{sha[2:4]}/{sha}"
    whole = get(f"{app}/api/v1/media/{world.video['id']}/content", world.token)
    assert whole.headers["x-accel-redirect"].startswith("/_chairside/whole/") and whole.content == b""
    refused = get(f"{app}/api/v1/media/{world.video['id']}/content", world.foreign_token)
    assert refused.status_code == 404 and "x-accel-redirect" not in refused.headers


def test_internal_locations_are_not_reachable_from_outside(world: World) -> None:
    sha = hashlib.sha256(world.video_bytes).hexdigest()
    for where in ("range", "whole"):
        r = httpx.get(f"{world.front}/_chairside/{where}/{sha[:2]}/{sha[2:4]}/{sha}")
        assert r.status_code == 404 and world.video_bytes[:100] not in r.content


def test_reads_through_nginx_are_still_audited(world: World) -> None:
    from sqlalchemy import func, select

    from chairside.db.engine import Database
    from chairside.db.models import AuditEvent

    db = Database(world.cluster.apps[0].env["CHAIRSIDE_DATABASE_URL"])
    try:
        def count() -> int:
            with db.read() as s:
                media_id = uuid.UUID(str(world.photo["id"]))
                return int(s.scalar(select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.action == "media.content", AuditEvent.media_id == media_id)) or 0)
        before = count()
        assert httpx.get(f"{world.front}/api/v1/media/{world.photo['id']}/content",
                         headers={"Authorization": f"Bearer {world.token}"}).status_code == 200
        assert count() == before + 1
    finally:
        db.dispose()


def test_metrics_are_not_passed_from_outside(world: World) -> None:
    hidden = httpx.get(f"{world.front}/metrics")
    assert hidden.status_code == 404 and hidden.json()["status"] == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    assert "chairside_http_request_duration_seconds" in httpx.get(f"{world.cluster.apps[0].url}/metrics").text


def test_requests_are_spread_over_both_servers(world: World) -> None:
    for _ in range(12):
        assert httpx.get(f"{world.front}/api/v1/health").status_code == 200
    logs = [a.log.read_text() for a in world.cluster.apps]
    assert all("/api/v1/health" in text for text in logs), "every app server took requests"
