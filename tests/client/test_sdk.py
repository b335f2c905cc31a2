from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

import chairside.client
from chairside.client import Client, UploadFailed, uuid7
from tests.conftest import LiveServer, Tenant
from tests.netem import Faults, WanProxy


def test_public_surface_is_pinned() -> None:
    assert chairside.client.__all__ == ["ChairsideError", "Client", "PinError", "PinMismatch", "Progress",
                                        "UploadFailed", "fetch_fingerprint", "uuid7"]


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(100)]
    assert all(i.version == 7 for i in ids)
    assert [i.bytes[:6] for i in ids] == sorted(i.bytes[:6] for i in ids)


def test_capture_software_flow_create_upload_list_stream_thumbnail(
    api: Client, tenant: Tenant, media_dir: Path, tmp_path: Path
) -> None:
    patient = api.create_patient(tenant.clinic_ids[0], "555", "中村 誠", "ナカムラ マコト")
    seen: list[tuple[int, int]] = []
    item = api.upload(media_dir / "clip.mp4", patient["id"], progress=lambda done, total: seen.append((done, total)),
                      chunk_size=50_000)
    size = (media_dir / "clip.mp4").stat().st_size
    assert seen[-1] == (size, size) and len(seen) > 2
    assert [m["id"] for m in api.list_media(patient["id"])] == [item["id"]]
    middle = b"".join(api.iter_content(item["id"], 1000, 1999))
    assert middle == (media_dir / "clip.mp4").read_bytes()[1000:2000]
    out = api.download(item["id"], tmp_path / "copy.mp4")
    assert out.read_bytes() == (media_dir / "clip.mp4").read_bytes()
    assert api.thumbnail(item["id"])[:2] == b"\xff\xd8"


def test_upload_resumes_by_itself_after_a_cut_and_resends_little(
    server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    faults = Faults(cut_after_bytes=len(data) // 2)
    with WanProxy(server.port, faults) as wan, Client(wan.url, tenant.token) as client:
        chunk = 32_000
        item = client.upload(media_dir / "clip.mp4", patient["id"], chunk_size=chunk, retry_delay=0.05)
    assert faults.cuts == 1
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    # What crossed the line beyond the file itself is headers plus at most one chunk resent.
    assert faults.forwarded - len(data) < chunk + 200 * (len(data) // chunk + 10)


def test_upload_of_an_already_stored_media_id_sends_nothing(
    api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    media_id = uuid.uuid4()
    first = api.upload(media_dir / "photo.jpg", patient["id"], media_id=media_id)
    calls: list[int] = []
    again = api.upload(media_dir / "photo.jpg", patient["id"], media_id=media_id, progress=lambda d, t: calls.append(d))
    assert again["id"] == first["id"] and calls == [first["size"]]


def test_refused_upload_raises_with_the_servers_message(
    api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    with pytest.raises(UploadFailed) as e:
        api.upload(media_dir / "notes.txt", patient["id"])
    assert e.value.status == 415
    assert "not a photo or video" in e.value.detail


def test_give_up_after_retries_when_the_server_is_gone(tenant: Tenant, media_dir: Path) -> None:
    from tests.conftest import free_port

    with Client(f"http://127.0.0.1:{free_port()}", tenant.token) as client, pytest.raises(UploadFailed) as e:
        client.upload(media_dir / "photo.jpg", str(uuid.uuid4()), max_retries=2, retry_delay=0.01)
    assert "after 2 retries" in e.value.detail
