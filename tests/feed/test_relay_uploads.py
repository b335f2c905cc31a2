"""Recordings forwarded by a relay: the station's own item, and never refused for the quota."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select, update

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Contract, Media, Station
from chairside.quota import usage
from chairside.tenancy.service import create_relay
from tests.conftest import LiveServer
from tests.factories import Tenant
from tests.uploads import helpers as tus


def station_of(ctx: Context, clinic_id: uuid.UUID) -> uuid.UUID:
    with ctx.db.read() as s:
        return s.scalars(select(Station.id).where(Station.clinic_id == clinic_id)).one()


def upload(server: LiveServer, token: str, path: Path, patient_id: str, **meta: str) -> tuple[int, str, str]:
    """(status of the creation, its problem type or '', the media id), sending the whole file when created."""
    data = path.read_bytes()
    media_id = str(uuid.uuid4())
    created = tus.create(server.url, token, len(data), patient_id, media_id, filename=path.name, **meta)
    if created.status_code != 201:
        return created.status_code, created.json().get("type", ""), media_id
    done = tus.patch(server.url + created.headers["Location"], token, 0, data)
    assert done.status_code == 204, done.text
    return 201, "", media_id


def test_a_relay_forwards_a_stations_recording(
    ctx: Context, server: LiveServer, tenant: Tenant, media_dir: Path,
) -> None:
    with Client(server.url, tenant.token) as api:
        patient = api.create_patient(tenant.clinic_ids[0], "0007", "鈴木 美咲", "スズキ ミサキ")
    branch_station = station_of(ctx, tenant.clinic_ids[1])  # taken at the branch, for a main-clinic patient
    _, token = create_relay(ctx, tenant.clinic_ids[1])
    status, _, media_id = upload(server, token, media_dir / "clip.mp4", patient["id"], station_id=str(branch_station))
    assert status == 201
    with ctx.db.read() as s:
        item = s.get(Media, uuid.UUID(media_id))
    assert item is not None
    assert (item.station_id, item.clinic_id, item.source, item.kind) == (
        branch_station, tenant.clinic_ids[1], "station", "video")


def test_a_relay_may_not_name_another_contracts_station(
    ctx: Context, server: LiveServer, tenant: Tenant, other_tenant: Tenant, media_dir: Path,
) -> None:
    with Client(server.url, tenant.token) as api:
        patient = api.create_patient(tenant.clinic_ids[0], "0008", "高橋 大輔", "タカハシ ダイスケ")
    _, token = create_relay(ctx, tenant.clinic_ids[0])
    for station in (station_of(ctx, other_tenant.clinic_ids[0]), uuid.uuid4()):
        status, kind, _ = upload(server, token, media_dir / "photo.jpg", patient["id"], station_id=str(station))
        assert (status, kind.rsplit("/", 1)[-1]) == (422, "unknown-station")


def test_over_the_quota_a_relays_forward_is_kept_and_counted_but_a_station_is_refused(
    ctx: Context, server: LiveServer, tenant: Tenant, media_dir: Path,
) -> None:
    with Client(server.url, tenant.token) as api:
        patient = api.create_patient(tenant.clinic_ids[0], "0009", "田中 陽子", "タナカ ヨウコ")
    full = usage.plan_ms(100)
    with ctx.db.session() as s:
        s.execute(update(Contract).where(Contract.id == tenant.contract_id).values(stored_video_ms=full))
    status, kind, _ = upload(server, tenant.token, media_dir / "clip.mp4", patient["id"])
    assert (status, kind.rsplit("/", 1)[-1]) == (403, "video-quota-full")

    _, token = create_relay(ctx, tenant.clinic_ids[0])
    station = station_of(ctx, tenant.clinic_ids[0])
    status, _, media_id = upload(server, token, media_dir / "clip.mp4", patient["id"], station_id=str(station))
    assert status == 201
    with ctx.db.read() as s:
        item = s.get(Media, uuid.UUID(media_id))
        stored = s.scalar(select(Contract.stored_video_ms).where(Contract.id == tenant.contract_id))
    assert item is not None and item.station_id == station
    assert stored == full + usage.video_ms(item.duration_s) > full  # counted as usual
