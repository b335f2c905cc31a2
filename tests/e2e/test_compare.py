"""Two videos side by side: one play, one seek and one frame step drive both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import World, seek_slider

TIMES = "() => [...document.querySelectorAll('#compare video')].map((v) => v.currentTime)"
SETTLED = "() => [...document.querySelectorAll('#compare video')].every((v) => !v.seeking && v.readyState >= 2)"


def test_compare_plays_and_seeks_two_videos_in_step(open_page: Callable[..., Any], world: World) -> None:
    page = open_page(world.patient_url().removeprefix(world.url))
    page.wait_for_selector(".tile")
    page.click("#select-toggle")
    for name in ("before.mp4", "after.mp4"):
        page.click(f".tile[data-id='{world.media[name]['id']}'] .tile-btn")
    assert page.text_content(".sel-count") == "2 件を選択中"
    page.click("#compare-button")
    page.wait_for_selector("#compare")
    assert page.locator("#compare video").count() == 2
    page.wait_for_function("() => [...document.querySelectorAll('#compare video')].every((v) => v.readyState >= 1)")
    page.click("#compare .play")
    page.wait_for_function("() => [...document.querySelectorAll('#compare video')].every((v) => v.currentTime > 1)")
    page.keyboard.press("Space")
    page.wait_for_function(SETTLED)
    a, b = page.evaluate(TIMES)
    assert abs(a - b) < 0.1, (a, b)
    seek_slider(page, 2.0, scope="#compare")
    page.wait_for_function(SETTLED)
    assert [round(t, 3) for t in page.evaluate(TIMES)] == [2.0, 2.0]
    page.keyboard.press(".")
    page.wait_for_function(SETTLED)
    assert all(abs(t - (2.0 + 1 / 30)) < 0.002 for t in page.evaluate(TIMES))
    page.keyboard.press("Escape")
    page.wait_for_selector("#compare", state="detached")
    assert page.url == world.patient_url()
    assert not page.js_errors
