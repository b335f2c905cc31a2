"""In Debian's Chromium: the merge flags in the viewer. The banner says how many patients wait; the sheet shows
each pair side by side (on a phone too); one pair is merged after a confirmation, the other kept apart after
the server refused a chart number in use (its words shown in the sheet). Results checked through the API and
the database. SQLite only, as the other browser tests (tests/e2e/conftest.py)."""

# ruff: noqa: F811  (the fixtures imported from tests/e2e are used as arguments)
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Media, Patient
from chairside.domain.hlc import Clock
from chairside.tenancy.service import create_relay
from tests.conftest import sign_in
from tests.e2e import conftest as e2e
from tests.e2e.conftest import World, database_url, e2e_media, open_page, world  # noqa: F401
from tests.factories import make_account
from tests.merges.conftest import relay_op


@pytest.fixture(scope="module")  # closed after this module: a live sync Playwright keeps an event loop running
def browser() -> Iterator[Any]:
    yield from e2e.launch_chromium()


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1440, "height": 900}}


def _flag(ctx: Context, world: World, chart_no: str, name: str, kana: str) -> str:
    """The same chart number registered by a relay that was offline: kept, flagged (feed/ops.py)."""
    _, token = create_relay(ctx, world.tenant.clinic_ids[0])
    stamp = Clock("b0b00001").now()
    body = {"id": str(uuid.uuid4()), "clinic_id": str(world.tenant.clinic_ids[0]), "chart_no": chart_no,
            "name": name, "name_kana": kana, "birth_date": "1980-04-01", "sex": "male",
            "field_clocks": {f: stamp for f in ("chart_no", "name", "name_kana", "birth_date", "sex")}}
    r = relay_op(world.server, token, "patient.create", body)
    assert r.status_code == 200 and r.json()["result"]["merge_with"] is not None, r.text
    return str(body["id"])


def _side_by_side(page: Any, pair: str) -> None:
    flagged = page.locator(f"{pair} .merge-card.flagged").bounding_box()
    other = page.locator(f"{pair} .merge-card.other").bounding_box()
    assert flagged is not None and other is not None
    assert abs(flagged["y"] - other["y"]) < 2 and flagged["x"] + flagged["width"] <= other["x"] + 1
    assert other["x"] + other["width"] <= page.viewport_size["width"] + 1


def test_merge_one_pair_and_keep_the_other_apart(
        open_page: Callable[..., Any], world: World, ctx: Context, e2e_media: Path) -> None:
    same = _flag(ctx, world, "00123", "山田 太朗", "ヤマダ タロウ")  # 山田 太郎 again: the same person
    other = _flag(ctx, world, "00124", "山田 花", "ヤマダ ハナ")  # 00124 is 山田 花子's: another person
    with Client(world.url, world.tenant.token) as chair:  # an item filed under the flagged patient: it moves
        item = chair.upload(e2e_media / "photo.jpg", same, media_id=uuid.uuid4())

    phone = open_page("/", **PHONE)
    phone.wait_for_selector("#merge-banner:not([hidden])")
    assert "2" in (phone.text_content("#merge-banner-text") or "")
    phone.tap("#merge-open")
    phone.wait_for_selector("#merge-dialog")
    _side_by_side(phone, f".merge-pair[data-id='{same}']")
    assert phone.js_errors == []

    page = open_page("/", **DESKTOP)
    page.wait_for_selector("#merge-banner:not([hidden])")
    page.click("#merge-open")
    pair = f".merge-pair[data-id='{same}']"
    _side_by_side(page, pair)
    assert page.text_content(f"{pair} .merge-card.flagged .merge-chart") == "00123"
    page.click(f"{pair} [data-action=merge]")
    question = page.text_content(f"{pair} .merge-question") or ""
    assert "山田 太朗" in question and "山田 太郎" in question
    page.click(f"{pair} [data-action=merge-confirm]")
    page.wait_for_selector(pair, state="detached")

    apart = f".merge-pair[data-id='{other}']"
    page.click(f"{apart} [data-action=keep-apart]")
    page.fill(f"{apart} [data-field=chart-number]", "00124")
    page.click(f"{apart} [data-action=keep-apart-save]")
    page.wait_for_function(f"() => document.querySelector(\"{apart} .merge-error\").textContent.trim() !== ''")
    probe = {"Authorization": f"Bearer {sign_in(world.server, make_account(ctx, world.tenant, 'probe'))}"}
    taken = httpx.post(f"{world.url}/api/v1/patients/{other}/keep-apart", json={"chart_number": "00124"},
                       headers=probe)
    assert taken.status_code == 409 and page.text_content(f"{apart} .merge-error") == taken.json()["detail"]
    page.fill(f"{apart} [data-field=chart-number]", "00125")
    page.click(f"{apart} [data-action=keep-apart-save]")
    page.wait_for_selector("#merge-empty")
    page.click("#merge-close")
    page.wait_for_selector("#merge-banner", state="hidden")
    assert page.js_errors == []

    with ctx.db.read() as s:
        assert s.get(Patient, uuid.UUID(same)) is None
        kept_apart = s.get(Patient, uuid.UUID(other))
        assert kept_apart is not None and (kept_apart.chart_no, kept_apart.merge_with) == ("00125", None)
        moved = s.get(Media, uuid.UUID(item["id"]))
        assert moved is not None and str(moved.patient_id) == world.patient["id"]
