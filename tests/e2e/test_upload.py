"""Importing through the file input: JPEG and HEIC (shown as JPEG), each upload resumable after a cut."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import World

DONE = "() => document.querySelectorAll('.q-item[data-state=done]').length === {n}"


def _media(world: World) -> list[dict[str, Any]]:
    r = httpx.get(f"{world.url}/api/v1/patients/{world.patient['id']}/media",
                  headers={"Authorization": f"Bearer {world.tenant.token}"})  # as a station: the browser stays in
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_upload_a_jpeg_and_a_heic_through_the_file_input(
    open_page: Callable[..., Any], world: World, e2e_media: Path
) -> None:
    page = open_page(world.patient_url().removeprefix(world.url))
    page.wait_for_function("() => document.querySelector('#timeline')?.dataset.loaded === '1'")
    assert page.locator(".tile").count() == 3
    page.click("#import-button")
    assert page.get_attribute("#file-input", "accept") == "image/*,video/*"
    assert page.get_attribute("#file-input", "multiple") is not None
    page.set_input_files("#file-input", [str(e2e_media / "big.jpg"), str(e2e_media / "photo.heic")])
    page.wait_for_function(DONE.format(n=2), timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('.tile').length === 5")
    stored = {m["filename"]: m for m in _media(world)}
    assert stored["big.jpg"]["captured_at"].startswith("2026-10-01T09:30")  # the photo's own EXIF time
    assert stored["big.jpg"]["source"] == "viewer"
    assert stored["big.jpg"]["sha256"] == hashlib.sha256((e2e_media / "big.jpg").read_bytes()).hexdigest()
    heic = stored["photo.heic"]
    assert heic["mime"] == "image/heic"
    page.click(f".tile[data-id='{heic['id']}'] .tile-btn")
    page.wait_for_function("() => document.querySelector('#viewer img.media')?.naturalWidth > 0")
    assert page.evaluate("document.querySelector('#viewer img.media').naturalWidth") == heic["width"]
    assert not page.js_errors


def test_a_cut_connection_mid_upload_resumes_from_the_servers_offset(
    open_page: Callable[..., Any], world: World, e2e_media: Path
) -> None:
    page = open_page(world.patient_url().removeprefix(world.url))
    page.evaluate("localStorage.setItem('chairside.uploadChunkBytes', String(32 * 1024))")
    page.reload()
    page.wait_for_function("() => document.querySelector('#timeline')?.dataset.loaded === '1'")
    seen: list[str] = []

    def cut_second_patch(route: Any) -> None:
        request = route.request
        seen.append(f"{request.method} {request.headers.get('upload-offset', '')}")
        if request.method == "PATCH" and sum(s.startswith("PATCH") for s in seen) == 2:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/uploads/**", cut_second_patch)
    page.click("#import-button")
    size = (e2e_media / "big.jpg").stat().st_size
    assert size > 3 * 32 * 1024
    page.set_input_files("#file-input", str(e2e_media / "big.jpg"))
    page.wait_for_function(DONE.format(n=1), timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('.tile').length === 4")
    # The second PATCH was cut; the client asked where to resume (HEAD) and went on from 32 KiB.
    patches = [s for s in seen if s.startswith("PATCH")]
    assert patches[:3] == ["PATCH 0", "PATCH 32768", "PATCH 32768"], seen
    assert seen[seen.index("PATCH 32768") + 1].startswith("HEAD"), seen
    stored = [m for m in _media(world) if m["filename"] == "big.jpg"]
    assert len(stored) == 1 and stored[0]["size"] == size
    assert stored[0]["sha256"] == hashlib.sha256((e2e_media / "big.jpg").read_bytes()).hexdigest()


def test_going_offline_mid_upload_waits_and_finishes_when_back_online(
    open_page: Callable[..., Any], world: World, e2e_media: Path
) -> None:
    page = open_page(world.patient_url().removeprefix(world.url))
    page.evaluate("localStorage.setItem('chairside.uploadChunkBytes', String(32 * 1024))")
    page.reload()
    page.wait_for_function("() => document.querySelector('#timeline')?.dataset.loaded === '1'")
    patches = 0

    def go_offline_after_two(route: Any) -> None:
        nonlocal patches
        if route.request.method == "PATCH":
            patches += 1
            if patches == 3:
                page.context.set_offline(True)
                route.abort("internetdisconnected")
                return
        route.continue_()

    page.route("**/api/v1/uploads/**", go_offline_after_two)
    page.click("#import-button")
    page.set_input_files("#file-input", str(e2e_media / "big.jpg"))
    page.wait_for_selector(".q-item[data-state=retrying]")
    page.wait_for_timeout(500)
    assert page.get_attribute(".q-item", "data-state") == "retrying"
    page.context.set_offline(False)
    page.wait_for_function(DONE.format(n=1), timeout=30_000)
    assert len([m for m in _media(world) if m["filename"] == "big.jpg"]) == 1
