"""Playing a video: Range requests only, play, seek (it lands where asked), speed, frame step, keyboard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import World, seek_slider, settled, video_time, wait_video

FRAME = 1 / 30


def _open_video(open_page: Callable[..., Any], world: World, name: str = "before.mp4") -> Any:
    page = open_page(world.patient_url(world.media[name]["id"]).removeprefix(world.url))
    wait_video(page)
    return page


def test_play_then_seek_lands_where_asked_and_streams_with_ranges(
    open_page: Callable[..., Any], world: World
) -> None:
    statuses: list[tuple[int, str | None]] = []
    page = open_page("/")
    page.on("response", lambda r: statuses.append((r.status, r.request.headers.get("range")))
            if "/content" in r.url else None)
    page.goto(world.patient_url(world.media["before.mp4"]["id"]))
    wait_video(page)
    assert page.get_attribute("#viewer video", "preload") == "metadata"
    assert page.evaluate("document.querySelector('#viewer video').controls") is False
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('#viewer video').currentTime > 0.5")
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('#viewer video').paused")
    assert page.get_attribute("#viewer .play", "aria-pressed") == "false"
    seek_slider(page, 2.5)
    settled(page)
    assert abs(video_time(page) - 2.5) < 0.01
    page.keyboard.press("Shift+ArrowLeft")
    settled(page)
    assert abs(video_time(page) - 1.5) < 0.01
    page.keyboard.press("ArrowRight")  # +5 s, held at the end
    settled(page)
    assert video_time(page) > 3.9
    assert statuses and all(status == 206 and rng for status, rng in statuses), statuses
    assert not page.js_errors


def test_frame_step_moves_one_thirtieth_of_a_second(open_page: Callable[..., Any], world: World) -> None:
    page = _open_video(open_page, world)
    seek_slider(page, 1.0)
    settled(page)
    start = video_time(page)
    page.keyboard.press(".")
    settled(page)
    after = video_time(page)
    assert abs((after - start) - FRAME) < 0.002
    frame = int(page.get_attribute("#viewer input.seek", "data-frame") or "0")
    page.click("[aria-label='1 コマ進む']")
    settled(page)
    assert int(page.get_attribute("#viewer input.seek", "data-frame") or "0") == frame + 1
    page.keyboard.press(",")
    page.keyboard.press(",")
    settled(page)
    assert abs(video_time(page) - (after - FRAME)) < 0.002
    assert page.evaluate("document.querySelector('#viewer video').paused")


def test_speed_from_a_quarter_to_double(open_page: Callable[..., Any], world: World) -> None:
    page = _open_video(open_page, world)
    options = page.locator("#viewer select.speed option").all_text_contents()
    assert options[0] == "0.25×" and options[-1] == "2×"
    page.select_option("#viewer select.speed", "0.25")
    assert page.evaluate("document.querySelector('#viewer video').playbackRate") == 0.25
    page.keyboard.press("Space")
    page.wait_for_timeout(800)
    page.keyboard.press("Space")
    assert 0.05 < video_time(page) < 0.5  # a quarter of real time
    page.select_option("#viewer select.speed", "2")
    assert page.evaluate("document.querySelector('#viewer video').playbackRate") == 2


def test_the_viewer_closes_with_escape_and_returns_to_the_timeline(
    open_page: Callable[..., Any], world: World
) -> None:
    page = _open_video(open_page, world)
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="detached")
    assert page.url == world.patient_url()
    page.click(f".tile[data-id='{world.media['photo.jpg']['id']}'] .tile-btn")
    page.wait_for_selector("#viewer img.media")
    page.wait_for_function("() => document.querySelector('#viewer img.media').naturalWidth > 0")
    page.keyboard.press("+")
    assert page.text_content(".zoom-label") == "150%"
    page.keyboard.press("0")
    assert page.text_content(".zoom-label") == "100%"


def test_save_the_frame_on_screen_as_a_new_photo(open_page: Callable[..., Any], world: World) -> None:
    import httpx

    page = _open_video(open_page, world)
    seek_slider(page, 1.0)
    settled(page)
    page.click("#save-frame")
    page.wait_for_selector(".q-item[data-state=done]")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelectorAll('.tile').length === 4")
    items = httpx.get(f"{world.url}/api/v1/patients/{world.patient['id']}/media",
                      headers={"Authorization": f"Bearer {world.tenant.token}"}).json()["items"]
    (frame,) = [m for m in items if m["filename"].startswith("before_")]
    assert frame["kind"] == "image" and frame["mime"] == "image/jpeg"
    assert (frame["width"], frame["height"]) == (640, 360)
    clip = world.media["before.mp4"]
    from datetime import datetime

    offset = datetime.fromisoformat(frame["captured_at"]) - datetime.fromisoformat(clip["captured_at"])
    assert abs(offset.total_seconds() - 1.0) < 0.01  # the moment of the frame, not the upload


def test_a_photo_zooms_with_the_wheel_and_pans_by_dragging(open_page: Callable[..., Any], world: World) -> None:
    page = open_page(world.patient_url(world.media["photo.jpg"]["id"]).removeprefix(world.url))
    page.wait_for_function("() => document.querySelector('#viewer .stage')?.dataset.ready === '1'")
    box = page.locator("#viewer .stage").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -400)
    page.wait_for_function("() => parseInt(document.querySelector('.zoom-label').textContent) > 150")
    before = page.evaluate("document.querySelector('#viewer .stage-content').style.transform")
    page.mouse.down()
    page.mouse.move(cx + 120, cy + 60, steps=5)
    page.mouse.up()
    after = page.evaluate("document.querySelector('#viewer .stage-content').style.transform")
    assert before != after and "scale(" in after
