"""A merge made at the cloud reaches a relay through the changes feed: the relay files the removed patient's items
under the kept one and drops the removed patient (its search rows too); a keep-apart clears the relay's flag."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import Media, Patient, PatientSearchTerm
from tests.conftest import sign_in
from tests.factories import make_account
from tests.merges.conftest import flag_pair
from tests.relay.follow_fixtures import Cloud, catch_up, cloud, relay_ctx  # noqa: F401  (fixtures)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the cloud's side: test_merges_api


def test_a_merge_at_the_cloud_reaches_the_relay(cloud: Cloud, relay_ctx: Context, media_dir: Path) -> None:
    pair = flag_pair(cloud.ctx, cloud.server, cloud)
    station = cloud.station(0)
    kept_item = station.upload(media_dir / "photo.jpg", pair.kept)
    item = station.upload(media_dir / "photo.png", pair.flagged)
    other = flag_pair(cloud.ctx, cloud.server, cloud, "555")
    catch_up(relay_ctx)
    with relay_ctx.db.read() as s:
        flagged = s.get(Patient, pair.flagged)
        assert flagged is not None and flagged.merge_with == pair.kept
        assert s.scalar(select(Media.patient_id).where(Media.id == uuid.UUID(item["id"]))) == pair.flagged

    viewer = make_account(cloud.ctx, cloud.contract_id, "reception")
    auth = {"Authorization": f"Bearer {sign_in(cloud.server, viewer)}"}
    merged = httpx.post(f"{cloud.url}/api/v1/patients/{pair.flagged}/merge", json={"into": str(pair.kept)},
                        headers=auth, timeout=30)
    assert merged.status_code == 200, merged.text
    apart = httpx.post(f"{cloud.url}/api/v1/patients/{other.flagged}/keep-apart", json={"chart_number": "556"},
                       headers=auth, timeout=30)
    assert apart.status_code == 200, apart.text
    catch_up(relay_ctx)
    with relay_ctx.db.read() as s:
        assert s.get(Patient, pair.flagged) is None
        assert s.scalar(select(PatientSearchTerm.id).where(PatientSearchTerm.patient_id == pair.flagged)) is None
        owners = {m.id: m.patient_id for m in s.scalars(select(Media))}
        assert owners == {uuid.UUID(kept_item["id"]): pair.kept, uuid.UUID(item["id"]): pair.kept}
        kept = s.get(Patient, pair.kept)
        assert kept is not None and kept.birth_date is not None and kept.sex == "male"  # filled at the cloud
        separate = s.get(Patient, other.flagged)
        assert separate is not None and (separate.chart_no, separate.merge_with) == ("556", None)
        found = s.scalars(select(PatientSearchTerm.patient_id).where(PatientSearchTerm.term == "556")).all()
        assert list(found) == [other.flagged]
