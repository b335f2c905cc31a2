"""The demo lets a dentist judge the product: recent patients with media first, tagged and drawn-on items, tooth
numbers and notes, clips of 20-60 s, and a contract near 80 % of its plan so that the banner shows.

The seeding runs here with 1-second clips (the real ones take about a minute and a half to make): what is
checked is what the viewer will show, through the same reads the API makes.
"""

from __future__ import annotations

import uuid

import pytest
from rich.console import Console
from sqlalchemy import func, select

from chairside.cli import demo
from chairside.context import Context
from chairside.db.models import Annotation, Media, Patient
from chairside.media import notes, teeth
from chairside.media.tags import by_item
from chairside.quota.usage import quota_of
from tests.factories import operator


def test_the_demos_clips_are_20_to_60_seconds() -> None:
    assert all(20 <= seconds <= 60 for _, seconds, _ in demo.VIDEOS)
    assert {"術前", "術後"} <= {tag for *_, tags in demo.VIDEOS for tag in tags}


# On SQLite only: making media is the slow part, and the services it calls are tested on both databases.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_seed_puts_patients_with_media_first_with_tags_drawings_and_the_quota_banner(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "VIDEOS", [(pi, 1, tags) for pi, _, tags in demo.VIDEOS])
    creds = demo.seed(ctx, Console(quiet=True))
    contract_id = uuid.UUID(str(creds["contract_id"]))
    boss = operator(contract_id)
    with ctx.db.read() as s:
        # "Recent patients" is the newest-updated first (api/patients.py): those with media lead.
        recent = list(s.scalars(select(Patient).where(Patient.contract_id == contract_id)
                                .order_by(Patient.updated_at.desc(), Patient.id.desc()).limit(20)))
        with_media = set(s.scalars(select(Media.patient_id).where(Media.contract_id == contract_id)))
        assert len(with_media) == demo.WITH_MEDIA
        assert {p.id for p in recent[:demo.WITH_MEDIA]} == with_media
        assert recent[0].chart_no == "01001"  # the patient with videos, photos, tags and drawings
        assert s.scalar(select(func.count()).select_from(Annotation).where(Annotation.contract_id == contract_id)) == 2
        quota = quota_of(s, contract_id)
    assert 80 <= quota.percent < 90  # the banner shows from 80 %; videos can still be stored
    tags = by_item(ctx, boss, recent[0].id)
    assert sorted(tag for item in tags.values() for tag in item if tag in ("術前", "術後")) == ["術前", "術後"]
    with ctx.db.read() as s:  # tooth numbers on the first patient's pair, and the dentist's notes
        items = list(s.scalars(select(Media.id).where(Media.patient_id == recent[0].id)))
        shown = teeth.of_items(s, items)
    assert sum(1 for v in shown.values() if v == [46]) >= 2
    assert notes.get_note(ctx, boss, "patient", recent[0].id).text == demo.PATIENT_NOTE
    assert [n for i in items if (n := notes.get_note(ctx, boss, "media", i).text)] == [demo.ITEM_NOTE[1]]
    assert demo.seed(ctx, Console(quiet=True))["contract_id"] == creds["contract_id"]  # a second start reuses it


def test_a_demo_stopped_while_seeding_says_to_delete_the_folder(ctx: Context) -> None:
    import typer

    from chairside.tenancy import service as tenancy

    tenancy.create_contract(ctx, "途中で止まったデモ", 100)  # the contract exists, the credentials do not yet
    with pytest.raises(typer.Exit):
        demo.seed(ctx, Console(quiet=True))
