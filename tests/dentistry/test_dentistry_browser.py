"""In Debian's Chromium: pick the teeth an item shows on the tooth chart (Zsigmondy–Palmer display, as the
clinic chose), see them as chips, filter the timeline by a tooth, write a note on the item and on the patient;
and on a phone (390×844, touch) the chart's teeth are thumb-sized and inside the screen. Each result is checked
through the API and the audit trail. SQLite only, as the other browser tests (tests/e2e/conftest.py)."""

# ruff: noqa: F811  (the fixtures imported from tests/e2e/conftest.py are used as arguments)
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import AuditEvent
from chairside.media import teeth
from tests.e2e import conftest as e2e
from tests.e2e.conftest import World, database_url, e2e_media, open_page, world  # noqa: F401
from tests.factories import operator


@pytest.fixture(scope="module")  # closed after this module: a live sync Playwright keeps an event loop running
def browser() -> Iterator[Any]:
    yield from e2e.launch_chromium()


LOADED = "() => document.querySelector('#timeline')?.dataset.loaded === '1'"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def _api(world: World, path: str) -> Any:
    """Read back through the API as the clinic's station (the page's own session stays signed in)."""
    r = httpx.get(f"{world.url}{path}", headers={"Authorization": f"Bearer {world.tenant.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _shot(page: Any, name: str) -> None:
    """With CHAIRSIDE_SCREENSHOTS=DIR (docs/screenshots), keep this screen for the docs (toasts left out)."""
    folder = os.environ.get("CHAIRSIDE_SCREENSHOTS")
    if folder:
        page.evaluate("() => document.querySelectorAll('.toast').forEach((t) => t.remove())")
        page.screenshot(path=f"{folder}/{name}.png")


def _written(ctx: Context, world: World) -> list[str]:
    with ctx.db.read() as s:
        return list(s.scalars(select(AuditEvent.action).where(
            AuditEvent.actor_id == world.viewer.account_id,
            AuditEvent.action.in_(("media.teeth", "media.note", "patient.note"))).order_by(AuditEvent.id)))


def test_pick_teeth_filter_the_timeline_and_write_notes(
        ctx: Context, open_page: Callable[..., Any], world: World) -> None:
    teeth.set_notation(ctx, operator(world.tenant.contract_id), world.tenant.clinic_ids[0], "palmer")
    photo, clip = world.media["photo.jpg"]["id"], world.media["before.mp4"]["id"]
    page = open_page(world.patient_url(photo).removeprefix(world.url), viewport={"width": 1440, "height": 900})
    page.wait_for_selector("#viewer")
    page.click("#teeth-button")
    page.wait_for_selector("#tooth-sheet")
    assert page.text_content("#tooth-sheet [data-tooth='16'] .tooth-mark") == "6┘"  # the clinic's display
    assert page.text_content("#tooth-sheet [data-tooth='21'] .tooth-mark") == "└1"
    page.click("#tooth-sheet [data-tooth='16']")
    page.click("#tooth-sheet [data-tooth='26']")
    _shot(page, "pc-tooth-chart")
    assert page.get_attribute("#tooth-sheet [data-tooth='16']", "aria-pressed") == "true"
    page.click("#tooth-sheet [data-set='deciduous']")
    assert page.text_content("#tooth-sheet [data-tooth='55'] .tooth-mark") == "E┘"
    page.click("#tooth-save")
    page.wait_for_selector("#tooth-sheet", state="detached")
    assert page.locator("#viewer-teeth .tooth-chip").all_text_contents() == ["6┘", "└6"]
    assert _api(world, f"/api/v1/media/{photo}")["teeth"] == [16, 26]

    page.click("#note-button")
    page.wait_for_selector("#note-sheet")
    page.fill("#note-text", "右上6 の説明に使用\n術前")
    page.click("#note-save")
    page.wait_for_selector("#note-sheet", state="detached")
    page.wait_for_function("() => document.querySelector('#note-button').dataset.hasNote === '1'")
    assert _api(world, f"/api/v1/media/{photo}/note")["text"] == "右上6 の説明に使用\n術前"

    # The same on the clip, then the timeline: chips on the tiles, and the filter by tooth.
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="detached")
    page.wait_for_function(LOADED)
    page.click(f".tile[data-id='{clip}'] .tile-btn")
    page.wait_for_selector("#viewer")
    page.click("#teeth-button")
    page.click("#tooth-sheet [data-tooth='16']")
    page.click("#tooth-save")
    page.wait_for_selector("#tooth-sheet", state="detached")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="detached")
    tile_chips = page.locator(f".tile[data-id='{photo}'] .tooth-chip").all_text_contents()
    assert tile_chips == ["6┘", "└6"]
    assert page.get_attribute("#timeline", "data-count") == "3"
    page.select_option("#filter-tooth", "26")
    page.wait_for_function("() => document.querySelector('#timeline').dataset.count === '1'")
    assert page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.id)") == [photo]
    page.select_option("#filter-tooth", "16")
    page.wait_for_function("() => document.querySelector('#timeline').dataset.count === '2'")
    by_api = _api(world, f"/api/v1/patients/{world.patient['id']}/media?tooth=16")["items"]
    assert sorted(m["id"] for m in by_api) == sorted([photo, clip])

    # The patient's note, under the name.
    page.click("#patient-note-edit")
    page.wait_for_selector("#note-sheet[data-kind='patient']")
    page.fill("#note-text", "金属アレルギーあり。説明はご家族同席で。")
    page.click("#note-save")
    page.wait_for_function("() => document.querySelector('#patient-note-text').textContent.includes('金属アレルギー')")
    assert page.is_visible("#patient-note-text")
    _shot(page, "pc-teeth-filter")
    stored = _api(world, f"/api/v1/patients/{world.patient['id']}/note")
    assert stored["text"] == "金属アレルギーあり。説明はご家族同席で。"
    assert _written(ctx, world) == ["media.teeth", "media.note", "media.teeth", "patient.note"]
    assert not page.js_errors


def test_on_a_phone_the_chart_is_thumb_sized_and_a_too_long_note_is_refused_in_the_sheet(
        ctx: Context, open_page: Callable[..., Any], world: World) -> None:
    photo = world.media["photo.jpg"]["id"]
    page = open_page(world.patient_url(photo).removeprefix(world.url), **PHONE)
    page.wait_for_selector("#viewer")
    page.tap("#teeth-button")
    page.wait_for_selector("#tooth-sheet")
    for n in (18, 11, 21, 28, 48, 38):
        box = page.locator(f"#tooth-sheet [data-tooth='{n}']").bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] >= 28, (n, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844, (n, box)
    page.tap("#tooth-sheet [data-tooth='46']")
    _shot(page, "phone-tooth-chart")
    page.tap("#tooth-sheet [data-set='deciduous']")
    page.tap("#tooth-sheet [data-tooth='84']")
    page.tap("#tooth-save")
    page.wait_for_selector("#tooth-sheet", state="detached")
    assert page.locator("#viewer-teeth .tooth-chip").all_text_contents() == ["46", "84"]  # FDI: the default
    assert _api(world, f"/api/v1/media/{photo}")["teeth"] == [46, 84]

    page.tap("#note-button")
    page.wait_for_selector("#note-sheet")
    # The field stops at 2000 characters; text pasted past the limit by script is refused by the server.
    page.eval_on_selector("#note-text", "el => { el.removeAttribute('maxlength'); el.value = 'あ'.repeat(2001); }")
    page.tap("#note-save")
    page.wait_for_function("() => !document.querySelector('#note-sheet .form-error').hidden")
    assert "2000" in page.text_content("#note-sheet .form-error")
    assert page.is_visible("#note-sheet")  # left open, filled in
    assert _api(world, f"/api/v1/media/{photo}/note")["text"] == ""
    assert not page.js_errors
