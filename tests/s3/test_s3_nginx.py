"""nginx in front of two servers whose blob store is a real S3 server: media bytes come from a presigned URL that
nginx fetches (X-Accel-Redirect to an internal proxy location) and answer exactly what the app answers itself.

The HTTP checks are the very ones tests/scaleout/test_nginx.py runs on a filesystem store (imported here, run
against this module's `world`); the two that name the filesystem's internal paths have S3 counterparts below.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chairside.client import Client
from chairside.context import build_context
from chairside.deploy.nginx import NginxOptions, render
from chairside.settings import Settings
from tests.conftest import scratch_pg_database
from tests.factories import make_patient, make_tenant
from tests.s3.helpers import blob_url, fresh_bucket
from tests.scaleout.cluster import NGINX, Cluster, get
from tests.scaleout.test_nginx import (  # noqa: F401  (collected here: the same checks on an S3 store)
    World,
    test_foreign_and_unknown_ids_are_the_same_problem_json_404,
    test_head_has_the_length_and_no_body,
    test_if_match_is_answered_the_same,
    test_if_none_match_is_304_and_a_stale_one_is_the_file,
    test_if_range_current_etag_is_206_stale_or_date_is_whole,
    test_one_range_is_206_with_exactly_those_bytes,
    test_ranges_the_app_ignores_send_the_whole_file_through_nginx_too,
    test_reads_through_nginx_are_still_audited,
    test_thumbnail_is_sent_whole_even_with_a_range_and_304_on_its_etag,
    test_unsatisfiable_range_is_416_problem_json_from_the_app,
    test_whole_file_is_the_recording_with_its_strong_etag,
)
from tests.seaweed import SeaweedS3, seaweed_s3  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not NGINX.exists(), reason="Debian's nginx is not installed")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, media_dir: Path, seaweed_s3: SeaweedS3) -> Iterator[World]:  # noqa: F811
    root = tmp_path_factory.mktemp("s3cluster")
    url_of_blobs = blob_url(seaweed_s3, fresh_bucket(seaweed_s3))
    with scratch_pg_database() as url:
        ctx = build_context(Settings.load(environ={}, data_dir=root / "data", database_url=url))
        tenant = make_tenant(ctx)
        foreign = make_tenant(ctx, name="よその歯科", clinics=1)
        patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
        ctx.db.dispose()
        cluster = Cluster(root, url, blob_url=url_of_blobs, env=seaweed_s3.env())
        nginx = cluster.nginx  # the configuration `chairside deploy nginx-config --data` prints for an S3 store
        nginx.conf.write_text(render(NginxOptions(
            listen=nginx.port, upstreams=[a.url for a in cluster.apps], host="127.0.0.1", worker_processes="2",
            s3_endpoint=seaweed_s3.endpoint_url)))
        with cluster:
            assert cluster.direct is not None
            with Client(cluster.direct.url, tenant.token) as api:
                video = api.upload(media_dir / "clip.mp4", patient.id)
                photo = api.upload(media_dir / "photo.jpg", patient.id)
            yield World(cluster, tenant.token, foreign.token, video, photo, (media_dir / "clip.mp4").read_bytes())


def test_the_app_behind_nginx_answers_a_presigned_redirect_and_no_body(world: World) -> None:
    app = world.cluster.apps[0].url
    sha = hashlib.sha256(world.video_bytes).hexdigest()
    r = get(f"{app}/api/v1/media/{world.video['id']}/content", world.token, Range="bytes=0-9")
    assert r.status_code == 206 and r.content == b""
    target = r.headers["x-accel-redirect"]
    assert target.startswith("/_chairside_s3/range/") and f"/blobs/{sha}?" in target and "X-Amz-Signature=" in target
    whole = get(f"{app}/api/v1/media/{world.video['id']}/content", world.token)
    assert whole.headers["x-accel-redirect"].startswith("/_chairside_s3/whole/") and whole.content == b""
    refused = get(f"{app}/api/v1/media/{world.video['id']}/content", world.foreign_token)
    assert refused.status_code == 404 and "x-accel-redirect" not in refused.headers


def test_the_s3_locations_are_not_reachable_from_outside(world: World) -> None:
    app = world.cluster.apps[0].url
    target = get(f"{app}/api/v1/media/{world.video['id']}/content", world.token).headers["x-accel-redirect"]
    r = httpx.get(world.front + target)  # even with a valid signature: internal only
    assert r.status_code == 404 and world.video_bytes[:100] not in r.content


def test_a_blob_missing_from_the_bucket_is_problem_json_not_s3_xml(world: World, seaweed_s3: SeaweedS3) -> None:  # noqa: F811
    """A media row whose object is gone (a bucket mishap): nginx answers the app's kind of error, not S3's XML."""
    from chairside.db.engine import Database
    from chairside.db.models import Media

    db = Database(world.cluster.apps[0].env["CHAIRSIDE_DATABASE_URL"])
    try:
        with db.session() as s:
            item = s.get(Media, uuid.UUID(str(world.video["id"])))
            assert item is not None
            ghost = Media(**{c.name: getattr(item, c.name) for c in Media.__table__.columns
                             if c.name not in ("id", "sha256")}, id=uuid.uuid4(), sha256="f" * 64)
            s.add(ghost)
            ghost_id = ghost.id
        r = httpx.get(f"{world.front}/api/v1/media/{ghost_id}/content",
                      headers={"Authorization": f"Bearer {world.token}"})
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        assert "ストレージ" in r.json()["detail"]
    finally:
        db.dispose()


@pytest.mark.skipif(not NGINX.exists(), reason="Debian's nginx is not installed")
def test_the_command_writes_the_s3_locations_for_servers_on_an_s3_store(tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.scaleout.cluster import CHAIRSIDE

    prefix = tmp_path / "prefix"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    env = {**os.environ, "CHAIRSIDE_BLOB_URL": "s3://media/blobs?endpoint_url=http://127.0.0.1:9333"}
    made = subprocess.run([str(CHAIRSIDE), "deploy", "nginx-config", "--listen", "18081", "--upstream",
                           "http://127.0.0.1:8001", "--data", str(tmp_path / "data")],
                          capture_output=True, text=True, check=True, env=env)
    conf = prefix / "nginx.conf"
    conf.write_text(made.stdout)
    ok = subprocess.run([str(NGINX), "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "server 127.0.0.1:9333;" in made.stdout and 'proxy_set_header Host "127.0.0.1:9333";' in made.stdout
    assert made.stdout.count("internal;") == 2 and "/_chairside/range" not in made.stdout
    with pytest.raises(ValueError, match="S3 endpoint"):
        render(NginxOptions(listen=8080, upstreams=["127.0.0.1:8001"], s3_endpoint="ftp://127.0.0.1:9333"))
