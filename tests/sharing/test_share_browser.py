"""In Debian's Chromium: the viewer makes a share link for selected items and shows its QR code; the patient's
phone opens the link without credentials and sees the first picture; the withdrawn, expired and wrong link are
refused alike. SQLite only, as the other browser tests (tests/e2e/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from chairside.context import Context
from chairside.db.models import ShareLink, utcnow
from tests.e2e import conftest as e2e
from tests.e2e.conftest import World, database_url, e2e_media, open_page, world  # noqa: F401


@pytest.fixture(scope="module")  # closed after this module: a live sync Playwright keeps an event loop running
def browser() -> Iterator[Any]:
    yield from e2e.launch_chromium()


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
FIRST_IMAGE = ("() => { const i = document.querySelector('#shared-items img'); "
               "return i && i.complete && i.naturalWidth > 0; }")


def _make_link(page: Any, at: World, names: list[str]) -> str:
    page.wait_for_selector(".tile")
    if names:
        page.click("#select-toggle")
    for name in names:
        page.click(f".tile[data-id='{at.media[name]['id']}'] .tile-btn")
    page.click("#share-button")
    page.wait_for_selector("#share-lifetime")
    page.click("#share-create")
    page.wait_for_function("() => { const q = document.querySelector('#share-qr'); return q && q.naturalWidth > 0; }")
    url: str = page.input_value("#share-url")
    return url


def test_a_patient_opens_a_share_link_on_a_phone_and_a_refused_link_says_so_alike(
    ctx: Context, browser: Any, open_page: Callable[..., Any], world: World  # noqa: F811
) -> None:
    clinic = open_page(world.patient_url().removeprefix(world.url))
    url = _make_link(clinic, world, ["photo.jpg", "before.mp4"])
    assert url.startswith(f"{world.url}/s/")

    phone = browser.new_context(**PHONE)  # the patient's phone: no cookie, no account
    try:
        page = phone.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function(FIRST_IMAGE, timeout=15_000)
        assert page.locator("#shared-items figure").count() == 2
        assert page.locator("#shared-items video").get_attribute("poster")
        box = page.locator("#shared-items img").bounding_box()
        assert box is not None and box["width"] >= 380  # as wide as the phone
        assert "テスト歯科 1" in page.text_content(".share-head h1")
        assert not errors

        # withdrawn in the clinic's dialog: the phone's reload is refused
        clinic.click("#share-revoke")
        clinic.wait_for_function("() => document.querySelector('#share-status').textContent.includes('取り消しました')")
        revoked = page.goto(url)
        assert revoked is not None and revoked.status == 404
        refused = page.text_content("#share-refused")

        # an expired link (moved into the past in the row: no service does that) and a wrong one: the same page
        clinic.click("#share-close")
        expired_url = _make_link(clinic, world, [])  # the selection is still on: the same two items
        with ctx.db.session() as s:
            s.execute(update(ShareLink).where(ShareLink.revoked_at.is_(None))
                      .values(expires_at=utcnow() - timedelta(seconds=1)))
        bodies = set()
        for other in (expired_url, f"{world.url}/s/{uuid.uuid4().hex}{uuid.uuid4().hex}"):
            answer = page.goto(other)
            assert answer is not None and answer.status == 404
            assert page.text_content("#share-refused") == refused
            bodies.add(answer.text())
        assert len(bodies) == 1 and page.locator("#shared-items").count() == 0
    finally:
        phone.close()
    assert not clinic.js_errors
