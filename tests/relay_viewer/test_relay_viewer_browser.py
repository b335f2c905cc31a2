"""The counselling-room tablet with the internet down: the real viewer in Debian's Chromium, served by the
relay whose cloud cannot be reached. Sign in, find the patient, play a cached video, draw on it and save;
the drawing reaches the cloud when the line returns."""

# ruff: noqa: F811  (the fixtures imported from follow_fixtures are used as arguments)
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.db.models import Annotation
from tests.relay.follow_fixtures import cloud, wait_for  # noqa: F401  (fixtures)
from tests.relay_viewer.conftest import Clinic, clinic  # noqa: F401  (fixtures)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chairside.db'}"  # the browser is the slow part: the API tests cover both


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CHAIRSIDE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium is required (CHAIRSIDE_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
        pytest.skip(f"no browser at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from chairside.mediafile import generate
    path = tmp_path_factory.mktemp("relay-viewer") / "consult.mp4"
    generate.make_video(path, seconds=3.0, width=640, height=360, fps=30, label="consult", bitrate=800_000)
    return path


def _drag(page: Any, points: list[tuple[float, float]]) -> None:
    box = page.locator("#viewer canvas.ink").bounding_box()
    xy = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()


def test_sign_in_find_play_and_draw_at_the_relay_with_the_cloud_away(
        clinic: Clinic, browser: Any, clip: Path) -> None:
    c = clinic
    station = c.cloud.station(0)
    patient = station.create_patient(c.cloud.clinic_ids[0], "02001", "診療 一郎", "シンリョウ イチロウ")
    item = station.upload(clip, patient["id"])
    at_relay = {"Authorization": f"Bearer {c.cloud.station_tokens[0]}"}
    wait_for(lambda: httpx.get(f"{c.relay.url}/api/v1/media/{item['id']}", headers=at_relay).status_code == 200,
             "the recording at the relay")
    # Played once at the relay while the line was up (or prefetched): its bytes are in the relay's cache.
    assert httpx.get(f"{c.relay.url}/api/v1/media/{item['id']}/content", headers=at_relay,
                     timeout=60).status_code == 200
    wait_for(lambda: c.relay_ctx.blobs.stat(item["sha256"]) is not None, "the recording in the relay's cache")

    c.wan.outage()  # the internet is down from here on
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(c.relay.url + "/")
        page.fill("#login", c.viewer.login)
        page.fill("#password", c.viewer.password)
        page.fill("#device", "カウンセリング iPad")
        page.click("form.auth-form button[type=submit]")
        page.fill("#patient-search", "しんりょう")
        page.click("#patient-results a:has-text('診療 一郎')")
        page.wait_for_selector("#patient-name:has-text('診療 一郎')")
        page.wait_for_function("() => document.querySelector('#timeline').dataset.loaded === '1'")
        assert page.locator(".tile").count() == 1
        page.goto(f"{c.relay.url}/p/{patient['id']}?m={item['id']}")
        page.wait_for_function("() => document.querySelector('#viewer video')?.readyState >= 2")
        page.click("#viewer .play")
        page.wait_for_function("() => document.querySelector('#viewer video').currentTime > 0.3")
        page.click("#viewer .play")
        page.wait_for_function("() => document.querySelector('#viewer video').paused")
        page.click("#draw-button")
        _drag(page, [(0.2, 0.2), (0.4, 0.3), (0.5, 0.5)])
        page.click("#draw-save")
        page.wait_for_selector("#viewer[data-layers='1']")
        assert not errors, errors
        assert all(u.startswith(c.relay.url) or u.startswith(("data:", "blob:")) for u in requests), requests
    finally:
        context.close()

    media_id = uuid.UUID(item["id"])
    with c.cloud.ctx.db.read() as s:  # the cloud cannot have it yet
        assert s.scalar(select(Annotation.id).where(Annotation.media_id == media_id)) is None
    c.wan.outage(False)  # the line returns

    def at_cloud() -> Annotation | None:
        with c.cloud.ctx.db.read() as s:
            return s.scalar(select(Annotation).where(Annotation.media_id == media_id))
    drawing = wait_for(at_cloud, "the drawing at the cloud", timeout=60)
    assert [shape["type"] for shape in drawing.shapes] == ["pen"] and drawing.author_name == c.viewer.login
    assert drawing.media_time_s is not None and drawing.media_time_s > 0.2
