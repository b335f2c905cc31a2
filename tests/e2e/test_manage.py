"""Patients and mistakes without the command line (issue 16 §2), each at the screen size it is most used on.

Register a patient from the search pane (and see the server's refusal of a taken chart number), correct a
patient's details from the timeline, move a mis-filed item to another patient through the search picker, and
delete items to the trash and restore one from the trash view. Every result is checked through the API (and
the audit trail names the viewer account), not only on screen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent
from chairside.media.trash import purge_media
from tests.e2e.conftest import World

DESKTOP = {"width": 1440, "height": 900}
TABLET = {"width": 1024, "height": 768}
PHONE = {"width": 390, "height": 844}
WRITES = {"patient.create", "patient.update", "media.move", "media.trash", "media.restore"}
LOADED = "() => document.querySelector('#timeline')?.dataset.loaded === '1'"


def _actions(ctx: Context, world: World, patient_id: str) -> list[str]:
    """What the viewer account changed of this patient, per the audit trail (reads left out)."""
    with ctx.db.session() as s:
        rows = s.scalars(select(AuditEvent.action).where(
            AuditEvent.actor_id == world.viewer.account_id,
            AuditEvent.patient_id == uuid.UUID(patient_id)).order_by(AuditEvent.id))
        return [a for a in rows if a in WRITES]


def _in_view(page: Any, selector: str) -> None:
    """The element is inside the viewport (usable without scrolling the page behind a sheet)."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= size["width"] + 1 and box["y"] + box["height"] <= size["height"] + 1, box


def test_register_a_patient_from_the_search_pane_and_see_a_taken_chart_number_refused(
    open_page: Callable[..., Any], world: World, ctx: Context
) -> None:
    page = open_page("/", viewport=DESKTOP)
    page.click("#patient-new")
    page.wait_for_selector("#patient-form")
    page.select_option("#pf-clinic", str(world.tenant.clinic_ids[0]))
    page.fill("#pf-chart", "00123")  # 山田 太郎's
    page.fill("#pf-name", "鈴木 一郎")
    page.fill("#pf-kana", "スズキ イチロウ")
    page.fill("#pf-birth", "1975-06-30")
    page.select_option("#pf-sex", "male")
    page.click("#pf-save")
    page.wait_for_function("() => document.querySelector('#pf-error').textContent.trim() !== ''")
    shown = page.text_content("#pf-error") or ""
    # The server's own problem+json detail, as it answers the same request.
    with Client(world.url, world.tenant.token) as chair:
        r = httpx.post(f"{world.url}/api/v1/patients", headers={"Authorization": f"Bearer {world.tenant.token}"},
                       json={"clinic_id": str(world.tenant.clinic_ids[0]), "chart_no": "00123", "name": "鈴木 一郎",
                             "name_kana": "スズキ イチロウ"})
        assert r.status_code == 409
        assert shown == r.json()["detail"]
        assert page.is_visible("#patient-form")  # still open, nothing lost: correct and retry
        assert chair.search_patients("スズキ") == []

        page.fill("#pf-chart", "00777")
        page.click("#pf-save")
        page.wait_for_url("**/p/*")
        page.wait_for_function(LOADED)
        assert page.text_content("#patient-name .name") == "鈴木 一郎"
        [found] = chair.search_patients("777")  # the same search terms as the API: no leading zeros needed
        assert found["chart_no"] == "00777" and found["name_kana"] == "スズキ イチロウ"
        assert found["birth_date"] == "1975-06-30" and found["sex"] == "male"
        assert found["clinic_id"] == str(world.tenant.clinic_ids[0])
        assert page.url.endswith(f"/p/{found['id']}")
        assert chair.search_patients("すずき")[0]["id"] == found["id"]  # kana search terms were written
    assert _actions(ctx, world, found["id"]) == ["patient.create"]
    assert page.js_errors == []


def test_edit_a_patients_details_from_the_timeline_on_a_tablet(
    open_page: Callable[..., Any], world: World, ctx: Context
) -> None:
    page = open_page(world.patient_url().removeprefix(world.url), viewport=TABLET, has_touch=True)
    page.wait_for_function(LOADED)
    page.click("#patient-edit")
    page.wait_for_selector("#patient-form")
    assert page.input_value("#pf-chart") == "00123" and page.input_value("#pf-birth") == "1980-04-01"
    _in_view(page, "#pf-save")
    page.fill("#pf-name", "山田 太朗")
    page.fill("#pf-kana", "ヤマダ タロウ")  # unchanged: not sent
    page.fill("#pf-birth", "")  # a birth date may be emptied
    page.click("#pf-save")
    page.wait_for_selector("#patient-form", state="detached")
    assert page.text_content("#patient-name .name") == "山田 太朗"
    assert page.text_content("#topbar-title") == "山田 太朗"
    with Client(world.url, world.tenant.token) as chair:
        stored = chair.get_patient(world.patient["id"])
        assert stored["name"] == "山田 太朗" and stored["birth_date"] is None and stored["chart_no"] == "00123"
        assert chair.search_patients("太朗")[0]["id"] == world.patient["id"]  # search terms rewritten
    assert _actions(ctx, world, world.patient["id"]) == ["patient.update"]
    with ctx.db.session() as s:
        detail = s.scalars(select(AuditEvent.detail).where(AuditEvent.action == "patient.update")).one()
    assert detail == {"fields": ["birth_date", "name"]}
    # A chart number that another patient of the clinic has is refused in the sheet, with the server's words.
    page.click("#patient-edit")
    page.fill("#pf-chart", "00124")
    page.click("#pf-save")
    page.wait_for_function("() => document.querySelector('#pf-error').textContent.trim() !== ''")
    assert page.is_visible("#patient-form")
    with Client(world.url, world.tenant.token) as chair:
        assert chair.get_patient(world.patient["id"])["chart_no"] == "00123"
    assert page.js_errors == []


def test_move_misfiled_items_to_another_patient_on_a_phone_even_when_one_is_purged_meanwhile(
    open_page: Callable[..., Any], world: World, ctx: Context
) -> None:
    photo, video = world.media["photo.jpg"]["id"], world.media["before.mp4"]["id"]
    page = open_page(world.patient_url().removeprefix(world.url), viewport=PHONE, has_touch=True, is_mobile=True)
    page.wait_for_function(LOADED)
    page.click("#nav-select")
    page.click(f".tile[data-id='{photo}'] .tile-btn")
    page.click(f".tile[data-id='{video}'] .tile-btn")
    _in_view(page, "#move-button")
    page.click("#move-button")
    page.wait_for_selector("#move-dialog")
    page.fill("#move-search", "ヤマダ")
    page.wait_for_selector(".move-target")
    # The patient the items are filed under is not offered.
    assert page.locator(f".move-target[data-id='{world.patient['id']}']").count() == 0
    page.click(".move-target >> nth=0")
    question = page.text_content("#move-question") or ""
    assert "山田 花子" in question and "山田 太郎" in question  # the confirmation names both patients
    assert "2" in question
    # Meanwhile, on another device, the video is deleted for good.
    with Client(world.url, world.tenant.token) as chair:
        chair.trash(video)
    assert purge_media(ctx.db, ctx.blobs, uuid.UUID(video))
    _in_view(page, "#move-confirm")
    page.click("#move-confirm")
    # The photo still moves; the sheet stays to say what failed (the video is gone) and how many moved.
    page.wait_for_selector("#move-close")
    said = page.text_content("#move-question") or ""
    assert "見つかりません" in said and "1 件は移動済み" in said, said
    page.click("#move-close")
    page.wait_for_selector("#move-dialog", state="detached")
    page.wait_for_selector(f".tile[data-id='{photo}']", state="detached")
    with Client(world.url, world.tenant.token) as chair:
        [hanako] = chair.search_patients("00124")
        assert chair.get_media(photo)["patient_id"] == hanako["id"]
        assert [m["id"] for m in chair.list_media(hanako["id"])] == [photo]
        assert photo not in [m["id"] for m in chair.list_media(world.patient["id"])]
    assert _actions(ctx, world, hanako["id"]) == ["media.move"]  # in both patients' histories
    assert _actions(ctx, world, world.patient["id"]) == ["media.move"]
    assert page.js_errors == []


def test_delete_to_the_trash_then_restore_from_the_trash_view(
    open_page: Callable[..., Any], world: World, ctx: Context
) -> None:
    before, after = world.media["before.mp4"]["id"], world.media["after.mp4"]["id"]
    page = open_page(world.patient_url().removeprefix(world.url), viewport=DESKTOP)
    page.wait_for_function(LOADED)
    page.click("#select-toggle")
    page.click(f".tile[data-id='{before}'] .tile-btn")
    page.click(f".tile[data-id='{after}'] .tile-btn")
    page.click("#delete-button")
    page.wait_for_selector("#trash-ask")
    page.click("#trash-cancel")  # cancelling deletes nothing
    with Client(world.url, world.tenant.token) as chair:
        assert len(chair.list_media(world.patient["id"])) == 3
    page.click("#delete-button")
    page.click("#trash-confirm")
    page.wait_for_selector("#trash-ask", state="detached")
    page.wait_for_function("() => document.querySelector('#timeline').dataset.count === '1'")
    headers = {"Authorization": f"Bearer {world.tenant.token}"}
    trash_url = f"{world.url}/api/v1/patients/{world.patient['id']}/media?trash=true"
    in_trash = httpx.get(trash_url, headers=headers).json()["items"]
    assert sorted(m["id"] for m in in_trash) == sorted([before, after])

    page.click("#trash-open")
    page.wait_for_selector("#trash-list[data-loaded='1']")
    assert page.locator("#trash-list .trash-item").count() == 2
    page.click(f"#trash-list .trash-item[data-id='{after}'] button")
    page.wait_for_selector(f"#trash-list .trash-item[data-id='{after}']", state="detached")
    page.click("#trash-close")
    page.wait_for_selector(f"#timeline .tile[data-id='{after}']")  # back on the timeline without a reload
    assert [m["id"] for m in httpx.get(trash_url, headers=headers).json()["items"]] == [before]
    with Client(world.url, world.tenant.token) as chair:
        assert chair.get_media(after)["deleted_at"] is None
    assert _actions(ctx, world, world.patient["id"]) == ["media.trash", "media.trash", "media.restore"]
    assert page.js_errors == []
