"""Zip downloads: streamed (stored entries, flat memory), plain names, a manifest that verifies the files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.auth.principal import Principal
from chairside.blobs.filesystem import FilesystemBlobStore
from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent, Media, Patient
from chairside.media.export import Entry, manifest, plan_entries, safe_name, stream_zip
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, Viewer, make_account


@pytest.fixture
def items(api: Client, patient: dict[str, Any], media_dir: Path) -> list[dict[str, Any]]:
    return [api.upload(media_dir / name, patient["id"], captured_at=datetime.fromisoformat(when)) for name, when in (
        ("clip.mp4", "2026-11-20T10:15:00+09:00"), ("photo.jpg", "2026-11-20T10:16:00+09:00"),
        ("photo.heic", "2026-11-20T10:16:30+09:00"))]


def _zip(r: httpx.Response) -> zipfile.ZipFile:
    assert r.status_code == 200, r.text
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_a_selection_downloads_as_a_zip_with_a_manifest(
    server: LiveServer, tenant: Tenant, items: list[dict[str, Any]], media_dir: Path
) -> None:
    r = httpx.post(f"{server.url}/api/v1/exports/zip", headers={"Authorization": f"Bearer {tenant.token}"},
                   json={"media_ids": [i["id"] for i in items]})
    assert r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"] and "content-length" not in r.headers
    z = _zip(r)
    root = z.namelist()[0].split("/")[0]
    assert root.endswith("_山田太郎_00001") and len(root.split("_")[0]) == 10
    assert r.headers["content-disposition"].endswith(f"{httpx.URL('/' + root).raw_path.decode()[1:]}.zip")
    assert z.namelist() == [f"{root}/{n}" for n in ("manifest.json", "manifest.csv", "2026-11-20_1015_clip.mp4",
                                                    "2026-11-20_1016_photo.jpg", "2026-11-20_1016_photo.heic")]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert z.getinfo(f"{root}/2026-11-20_1015_clip.mp4").date_time == (2026, 11, 20, 10, 15, 0)
    doc = json.loads(z.read(f"{root}/manifest.json"))
    assert doc["format"] == "chairside-export/1" and doc["count"] == 3
    for entry, item in zip(doc["items"], items, strict=True):
        data = z.read(f"{root}/{entry['file']}")
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] == item["sha256"]
        assert entry["size"] == len(data) and entry["media_id"] == item["id"] and entry["kind"] == item["kind"]
        assert entry["patient"]["name"] == "山田 太郎" and entry["patient"]["chart_no"] == "00001"
    assert doc["items"][0]["captured_at"] == "2026-11-20T10:15:00+09:00"
    assert z.read(f"{root}/2026-11-20_1016_photo.heic") == (media_dir / "photo.heic").read_bytes()
    raw = z.read(f"{root}/manifest.csv")
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [row["file"] for row in rows] == [e["file"] for e in doc["items"]]
    assert rows[0]["patient_name"] == "山田 太郎" and rows[0]["kind"] == "video"


def test_a_browser_link_with_ids_or_a_patient(
    server: LiveServer, viewer: Viewer, items: list[dict[str, Any]], patient: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.url, cookies={"cs_session": sign_in(server, viewer)}) as browser:
        one = _zip(browser.get("/api/v1/exports/zip", params={"ids": items[1]["id"]}))
        assert len(one.namelist()) == 3
        everything = _zip(browser.get("/api/v1/exports/zip", params={"patient_id": patient["id"]}))
        assert len(everything.namelist()) == 5
        assert browser.get("/api/v1/exports/zip").status_code == 422
        assert browser.get("/api/v1/exports/zip", params={"ids": "nonsense"}).status_code == 422


def test_names_that_file_browsers_accept() -> None:
    assert safe_name("山田 太郎") == "山田太郎"
    assert safe_name('a/b\\c:d*e?f"g<h>i|j') == "a_b_c_d_e_f_g_h_i_j"
    assert safe_name(" ..hidden. ") == "hidden"
    assert safe_name("\x00") == "_"


def test_several_patients_get_a_folder_each_and_clashing_names_a_number(ctx: Context, tenant: Tenant) -> None:
    when = datetime(2026, 11, 20, 1, 15, tzinfo=UTC)
    people = {pid: Patient(id=pid, contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0], chart_no=chart,
                           name=name, name_kana="", sex="unknown")
              for pid, chart, name in ((uuid.uuid4(), "1", "山田 太郎"), (uuid.uuid4(), "2", "佐藤/花子"))}
    items = [Media(id=uuid.uuid4(), patient_id=pid, clinic_id=tenant.clinic_ids[0], kind="image", mime="image/jpeg",
                   sha256="0" * 64, size=1, filename="IMG.JPG", captured_at=when) for pid in people for _ in range(2)]
    root, entries = plan_entries(items, people, when)
    assert root == "2026-11-20_1015_chairside"
    assert sorted(e.path for e in entries) == [
        "佐藤_花子_2/2026-11-20_1015_IMG.jpg", "佐藤_花子_2/2026-11-20_1015_IMG_2.jpg",
        "山田太郎_1/2026-11-20_1015_IMG.jpg", "山田太郎_1/2026-11-20_1015_IMG_2.jpg"]


def test_the_zip_streams_in_pieces_without_holding_a_whole_file(tmp_path: Path) -> None:
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    data = os.urandom(24 << 20)
    sha = hashlib.sha256(data).hexdigest()
    blobs.put_stream(sha, [data])
    when = datetime(2026, 11, 20, tzinfo=UTC)
    patient = Patient(id=uuid.uuid4(), chart_no="9", name="森 優子", name_kana="モリ ユウコ", sex="female")
    item = Media(id=uuid.uuid4(), patient_id=patient.id, clinic_id=uuid.uuid4(), kind="video", mime="video/mp4",
                 sha256=sha, size=len(data), filename="rec.mp4", captured_at=when)
    entries = [Entry("2026-11-20_0900_rec.mp4", item, patient)]
    who = Principal("viewer", uuid.uuid4(), None, name="dr")
    pieces = list(stream_zip(blobs, "root", entries, manifest(entries, who, when), when, chunk_size=1 << 20))
    assert max(len(p) for p in pieces) <= (1 << 20) + 4096
    z = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert z.read("root/2026-11-20_0900_rec.mp4") == data


def test_foreign_or_out_of_scope_ids_answer_like_missing_ones(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, items: list[dict[str, Any]]
) -> None:
    stranger = make_account(ctx, other_tenant, "stranger")
    branch = make_account(ctx, tenant, "branch", clinic_ids=[tenant.clinic_ids[1]])
    missing = str(uuid.uuid4())
    for who in (stranger, branch):
        h = {"Authorization": f"Bearer {sign_in(server, who)}"}
        foreign = httpx.post(f"{server.url}/api/v1/exports/zip", headers=h, json={"media_ids": [items[0]["id"]]})
        absent = httpx.post(f"{server.url}/api/v1/exports/zip", headers=h, json={"media_ids": [missing]})
        assert foreign.status_code == absent.status_code == 404
        assert {**foreign.json(), "instance": ""} == {**absent.json(), "instance": ""}
        by_patient = httpx.get(f"{server.url}/api/v1/exports/zip", headers=h,
                               params={"patient_id": items[0]["patient_id"]})
        assert by_patient.status_code == 404


def test_each_exported_item_is_in_the_audit_trail(
    ctx: Context, server: LiveServer, tenant: Tenant, items: list[dict[str, Any]]
) -> None:
    httpx.post(f"{server.url}/api/v1/exports/zip", headers={"Authorization": f"Bearer {tenant.token}"},
               json={"media_ids": [i["id"] for i in items]}).raise_for_status()
    with ctx.db.read() as s:
        logged = s.scalars(select(AuditEvent.media_id).where(AuditEvent.action == "media.export")).all()
    assert sorted(str(m) for m in logged) == sorted(i["id"] for i in items)
