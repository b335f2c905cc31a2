"""The fixes found when the viewer was tried as a new user would, each at the screen size it was seen on.

Every test here failed before its fix: a video opened on its black first frame, the tag sheet's Cancel
was white on white, the phone's その他 sheet stayed open (in Japanese) after switching language, English
said "1 items", toasts covered the player's controls and the phone's selection bar, the import panel
covered the tiles, phone landscape gave the video 216 of 390 px with no swipe, "123" did not find chart
00123, a reload forgot interrupted imports, and compare cells had no 術前/術後 label nor an on-screen hint.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chairside.context import Context
from chairside.media.tags import set_tags
from tests.e2e.conftest import World, wait_video
from tests.factories import operator

DESKTOP = {"width": 1440, "height": 900}
TABLET = {"width": 1024, "height": 768}
PHONE = {"width": 390, "height": 844}
PHONE_LANDSCAPE = {"width": 844, "height": 390}

RECT = ("(sel) => { const r = document.querySelector(sel).getBoundingClientRect(); "
        "return [r.left, r.top, r.right, r.bottom]; }")
TOAST = "(text) => import('/static/js/widgets.js').then((m) => m.toast(text, { ms: 60000 }))"
LOADED = "() => document.querySelector('#timeline')?.dataset.loaded === '1'"

# The mean luma (0..255) of an image URL, drawn on a canvas in the page.
LUMA = """async (src) => {
  const img = new Image();
  img.src = src;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
  return sum / (d.length / 4);
}"""

# WCAG contrast ratio between an element's text colour and its background colour.
CONTRAST = """(sel) => {
  const el = document.querySelector(sel);
  const s = getComputedStyle(el);
  const rgb = (v) => v.match(/[\\d.]+/g).map(Number);
  const lin = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => [r, g, b].map(lin)
    .reduce((a, x, i) => a + x * [0.2126, 0.7152, 0.0722][i], 0);
  const bgParts = rgb(s.backgroundColor);
  // A see-through background shows the sheet (white) beneath it.
  const alpha = bgParts.length > 3 ? bgParts[3] : 1;
  const bg = bgParts.slice(0, 3).map((x) => x * alpha + 255 * (1 - alpha));
  const a = lum(rgb(s.color)) + 0.05;
  const b = lum(bg) + 0.05;
  return Math.max(a, b) / Math.min(a, b);
}"""


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _path(world: World, media_id: str | None = None) -> str:
    return world.patient_url(media_id).removeprefix(world.url)


def test_a_video_opens_on_its_thumbnail_which_is_not_black_and_toasts_leave_the_controls_free(
    open_page: Callable[..., Any], world: World
) -> None:
    video = world.media["before.mp4"]["id"]  # its first three frames are black, as a microscope's often are
    page = open_page(_path(world, video), viewport=DESKTOP)
    wait_video(page)
    poster = page.get_attribute("#viewer video", "poster")
    assert poster == f"/api/v1/media/{video}/thumbnail"
    assert page.evaluate("() => document.querySelector('#viewer video').currentTime") == 0  # what shows is the poster
    assert page.evaluate(LUMA, poster) > 16
    page.evaluate(TOAST, "保存しました")
    page.wait_for_selector(".toast")
    assert not _overlap(page.evaluate(RECT, ".toast"), page.evaluate(RECT, "#viewer .player-controls"))
    assert not page.js_errors


def test_the_tag_sheets_cancel_button_is_readable_on_every_layout(open_page: Callable[..., Any], world: World) -> None:
    page = open_page(_path(world, world.media["photo.jpg"]["id"]), viewport=DESKTOP)
    page.wait_for_selector("#viewer img.media")
    page.click("#tags-button")
    cancel = ".tag-sheet .sheet-actions .btn:not(.primary)"
    page.wait_for_selector(cancel)
    for viewport in (DESKTOP, TABLET, PHONE):
        page.set_viewport_size(viewport)
        assert page.evaluate(CONTRAST, cancel) >= 4.5, viewport
        assert page.evaluate(CONTRAST, ".tag-sheet .sheet-actions .btn.primary") >= 4.5, viewport
    page.click(cancel)
    page.wait_for_selector(".tag-sheet", state="detached")


def test_phone_language_switch_closes_the_sheet_plurals_toasts_and_the_import_chip(
    open_page: Callable[..., Any], world: World, e2e_media: Path
) -> None:
    page = open_page(_path(world), viewport=PHONE, has_touch=True)
    page.wait_for_function(LOADED)
    page.click("#nav-account")
    page.click("#sheet-lang-switch")
    page.wait_for_selector(".backdrop", state="detached")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.text_content("#nav-search") == "Search"
    # Plurals: one photo is "1 item", three items are "3 items" (the timeline is drawn again in English).
    page.wait_for_function(LOADED)
    page.wait_for_function("() => document.querySelector('.toolbar .count')?.textContent === '3 items'")
    page.click(".seg-btn[data-kind=image]")
    assert page.text_content(".toolbar .count") == "1 item"
    page.click(".seg-btn[data-kind=all]")
    # A toast never covers the selection bar at the bottom.
    page.click("#nav-select")
    page.wait_for_selector(".selection-bar", state="visible")
    page.evaluate(TOAST, "Downloading 1 item as a zip…")
    page.wait_for_selector(".toast")
    assert not _overlap(page.evaluate(RECT, ".toast"), page.evaluate(RECT, ".selection-bar"))
    page.click("#nav-select")
    # An import in progress shrinks to a chip instead of covering the tiles (the sending is held back).
    page.route("**/api/v1/uploads/**", lambda route: route.abort() if route.request.method == "PATCH"
               else route.continue_())
    page.click("#nav-import")
    page.set_input_files("#file-input", str(e2e_media / "big.jpg"))
    page.wait_for_selector("#import-chip", state="visible")
    chip = page.evaluate(RECT, "#imports")
    assert chip[3] - chip[1] < 80
    assert not _overlap(chip, page.evaluate(RECT, ".tile"))
    page.click("#import-chip")
    page.wait_for_selector(".q-item", state="visible")
    page.unroute("**/api/v1/uploads/**")
    assert not page.js_errors


def test_phone_landscape_gives_the_video_the_whole_height_and_a_swipe_goes_to_the_next_item(
    open_page: Callable[..., Any], world: World
) -> None:
    page = open_page(_path(world), viewport=PHONE_LANDSCAPE, has_touch=True)
    page.wait_for_function(LOADED)
    order = page.evaluate("() => [...document.querySelectorAll('.tile')].map((t) => t.dataset.id)")
    videos = {world.media[name]["id"] for name in ("before.mp4", "after.mp4")}
    start = next(i for i, media_id in enumerate(order[:-1]) if media_id in videos)  # a video with one after it
    page.goto(world.url + _path(world, order[start]))
    wait_video(page)
    page.wait_for_function("() => document.querySelector('#viewer .stage')?.dataset.ready === '1'")
    assert page.evaluate("document.querySelector('#viewer .stage').clientHeight") == PHONE_LANDSCAPE["height"]
    video = page.evaluate(RECT, "#viewer .stage-content")
    assert video[3] - video[1] >= PHONE_LANDSCAPE["height"] - 1  # a 16:9 clip fills the height
    # A quick horizontal stroke to the left: the next item.
    page.mouse.move(600, 200)
    page.mouse.down()
    page.mouse.move(450, 205, steps=3)
    page.mouse.move(300, 210, steps=3)
    page.mouse.up()
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('m') === '{order[start + 1]}'")
    assert not page.js_errors


def test_desktop_imports_dock_beside_the_tiles_and_chart_numbers_match_without_zeros(
    open_page: Callable[..., Any], world: World
) -> None:
    page = open_page(_path(world), viewport=DESKTOP)
    page.wait_for_function(LOADED)
    page.click("#import-button")
    page.wait_for_selector("#imports", state="visible")
    main, imports = page.evaluate(RECT, "#main"), page.evaluate(RECT, "#imports")
    assert main[2] <= imports[0] + 1  # beside, not over
    assert imports[2] <= DESKTOP["width"] + 1
    page.fill("#patient-search", "123")  # chart 00123
    page.wait_for_selector("#patient-results[data-count='1']")
    assert "00123" in (page.text_content("#patient-results") or "")


def test_after_a_reload_an_interrupted_import_is_listed_and_one_tap_resumes_it(
    open_page: Callable[..., Any], world: World, e2e_media: Path
) -> None:
    page = open_page(_path(world), viewport=TABLET, has_touch=True)
    page.on("dialog", lambda dialog: dialog.accept())  # "leave the page while sending?"
    page.evaluate("localStorage.setItem('chairside.uploadChunkBytes', String(64 * 1024))")
    page.reload()
    page.wait_for_function(LOADED)
    patches = 0

    def cut_after_two_chunks(route: Any) -> None:
        nonlocal patches
        if route.request.method == "PATCH":
            patches += 1
            if patches > 2:
                route.abort()
                return
        route.continue_()

    page.route("**/api/v1/uploads/**", cut_after_two_chunks)
    page.click("#import-button")
    page.set_input_files("#file-input", str(e2e_media / "big.jpg"))
    page.wait_for_selector(".q-item[data-state=retrying]")
    page.unroute("**/api/v1/uploads/**")
    page.reload()  # the tab is reloaded (or the tablet restarted it) mid-import
    page.wait_for_function(LOADED)
    row = page.wait_for_selector("#pending-imports .q-item[data-state=interrupted]")
    assert "big.jpg" in (row.text_content() or "")
    assert page.is_visible("#imports")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.method) if "/api/v1/uploads/" in r.url else None)
    with page.expect_file_chooser() as chooser:
        page.click("#pending-imports .resume")
    chooser.value.set_files(str(e2e_media / "big.jpg"))
    page.wait_for_selector(".q-item[data-state=done]", timeout=30_000)
    assert "POST" not in requests and "HEAD" in requests  # carried on from the server's offset
    page.wait_for_function("() => document.querySelectorAll('.tile').length === 4")
    assert page.locator("#pending-imports .q-item").count() == 0
    page.reload()
    page.wait_for_function(LOADED)
    assert page.locator("#pending-imports .q-item").count() == 0  # nothing left to resume
    assert not page.js_errors


def test_compare_labels_each_cell_and_shows_the_2_to_4_hint(
    ctx: Context, open_page: Callable[..., Any], world: World
) -> None:
    boss = operator(world.tenant.contract_id)
    set_tags(ctx, boss, uuid.UUID(world.media["before.mp4"]["id"]), ["術前"])
    set_tags(ctx, boss, uuid.UUID(world.media["after.mp4"]["id"]), ["術後", "説明用"])
    page = open_page(_path(world), viewport=TABLET, has_touch=True)
    page.wait_for_function(LOADED)
    page.click("#select-toggle")
    page.click(f".tile[data-id='{world.media['before.mp4']['id']}'] .tile-btn")
    assert page.is_visible("#compare-hint")
    assert page.text_content("#compare-hint") == "2〜4 件を選ぶと並べて比較できます"
    for name in ("after.mp4", "photo.jpg"):
        page.click(f".tile[data-id='{world.media[name]['id']}'] .tile-btn")
    assert not page.is_visible("#compare-hint")
    page.click("#compare-button")
    page.wait_for_selector("#compare .compare-label")
    labels = page.evaluate("() => [...document.querySelectorAll('#compare .compare-label')].map((e) => e.textContent)")
    assert len(labels) == 3 and "術前" in labels and "術後" in labels
    untagged = [label for label in labels if label not in ("術前", "術後")]
    assert len(untagged) == 1 and "年" in untagged[0]  # the photo: the day it was taken
    # A deep link to the comparison (a fresh load: the tags come after the first page) labels them too.
    ids = ",".join(world.media[name]["id"] for name in ("before.mp4", "after.mp4"))
    page.goto(f"{world.url}{_path(world)}?compare={ids}")
    page.wait_for_selector("#compare .compare-label")
    labels = page.evaluate("() => [...document.querySelectorAll('#compare .compare-label')].map((e) => e.textContent)")
    assert labels == ["術前", "術後"]
    assert not page.js_errors
