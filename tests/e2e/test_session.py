"""Signing in, Japanese first with English, one device at a time with take-over, nothing from other hosts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import update

from chairside.context import Context
from chairside.db.models import Contract
from tests.e2e.conftest import World


def _sign_in(page: Any, world: World, device: str) -> None:
    page.fill("#login", world.viewer.login)
    page.fill("#password", world.viewer.password)
    page.fill("#device", device)
    page.click("form.auth-form button[type=submit]")


def test_sign_in_shows_the_search_in_japanese_and_english_is_remembered(
    open_page: Callable[..., Any], world: World
) -> None:
    page = open_page("/", signed_in=False)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    assert page.get_attribute("html", "lang") == "ja"
    assert page.text_content("form.auth-form h1") == "サインイン"
    page.fill("#login", world.viewer.login)
    page.fill("#password", "wrong-password-123")
    page.click("form.auth-form button[type=submit]")
    page.wait_for_selector("#signin-error:has-text('パスワードが違います')")
    _sign_in(page, world, "受付 PC")
    page.wait_for_selector("#patient-search")
    assert page.text_content(".search-form label") == "患者を探す"
    # The session cookie is HttpOnly: the page's script cannot read it.
    assert "cs_session" not in page.evaluate("document.cookie")
    page.click("#lang-switch")
    page.wait_for_selector(".search-form label:has-text('Find a patient')")
    assert page.get_attribute("html", "lang") == "en"
    page.reload()
    page.wait_for_selector(".search-form label:has-text('Find a patient')")
    assert not page.js_errors
    assert requests and all(u.startswith(world.url) or u.startswith(("data:", "blob:")) for u in requests), requests


def test_second_device_is_told_who_uses_the_account_takes_over_and_the_first_is_told(
    open_page: Callable[..., Any], world: World
) -> None:
    first = open_page("/", signed_in=False)
    _sign_in(first, world, "受付 PC")
    first.wait_for_selector("#patient-search")
    second = open_page("/", signed_in=False, viewport={"width": 390, "height": 844}, has_touch=True)
    _sign_in(second, world, "診療室 iPad")
    notice = second.wait_for_selector("[role=alertdialog]")
    assert "別の端末で使用中" in notice.text_content()
    assert "受付 PC" in notice.text_content()
    second.click("#takeover")
    second.wait_for_selector("#patient-search")
    # The first device finds out at its next request: here its heartbeat, sent when the page is shown again.
    first.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    taken = first.wait_for_selector("[role=alertdialog]:has-text('別の端末に引き継がれました')")
    assert "診療室 iPad" in taken.text_content()
    first.click("#signin-again")
    first.wait_for_selector("#login")


def test_any_401_from_a_takeover_shows_the_taken_over_screen(open_page: Callable[..., Any], world: World) -> None:
    from tests.conftest import sign_in

    page = open_page("/", device="Chair PC")
    page.wait_for_selector("#patient-search")
    sign_in(world.server, world.viewer, "Phone", takeover=True)
    page.fill("#patient-search", "やまだ")  # a search is an API call like any other
    taken = page.wait_for_selector("[role=alertdialog]")
    assert "Phone" in taken.text_content()


def test_the_plan_banner_shows_when_the_plan_is_nearly_full(
    ctx: Context, open_page: Callable[..., Any], world: World
) -> None:
    with ctx.db.session() as s:  # 100-hour plan, 85.5 hours stored
        s.execute(update(Contract).where(Contract.id == world.tenant.contract_id)
                  .values(stored_video_ms=int(85.5 * 3600_000)))
    page = open_page("/")
    banner = page.wait_for_selector("#quota-banner:not([hidden])")
    assert "85.5%" in banner.text_content() and "100" in banner.text_content()
    page.click("#quota-banner button")
    page.wait_for_selector("#quota-banner", state="hidden")


def test_no_banner_while_the_plan_has_room(open_page: Callable[..., Any]) -> None:
    page = open_page("/")
    page.wait_for_selector("#patient-search")
    page.wait_for_timeout(300)
    assert page.is_hidden("#quota-banner")


def test_a_patient_link_opened_signed_out_shows_the_patient_after_signing_in(
    open_page: Callable[..., Any], world: World
) -> None:
    # The page asks for the patient before it knows whether anyone is signed in (to save a round trip); that
    # answer is a 401, and signing in must fetch the patient again rather than show the refused one (empty).
    page = open_page(f"/p/{world.patient['id']}", signed_in=False)
    page.wait_for_selector("form.auth-form")
    _sign_in(page, world, "受付 PC")
    page.wait_for_selector(".tile")
    assert page.locator(".tile").count() == 3
    assert world.patient["name"] in (page.text_content("#topbar-title") or "")
    assert not page.js_errors
