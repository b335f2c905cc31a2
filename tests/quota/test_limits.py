"""Over the limit: new videos are refused with the figures and the ways out; photos always pass;
a recording that began below the limit is saved in full; a video under a photo's name is caught."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from chairside.client import Client, UploadFailed
from chairside.context import Context
from chairside.db.models import Media
from chairside.errors import Problem
from chairside.quota import usage
from tests.conftest import LiveServer
from tests.factories import Tenant
from tests.quota.helpers import HOUR_MS, counter, set_counter
from tests.uploads import helpers as tus

PLAN_MS = 100 * HOUR_MS


def _upload_raw(server: LiveServer, token: str, path: Path, patient_id: str, filename: str,
                **meta: str) -> httpx.Response:
    """Create, then send every byte in one PATCH; answer the PATCH's response (or the refused creation)."""
    data = path.read_bytes()
    created = tus.create(server.url, token, len(data), patient_id, filename=filename, **meta)
    if created.status_code != 201:
        return created
    return tus.patch(server.url + created.headers["Location"], token, 0, data)


def _media_count(ctx: Context) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(Media)) or 0


@pytest.mark.parametrize("used_ms", [PLAN_MS, PLAN_MS + 50 * HOUR_MS + 30 * 60_000])
def test_a_new_video_at_or_over_the_limit_is_refused_at_creation_with_the_figures_and_the_ways_out(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any], used_ms: int
) -> None:
    set_counter(ctx, tenant.contract_id, used_ms)
    r = tus.create(server.url, tenant.token, 10_000_000, patient["id"], filename="rec.mp4")
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["tus-resumable"] == "1.0.0"
    body = r.json()
    assert body["type"].endswith("/video-quota-full")
    assert body["plan_hours"] == 100
    assert body["used_hours"] == pytest.approx(used_ms / HOUR_MS)
    shown = f"{used_ms / HOUR_MS:g}"
    assert f"{shown} of the 100 video hours" in body["detail"]
    assert "larger plan" in body["detail"] and "export" in body["detail"] and "delete" in body["detail"]
    assert body["ways_out"] == ["larger-plan", "export-and-delete-videos"]


def test_a_video_is_told_by_its_filetype_as_well_as_its_name(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any]
) -> None:
    set_counter(ctx, tenant.contract_id, PLAN_MS)
    for name, extra in [("upload.bin", {"filetype": "video/mp4"}), ("REC_0001.MOV", {}), ("clip.mts", {})]:
        r = tus.create(server.url, tenant.token, 1000, patient["id"], filename=name, **extra)
        assert r.status_code == 403, name


def test_the_sdk_raises_the_refusal_with_the_servers_message(
    ctx: Context, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    set_counter(ctx, tenant.contract_id, PLAN_MS)
    with pytest.raises(UploadFailed) as e:
        api.upload(media_dir / "clip.mp4", patient["id"])
    assert e.value.status == 403 and "100 of the 100 video hours" in e.value.detail


def test_photos_are_always_accepted_over_the_limit(
    ctx: Context, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    set_counter(ctx, tenant.contract_id, PLAN_MS * 3)
    for name in ("photo.jpg", "photo.heic", "photo.png"):
        assert api.upload(media_dir / name, patient["id"])["kind"] == "image"
    assert counter(ctx, tenant.contract_id) == PLAN_MS * 3


def test_a_recording_that_began_below_the_limit_is_saved_in_full_however_far_it_goes_over(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    start = PLAN_MS - 500
    set_counter(ctx, tenant.contract_id, start)
    data = (media_dir / "clip.mp4").read_bytes()
    other = (media_dir / "clip2.mp4").read_bytes()
    a = tus.create(server.url, tenant.token, len(data), patient["id"], filename="a.mp4")
    b = tus.create(server.url, tenant.token, len(other), patient["id"], filename="b.mp4")
    assert a.status_code == b.status_code == 201
    assert tus.patch(server.url + a.headers["Location"], tenant.token, 0, data).status_code == 204
    over = counter(ctx, tenant.contract_id)
    assert over > PLAN_MS  # the first recording took the contract over the limit
    assert tus.patch(server.url + b.headers["Location"], tenant.token, 0, other).status_code == 204
    assert counter(ctx, tenant.contract_id) > over  # the second, begun below the limit, is saved in full
    assert _media_count(ctx) == 2
    refused = tus.create(server.url, tenant.token, len(data), patient["id"], filename="c.mp4")
    assert refused.status_code == 403


def test_a_video_under_a_photos_name_is_counted_as_a_video(
    ctx: Context, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path, tmp_path: Path
) -> None:
    disguised = shutil.copy(media_dir / "clip.mp4", tmp_path / "IMG_0001.JPG")
    item = api.upload(disguised, patient["id"])
    assert item["kind"] == "video"
    assert counter(ctx, tenant.contract_id) == usage.video_ms(item["duration_s"])


def test_a_video_under_a_photos_name_created_over_the_limit_is_refused_when_its_bytes_are_in(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    set_counter(ctx, tenant.contract_id, PLAN_MS)
    data = (media_dir / "clip.mp4").read_bytes()
    created = tus.create(server.url, tenant.token, len(data), patient["id"], filename="IMG_0001.JPG",
                         filetype="image/jpeg")
    assert created.status_code == 201  # it says it is a photo
    url = server.url + created.headers["Location"]
    done = tus.patch(url, tenant.token, 0, data)
    assert done.status_code == 403
    assert done.json()["used_hours"] == 100 and done.json()["plan_hours"] == 100
    assert tus.head(url, tenant.token).status_code == 404  # the bytes were dropped
    assert counter(ctx, tenant.contract_id) == PLAN_MS
    assert _media_count(ctx) == 0


def test_a_disguised_video_created_over_the_limit_is_kept_when_room_was_made_before_it_finished(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    set_counter(ctx, tenant.contract_id, PLAN_MS)
    data = (media_dir / "clip.mp4").read_bytes()
    created = tus.create(server.url, tenant.token, len(data), patient["id"], filename="IMG_0001.JPG")
    set_counter(ctx, tenant.contract_id, PLAN_MS, plan_hours=200)  # the operator approved a larger plan
    assert tus.patch(server.url + created.headers["Location"], tenant.token, 0, data).status_code == 204
    assert counter(ctx, tenant.contract_id) > PLAN_MS


def test_a_photo_created_over_the_limit_is_still_stored(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    set_counter(ctx, tenant.contract_id, PLAN_MS)
    r = _upload_raw(server, tenant.token, media_dir / "photo.jpg", patient["id"], "IMG_0002.JPG")
    assert r.status_code == 204 and _media_count(ctx) == 1


def test_resending_a_video_already_stored_is_not_refused_over_the_limit(
    ctx: Context, server: LiveServer, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    media_id = str(uuid.uuid4())
    item = api.upload(media_dir / "clip.mp4", patient["id"], media_id=media_id)
    set_counter(ctx, tenant.contract_id, PLAN_MS)
    again = tus.create(server.url, tenant.token, item["size"], patient["id"], media_id=media_id, filename="rec.mp4")
    assert again.status_code == 201  # a retry adds nothing: it finishes as the item already stored
    data = (media_dir / "clip.mp4").read_bytes()
    assert tus.patch(server.url + again.headers["Location"], tenant.token, 0, data).status_code == 204
    assert counter(ctx, tenant.contract_id) == PLAN_MS and _media_count(ctx) == 1


def test_the_completion_check_is_made_again_under_the_counters_lock(ctx: Context, tenant: Tenant) -> None:
    """The backstop for a race between the cheap pre-check and the transaction that stores the row."""
    set_counter(ctx, tenant.contract_id, PLAN_MS)
    video = Media(id=uuid.uuid4(), contract_id=tenant.contract_id, kind="video", duration_s=2.0, source="station")

    def store(created_over_limit: bool) -> None:
        with ctx.db.session() as s:
            usage.count_video(s, video, created_over_limit=created_over_limit)

    with pytest.raises(Problem) as refused:
        store(True)
    assert refused.value.status == 403 and refused.value.extra["used_hours"] == 100
    assert counter(ctx, tenant.contract_id) == PLAN_MS  # rolled back with the row
    store(False)  # begun below the limit: counted in full
    assert counter(ctx, tenant.contract_id) == PLAN_MS + 2000
