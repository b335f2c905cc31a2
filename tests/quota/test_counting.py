"""The stored-video counter: exact on ingest and purge, in the same transaction as the row."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import QuotaDaily
from chairside.media.ingest import IngestRequest, file_sha256, ingest
from chairside.media.trash import purge_media
from chairside.quota import usage
from tests.admin_cli import run_admin
from tests.factories import Tenant
from tests.quota.helpers import counter, set_counter


def test_a_stored_video_adds_its_duration_and_a_photo_adds_nothing(
    ctx: Context, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    video = api.upload(media_dir / "clip.mp4", patient["id"])
    api.upload(media_dir / "photo.jpg", patient["id"])
    api.upload(media_dir / "photo.heic", patient["id"])
    ms = usage.video_ms(video["duration_s"])
    assert ms > 900
    assert counter(ctx, tenant.contract_id) == ms
    with ctx.db.session() as s:
        day = s.scalars(select(QuotaDaily).where(QuotaDaily.contract_id == tenant.contract_id)).one()
        assert (day.recorded_ms, day.freed_ms) == (ms, 0)


def test_a_video_in_the_trash_keeps_counting_until_it_is_purged(
    ctx: Context, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    video = api.upload(media_dir / "clip.mp4", patient["id"])
    ms = usage.video_ms(video["duration_s"])
    api.trash(video["id"])
    assert counter(ctx, tenant.contract_id) == ms
    api.restore(video["id"])
    api.trash(video["id"])
    assert counter(ctx, tenant.contract_id) == ms
    assert purge_media(ctx.db, ctx.blobs, uuid.UUID(video["id"]))
    assert counter(ctx, tenant.contract_id) == 0
    assert not purge_media(ctx.db, ctx.blobs, uuid.UUID(video["id"]))  # a second purge frees nothing
    assert counter(ctx, tenant.contract_id) == 0
    with ctx.db.session() as s:
        day = s.scalars(select(QuotaDaily).where(QuotaDaily.contract_id == tenant.contract_id)).one()
        assert (day.recorded_ms, day.freed_ms) == (ms, ms)


def test_the_same_media_id_uploaded_again_counts_once(
    ctx: Context, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    media_id = uuid.uuid4()
    first = api.upload(media_dir / "clip.mp4", patient["id"], media_id=media_id)
    again = api.upload(media_dir / "clip.mp4", patient["id"], media_id=media_id)
    assert again["id"] == first["id"]
    assert counter(ctx, tenant.contract_id) == usage.video_ms(first["duration_s"])


def test_videos_of_one_contract_never_count_for_another(
    ctx: Context, api: Client, tenant: Tenant, other_tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    api.upload(media_dir / "clip.mp4", patient["id"])
    assert counter(ctx, other_tenant.contract_id) == 0


@pytest.mark.parametrize(("seconds", "ms"), [(1.0, 1000), (1.0005, 1001), (0.0004, 0), (2.0334, 2033),
                                             (None, 0), (float("nan"), 0)])
def test_durations_count_in_whole_milliseconds_rounded_half_up(seconds: float | None, ms: int) -> None:
    assert usage.video_ms(seconds) == ms


def test_quota_verify_recounts_reports_drift_and_fixes_it(
    ctx: Context, api: Client, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    video = api.upload(media_dir / "clip.mp4", patient["id"])
    api.trash(api.upload(media_dir / "clip2.mp4", patient["id"])["id"])  # the trash counts in the recount too
    expected = counter(ctx, tenant.contract_id)
    clean = run_admin(ctx, "quota", "verify")
    assert clean.exit_code == 0, clean.stderr
    assert clean.json()["drift"] == []

    set_counter(ctx, tenant.contract_id, expected + 12_345)
    drift = run_admin(ctx, "quota", "verify")
    assert drift.exit_code == 1
    [row] = drift.json()["drift"]
    assert row == {"contract_id": str(tenant.contract_id), "name": "テスト歯科", "counter_ms": expected + 12_345,
                   "recount_ms": expected, "drift_ms": 12_345}
    assert counter(ctx, tenant.contract_id) == expected + 12_345  # reporting changes nothing

    fixed = run_admin(ctx, "quota", "verify", "--fix")
    assert fixed.exit_code == 0 and fixed.json()["fixed"] is True
    assert counter(ctx, tenant.contract_id) == expected
    assert run_admin(ctx, "quota", "verify").exit_code == 0
    assert expected > usage.video_ms(video["duration_s"])


def test_an_import_counts_but_is_not_part_of_the_recording_rate(
    ctx: Context, tenant: Tenant, patient: dict[str, Any], media_dir: Path, tmp_path: Path
) -> None:
    path = Path(shutil.copy(media_dir / "clip.mp4", tmp_path / "imported.mp4"))  # ingest adopts (moves) the file
    item = ingest(ctx.db, ctx.blobs, IngestRequest(
        path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=uuid.uuid4(),
        contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0], patient_id=uuid.UUID(patient["id"]),
        filename=path.name, captured_at=None, source="migration",
    ))
    assert counter(ctx, tenant.contract_id) == usage.video_ms(item.duration_s) > 0
    with ctx.db.session() as s:
        assert s.scalars(select(QuotaDaily)).all() == []
