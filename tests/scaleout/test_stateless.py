"""Any request may land on any server: two `chairside cloud serve` processes on one PostgreSQL database,
requests alternating between them (and through nginx), nothing kept in one process's memory matters.

Checked here: a tus upload begun on one server and continued on the other after a cut; the
per-upload lock held by one server is honoured by the other; the one-device rule; the sign-in
throttle counts wrong passwords made on either server; the changes feed's long poll on one
server wakes for a write made on the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from chairside.context import build_context
from chairside.settings import Settings
from chairside.uploads.clusterlock import lock_key
from tests.conftest import scratch_pg_database
from tests.factories import Viewer, make_account, make_patient, make_relay_token, make_tenant
from tests.scaleout.cluster import NGINX, AppServer, Cluster
from tests.uploads.helpers import TUS, create, head, patch, raw_patch_then_cut

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not NGINX.exists(), reason="Debian's nginx is not installed")]


@dataclass
class Two:
    cluster: Cluster
    token: str
    relay_token: str
    patient_id: str
    viewer: Viewer
    url: str  # the database

    @property
    def a(self) -> str:
        return self.cluster.apps[0].url

    @property
    def b(self) -> str:
        return self.cluster.apps[1].url


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Two]:
    root = tmp_path_factory.mktemp("two")
    with scratch_pg_database() as url:
        ctx = build_context(Settings.load(environ={}, data_dir=root / "data", database_url=url))
        tenant = make_tenant(ctx)
        patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
        relay_token = make_relay_token(ctx, tenant.clinic_ids[0])
        viewer = make_account(ctx, tenant, "two-servers")
        ctx.db.dispose()
        env = {"CHAIRSIDE_UPLOAD_LOCK_WAIT_S": "0.5", "CHAIRSIDE_SIGNIN_FREE_FAILURES": "3",
               "CHAIRSIDE_SIGNIN_MAX_WAIT_S": "600"}
        with Cluster(root, url, direct=False, env=env) as cluster:
            yield Two(cluster, tenant.token, relay_token, str(patient.id), viewer, url)


def _path_on(base: str, location: str) -> str:
    return base + urlsplit(location).path


def test_an_upload_begun_on_one_server_is_finished_on_the_other_after_a_cut(two: Two, media_dir: Path) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    r = create(two.a, two.token, len(data), two.patient_id, filename="cut.mp4")
    assert r.status_code == 201
    on_a, on_b = _path_on(two.a, r.headers["Location"]), _path_on(two.b, r.headers["Location"])
    third = len(data) // 3
    assert patch(on_a, two.token, 0, data[:third]).status_code == 204
    raw_patch_then_cut(on_b, two.token, third, len(data) - third, data[third:2 * third])  # cut on B
    offset = int(head(on_a, two.token).headers["Upload-Offset"])  # asked on A
    assert third <= offset <= 2 * third
    done = patch(on_a if offset % 2 else on_b, two.token, offset, data[offset:])
    assert done.status_code == 204, done.text
    assert int(done.headers["Upload-Offset"]) == len(data)
    # the stored item, read through nginx (either server), is the file, once
    items = httpx.get(f"{two.cluster.nginx.url}/api/v1/patients/{two.patient_id}/media",
                      headers={"Authorization": f"Bearer {two.token}"}).json()["items"]
    mine = [m for m in items if m["filename"] == "cut.mp4"]
    assert len(mine) == 1 and mine[0]["sha256"] == hashlib.sha256(data).hexdigest()
    body = httpx.get(f"{two.cluster.nginx.url}/api/v1/media/{mine[0]['id']}/content",
                     headers={"Authorization": f"Bearer {two.token}"}).content
    assert body == data


def test_a_patch_in_progress_on_one_server_locks_the_upload_on_the_other(two: Two) -> None:
    length = 4 << 20
    r = create(two.a, two.token, length, two.patient_id, filename="locked.bin")
    assert r.status_code == 201, r.text
    on_a, on_b = _path_on(two.a, r.headers["Location"]), _path_on(two.b, r.headers["Location"])
    parts = urlsplit(on_a)
    request = (f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {two.token}\r\n"
               f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Length: {length}\r\n"
               "Content-Type: application/offset+octet-stream\r\n\r\n").encode()
    sock = socket.create_connection((parts.hostname, parts.port))
    try:
        sock.sendall(request + b"\0" * 65536)  # A holds the upload's lock while the body keeps coming
        deadline = time.monotonic() + 30
        while True:  # A has taken the lock once B is refused (or B wrote nothing: the offset stays 0)
            other = patch(on_b, two.token, 0, b"\1" * 1024)
            if other.status_code in (423, 409) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert other.status_code == 423, other.text
        assert other.headers["content-type"] == "application/problem+json"
        assert other.json()["type"].endswith("/upload-locked")
    finally:
        sock.close()
    # A kept what arrived; the client resumes anywhere from the offset the servers agree on
    deadline = time.monotonic() + 30
    while True:
        r_a, r_b = head(on_a, two.token), head(on_b, two.token)
        if r_a.headers["Upload-Offset"] == r_b.headers["Upload-Offset"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r_a.headers["Upload-Offset"] == r_b.headers["Upload-Offset"]
    httpx.delete(on_b, headers={**TUS, "Authorization": f"Bearer {two.token}"})


def test_the_upload_lock_is_the_databases_not_a_local_files(two: Two, tmp_path: Path) -> None:
    """A server on another host (here: a data folder of its own, so no shared file and no shared flock)
    is still refused while a PATCH of the upload runs elsewhere: the lock lives in PostgreSQL."""
    other_host = AppServer(tmp_path / "elsewhere", two.url, env={"CHAIRSIDE_UPLOAD_LOCK_WAIT_S": "0.5"},
                           name="elsewhere").start()
    try:
        length = 4 << 20
        r = create(two.a, two.token, length, two.patient_id, filename="lock-db.bin")
        assert r.status_code == 201, r.text
        on_a, far = _path_on(two.a, r.headers["Location"]), _path_on(other_host.url, r.headers["Location"])
        with _patch_held_open(on_a, two.token, length, two.url):
            refused = patch(far, two.token, 0, b"\1" * 1024)
        assert refused.status_code == 423, refused.text
        assert refused.json()["type"].endswith("/upload-locked")
        # once A's PATCH has ended, the lock is free: the far server goes on to its own (missing) file
        deadline = time.monotonic() + 30
        while (after := patch(far, two.token, int(head(on_a, two.token).headers["Upload-Offset"]),
                              b"\1")).status_code == 423 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert after.status_code == 404, after.text
    finally:
        other_host.stop()
    httpx.delete(on_a, headers={**TUS, "Authorization": f"Bearer {two.token}"})


@contextlib.contextmanager
def _patch_held_open(url: str, token: str, length: int, database_url: str) -> Iterator[None]:
    """A PATCH whose body is still arriving: its server holds the upload's lock (seen in pg_locks) throughout."""
    parts = urlsplit(url)
    key = lock_key(parts.path.rsplit("/", 1)[1]) & (2**64 - 1)
    request = (f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
               f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Length: {length}\r\n"
               "Content-Type: application/offset+octet-stream\r\n\r\n").encode()
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with socket.create_connection((parts.hostname, parts.port)) as sock, psycopg.connect(conninfo) as db:
        sock.sendall(request + b"\0" * 65536)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                             "AND classid = %s::oid AND objid = %s::oid", (str(key >> 32), str(key & 0xFFFFFFFF))
                             ).fetchone()
            db.rollback()
            if row and row[0]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the PATCH never took the upload's lock")
        yield


def _sign_in(base: str, viewer: Viewer, device: str, takeover: bool = False,
             password: str | None = None) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/sessions", json={"login": viewer.login, "password": password or viewer.password,
                                                       "device_name": device, "takeover": takeover})


def test_one_device_rule_holds_across_servers(two: Two) -> None:
    first = _sign_in(two.a, two.viewer, "Reception")
    assert first.status_code == 201
    token = first.json()["token"]
    assert httpx.get(f"{two.b}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert _sign_in(two.b, two.viewer, "Chair 3").status_code == 409  # in use: told so on the other server
    second = _sign_in(two.b, two.viewer, "Chair 3", takeover=True)
    assert second.status_code == 201
    for base in (two.a, two.b):
        assert httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert httpx.get(f"{base}/api/v1/me",
                         headers={"Authorization": f"Bearer {second.json()['token']}"}).status_code == 200


def test_the_sign_in_throttle_counts_wrong_passwords_on_every_server(two: Two, tmp_path: Path) -> None:
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "seed", database_url=two.url), upgrade=False)
    try:
        target = make_account(ctx, make_tenant(ctx, name="別の歯科", clinics=1), "throttled")
    finally:
        ctx.db.dispose()
    statuses = [_sign_in(base, target, "d", password="wrong").status_code
                for base in (two.a, two.b, two.a, two.b, two.a, two.b)]
    assert statuses[:3] == [401, 401, 401]  # three free failures in all, not three per server
    assert statuses[-1] == 429
    assert _sign_in(two.a, target, "d").status_code == 429  # even the right password waits, on either server


def test_a_long_poll_on_one_server_wakes_for_a_write_on_the_other(two: Two) -> None:
    auth = {"Authorization": f"Bearer {two.relay_token}"}
    head_seq = httpx.get(f"{two.a}/api/v1/feed", params={"after": 0, "limit": 1}, headers=auth).json()["head"]
    got: dict[str, object] = {}

    def poll() -> None:
        got["page"] = httpx.get(f"{two.a}/api/v1/feed", params={"after": head_seq, "wait": 60}, headers=auth,
                                timeout=90).json()

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)  # the poll is waiting on A (no assertion rests on this pause: the poll would answer anyway)
    chart = uuid.uuid4().hex[:8]
    created = httpx.post(f"{two.b}/api/v1/patients", headers={"Authorization": f"Bearer {two.token}"},
                         json={"clinic_id": str(_clinic(two)), "chart_no": chart, "name": "別 花子",
                               "name_kana": "ベツ ハナコ"})
    assert created.status_code == 201, created.text
    # Woken by the write, not by the end of its 60 s wait (a poll that only heard of writes made in its own
    # process would still be waiting: a bound, not a speed measurement).
    waiter.join(timeout=30)
    assert not waiter.is_alive(), "the long poll on A did not wake for the write on B"
    page = got["page"]
    assert isinstance(page, dict)
    assert any(e["kind"] == "patient" and e["id"] == created.json()["id"] for e in page["items"])


def _clinic(two: Two) -> str:
    r = httpx.get(f"{two.a}/api/v1/patients/{two.patient_id}", headers={"Authorization": f"Bearer {two.token}"})
    return str(r.json()["clinic_id"])
