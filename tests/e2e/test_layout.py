"""Layouts for desktop, tablet (both ways) and phone; names for every control; the keyboard alone suffices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import World

UNNAMED = """() => [...document.querySelectorAll('button, input:not([type=hidden]), select, a[href]')]
  .filter((el) => el.offsetParent !== null || el.closest('.imports'))
  .filter((el) => {
    const label = el.getAttribute('aria-label') || el.getAttribute('title') || el.textContent.trim()
      || (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest('label');
    return !label;
  }).map((el) => el.outerHTML.slice(0, 120))"""


@pytest.mark.parametrize(("width", "height", "two_panes", "bottom_nav"), [
    (1440, 900, True, False),   # desktop
    (1024, 768, True, False),   # tablet, landscape
    (768, 1024, False, False),  # tablet, portrait
    (390, 844, False, True),    # phone
])
def test_layout_per_screen(open_page: Callable[..., Any], world: World, width: int, height: int, two_panes: bool,
                           bottom_nav: bool) -> None:
    page = open_page(world.patient_url().removeprefix(world.url), viewport={"width": width, "height": height},
                     has_touch=width < 1200)
    page.wait_for_selector(".tile")
    assert page.is_visible(".pane-patient")
    assert page.is_visible(".pane-search") is two_panes
    assert page.is_visible(".bottomnav") is bottom_nav
    assert page.is_visible(".back-btn") is not two_panes
    no_overflow = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(no_overflow)
    if bottom_nav:
        page.click("#nav-search")
        page.wait_for_selector(".pane-search", state="visible")
        page.click("#nav-patient")
        page.wait_for_selector(".tile")
        page.click("#nav-import")
        assert page.is_visible("#imports")
    page.click(f".tile[data-id='{world.media['before.mp4']['id']}'] .tile-btn", force=True)
    page.wait_for_selector("#viewer .play")
    for selector in ("#viewer .play", "#viewer input.seek", "#draw-button", "#viewer-close"):
        box = page.locator(selector).bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= height, selector
        assert box["height"] >= 40, selector  # large enough for a finger
    assert page.evaluate(no_overflow)


def test_every_control_has_a_name(open_page: Callable[..., Any], world: World) -> None:
    page = open_page(world.patient_url().removeprefix(world.url))
    page.wait_for_selector(".tile")
    page.click("#import-button")
    assert page.evaluate(UNNAMED) == []
    page.click(f".tile[data-id='{world.media['photo.jpg']['id']}'] .tile-btn", force=True)
    page.wait_for_selector("#viewer")
    assert page.evaluate(UNNAMED) == []
    page.click("#draw-button")
    assert page.evaluate(UNNAMED) == []


def test_the_keyboard_alone_finds_a_patient_and_plays_a_video(open_page: Callable[..., Any], world: World) -> None:
    page = open_page("/")
    page.wait_for_selector("#patient-search")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.focus("#patient-search")
    page.keyboard.type("やまだ た")
    page.wait_for_selector("#patient-results[data-count='1']")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector(".tile")
    page.focus(f".tile[data-id='{world.media['before.mp4']['id']}'] .tile-btn")
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer")
    assert page.evaluate("document.activeElement.id") == "viewer-close"
    page.wait_for_function("() => document.querySelector('#viewer video').readyState >= 1")
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('#viewer video').currentTime > 0.2")
    page.keyboard.press("Space")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="detached")
    # Focus returns to where it was before the viewer opened.
    assert page.evaluate("document.activeElement.closest('.tile')?.dataset.id") == world.media["before.mp4"]["id"]
