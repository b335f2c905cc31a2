"""Compare, cell by cell: each cell labelled (術前/術後 from the item's tags, else its capture date), zoomed on
its own (wheel on a PC, pinch on a phone) and reset by its fit button, drawn on with the single view's tools
(the drawing stored on the item of that cell, at the video's time for a video), and the "choose 2–4 items"
hint on screen while fewer or more are selected.

Both tests fail against the compare of before this change (checked by serving its compare.js): it had the
labels and the hint, but no zoom controls per cell and no drawing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from chairside.client import Client
from chairside.context import Context
from chairside.media.tags import set_tags
from chairside.mediafile import generate
from tests.e2e.conftest import World, seek_slider, settled
from tests.factories import operator

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
HINT = "2〜4 件を選ぶと並べて比較できます"
LOADED = "() => document.querySelector('#timeline')?.dataset.loaded === '1'"
READY = ("() => { const s = [...document.querySelectorAll('#compare .stage')]; "
         "return s.length === 2 && s.every((e) => e.dataset.ready === '1'); }")


def _cell(i: int) -> str:
    return f"#compare .compare-cell[data-cell='{i}']"


def _zoomed(page: Any) -> list[bool]:
    return list(page.evaluate(
        "() => [...document.querySelectorAll('#compare .stage')].map((s) => s.classList.contains('zoomed'))"))


def _center(page: Any, selector: str, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def _mouse_drag(page: Any, cell: int, points: list[tuple[float, float]]) -> None:
    xy = [_center(page, f"{_cell(cell)} canvas.ink", x, y) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()


def _annotations(world: World, media_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{world.url}/api/v1/media/{media_id}/annotations",
                  headers={"Authorization": f"Bearer {world.tenant.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _compare_path(world: World, *names: str) -> str:
    ids = ",".join(world.media[name]["id"] for name in names)
    return f"/p/{world.patient['id']}?compare={ids}"


def test_pc_hint_labels_wheel_zoom_per_cell_and_drawing_on_each_cell(
    ctx: Context, open_page: Callable[..., Any], world: World, tmp_path: Path
) -> None:
    boss = operator(world.tenant.contract_id)
    set_tags(ctx, boss, uuid.UUID(world.media["before.mp4"]["id"]), ["術前"])
    with Client(world.url, world.tenant.token) as chair:  # five items, to choose one too many
        for i in range(2):
            path = tmp_path / f"extra{i}.jpg"
            generate.make_jpeg(path, width=800, height=600, seed=20 + i,
                               captured_at=datetime(2026, 9, 1 + i, 10, 0, tzinfo=UTC))
            world.media[path.name] = chair.upload(path, world.patient["id"])
    page = open_page(f"/p/{world.patient['id']}", viewport=DESKTOP)
    page.wait_for_function(LOADED)
    page.click("#select-toggle")
    tiles = page.evaluate("() => [...document.querySelectorAll('.tile')].map((t) => t.dataset.id)")
    assert len(tiles) == 5
    page.click(f".tile[data-id='{tiles[0]}'] .tile-btn")
    assert page.is_visible("#compare-hint") and page.text_content("#compare-hint") == HINT
    for media_id in tiles[1:]:
        page.click(f".tile[data-id='{media_id}'] .tile-btn")
    assert page.is_visible("#compare-hint")  # five: one too many, said on screen
    assert page.is_disabled("#compare-button")
    page.click(f".tile[data-id='{tiles[4]}'] .tile-btn")
    assert not page.is_visible("#compare-hint") and page.is_enabled("#compare-button")

    page.goto(world.url + _compare_path(world, "before.mp4", "photo.jpg"))
    page.wait_for_function(READY)
    page.wait_for_function("() => document.querySelector('#compare video').readyState >= 1")
    labels = page.evaluate("() => [...document.querySelectorAll('#compare .compare-label')].map((e) => e.textContent)")
    assert labels[0] == "術前" and "年" in labels[1]  # the untagged photo: the day it was taken
    assert _zoomed(page) == [False, False]
    assert not page.is_visible(f"{_cell(1)} .cell-fit")

    # The wheel over the photo zooms that cell only; its fit button brings it back.
    page.mouse.move(*_center(page, f"{_cell(1)} .stage"))
    page.mouse.wheel(0, -500)
    page.wait_for_function(f"() => document.querySelector(\"{_cell(1)} .stage\").classList.contains('zoomed')")
    assert _zoomed(page) == [False, True]
    assert page.is_visible(f"{_cell(1)} .zoom-label") and page.text_content(f"{_cell(1)} .zoom-label") != "100%"
    assert not page.is_visible(f"{_cell(0)} .zoom-label")
    page.click(f"{_cell(1)} .cell-fit")
    assert _zoomed(page) == [False, False]
    assert not page.is_visible(f"{_cell(1)} .cell-fit")

    # Draw on the video (A) at 2.0 s: stored on that item, at that time, and nothing on the photo.
    seek_slider(page, 2.0, scope="#compare")
    settled(page, "#compare video")
    page.click(f"{_cell(0)} .cell-draw")
    page.wait_for_selector("#compare.is-drawing")
    assert "A" in page.text_content("#compare-status")
    _mouse_drag(page, 0, [(0.2, 0.2), (0.4, 0.35), (0.6, 0.5)])
    page.click("#compare #draw-save")
    page.wait_for_selector("#compare:not(.is-drawing)")
    page.wait_for_function(f"() => document.querySelector(\"{_cell(0)} .stage\").dataset.layersShown === '1'")
    (drawing,) = _annotations(world, world.media["before.mp4"]["id"])
    assert abs(drawing["media_time_s"] - 2.0) < 0.01 and drawing["shapes"][0]["type"] == "pen"
    assert _annotations(world, world.media["photo.jpg"]["id"]) == []

    # Draw an arrow on the photo (B): stored on the photo, without a time.
    page.click(f"{_cell(1)} .cell-draw")
    page.click("#compare [aria-label='矢印']")
    _mouse_drag(page, 1, [(0.8, 0.8), (0.5, 0.5)])
    page.click("#compare #draw-save")
    page.wait_for_function(f"() => document.querySelector(\"{_cell(1)} .stage\").dataset.layersShown === '1'")
    (arrow,) = _annotations(world, world.media["photo.jpg"]["id"])
    assert arrow["media_time_s"] is None and arrow["shapes"][0]["type"] == "arrow"
    assert abs(arrow["shapes"][0]["start"][0] - 0.8) < 0.02
    assert len(_annotations(world, world.media["before.mp4"]["id"])) == 1

    # Esc leaves drawing first (nothing stored), then closes the comparison.
    page.click(f"{_cell(1)} .cell-draw")
    page.keyboard.press("Escape")
    page.wait_for_selector("#compare:not(.is-drawing)")
    assert len(_annotations(world, world.media["photo.jpg"]["id"])) == 1
    page.keyboard.press("Escape")
    page.wait_for_selector("#compare", state="detached")
    assert not page.js_errors


def _touch(cdp: Any, kind: str, points: list[tuple[float, float]]) -> None:
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
        {"x": x, "y": y, "id": i, "radiusX": 4, "radiusY": 4, "force": 1} for i, (x, y) in enumerate(points)]})


def test_phone_pinch_zooms_one_cell_and_a_finger_draws_on_it(
    ctx: Context, open_page: Callable[..., Any], world: World
) -> None:
    boss = operator(world.tenant.contract_id)
    set_tags(ctx, boss, uuid.UUID(world.media["after.mp4"]["id"]), ["術後"])
    page = open_page(_compare_path(world, "after.mp4", "photo.jpg"), viewport=PHONE, has_touch=True, is_mobile=True)
    page.wait_for_function(READY)
    labels = page.evaluate("() => [...document.querySelectorAll('#compare .compare-label')].map((e) => e.textContent)")
    assert labels[0] == "術後"
    cdp = page.context.new_cdp_session(page)

    # Two fingers spread apart over the photo: that cell zooms, the video's does not.
    cx, cy = _center(page, f"{_cell(1)} .stage")
    _touch(cdp, "touchStart", [(cx - 30, cy), (cx + 30, cy)])
    for step in range(1, 6):
        _touch(cdp, "touchMove", [(cx - 30 - 16 * step, cy), (cx + 30 + 16 * step, cy)])
    _touch(cdp, "touchEnd", [])
    assert _zoomed(page) == [False, True]
    assert float(page.text_content(f"{_cell(1)} .zoom-label").rstrip("%")) > 150
    page.tap(f"{_cell(1)} .cell-fit")
    assert _zoomed(page) == [False, False]

    # A finger draws on the photo's cell once its pen is tapped.
    page.tap(f"{_cell(1)} .cell-draw")
    page.wait_for_selector("#compare.is-drawing")
    points = [_center(page, f"{_cell(1)} canvas.ink", x, y) for x, y in ((0.3, 0.3), (0.45, 0.4), (0.6, 0.6))]
    _touch(cdp, "touchStart", points[:1])
    for p in points[1:]:
        page.wait_for_timeout(40)
        _touch(cdp, "touchMove", [p])
    # The finger rests, then lifts: a stroke, not a fling (a tap that stops a fling clicks nothing).
    page.wait_for_timeout(150)
    _touch(cdp, "touchEnd", [])
    page.tap("#compare #draw-save")
    page.wait_for_function(f"() => document.querySelector(\"{_cell(1)} .stage\").dataset.layersShown === '1'")
    (drawing,) = _annotations(world, world.media["photo.jpg"]["id"])
    assert drawing["shapes"][0]["type"] == "pen" and len(drawing["shapes"][0]["points"]) >= 2
    assert abs(drawing["shapes"][0]["points"][0][0] - 0.3) < 0.03
    assert _annotations(world, world.media["after.mp4"]["id"]) == []
    assert not page.js_errors
