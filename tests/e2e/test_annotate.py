"""Annotating a photo or a paused frame: the annotation is stored apart from the original, there after a
reload, shown or hidden at will, and tied to the video time it was drawn at."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.e2e.conftest import World, seek_slider, settled, wait_video

INKED = """() => {
  const c = document.querySelector('#viewer canvas.ink');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;
  return n;
}"""


def _drag(page: Any, points: list[tuple[float, float]]) -> None:
    box = page.locator("#viewer canvas.ink").bounding_box()
    xy = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()


def _annotations(world: World, media_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{world.url}/api/v1/media/{media_id}/annotations",
                  headers={"Authorization": f"Bearer {world.tenant.token}"})  # as a station: the browser stays in
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_annotate_a_photo_reload_and_the_annotation_is_still_there(open_page: Callable[..., Any], world: World) -> None:
    photo = world.media["photo.jpg"]
    page = open_page(world.patient_url(photo["id"]).removeprefix(world.url))
    page.wait_for_function("() => document.querySelector('#viewer .stage')?.dataset.ready === '1'")
    assert page.evaluate(INKED) == 0
    page.click("#draw-button")
    _drag(page, [(0.2, 0.2), (0.4, 0.3), (0.5, 0.5)])
    page.click("[aria-label='矢印']")
    page.click("[aria-label='黄']")
    _drag(page, [(0.8, 0.8), (0.6, 0.6)])
    page.click("#draw-save")
    page.wait_for_selector("#viewer[data-layers='1']")
    page.reload()
    page.wait_for_selector("#viewer[data-layers='1']")
    page.wait_for_function("() => document.querySelector('#viewer .stage')?.dataset.layersShown === '1'")
    assert page.evaluate(INKED) > 100
    page.click("#toggle-drawings")  # hide: the original shows untouched
    assert page.evaluate(INKED) == 0
    page.click("#toggle-drawings")
    assert page.evaluate(INKED) > 100
    # The original's bytes never change; the annotation is its own record, with normalised coordinates.
    (annotation,) = _annotations(world, photo["id"])
    assert [s["type"] for s in annotation["shapes"]] == ["pen", "arrow"]
    assert annotation["shapes"][1]["color"] == "#fdd835" and annotation["media_time_s"] is None
    assert (abs(annotation["shapes"][1]["start"][0] - 0.8) < 0.02
            and abs(annotation["shapes"][0]["points"][0][1] - 0.2) < 0.02)
    assert annotation["version"] == 1


def test_an_annotation_on_a_paused_frame_belongs_to_that_time(open_page: Callable[..., Any], world: World) -> None:
    video = world.media["before.mp4"]
    page = open_page(world.patient_url(video["id"]).removeprefix(world.url))
    wait_video(page)
    seek_slider(page, 1.5)
    settled(page)
    page.click("#draw-button")
    page.click("[aria-label='丸']")
    _drag(page, [(0.3, 0.3), (0.6, 0.7)])
    page.click("#draw-save")
    page.wait_for_selector("#viewer[data-layers='1']")
    assert page.locator("#viewer .seek-mark").count() == 1
    assert page.get_attribute("#viewer .stage", "data-layers-shown") == "1"
    seek_slider(page, 3.0)
    settled(page)
    assert page.get_attribute("#viewer .stage", "data-layers-shown") == "0"
    (annotation,) = _annotations(world, video["id"])
    assert abs(annotation["media_time_s"] - 1.5) < 0.01 and annotation["shapes"][0]["type"] == "circle"
