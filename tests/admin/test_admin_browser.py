"""In Debian's Chromium: a contract admin manages accounts and stations in the viewer. At 1440×900 (and the panel
checked at 1024×768): sees a device session and ends it, adds an account with a scope, resets a password,
disables an account. At 390×844 with touch: reaches the screens from the その他 sheet, issues an enrolment code
that a new station uses, and revokes a station. Each result is checked through the API and the audit trail.
SQLite only, as the other browser tests (tests/e2e/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import AuditEvent
from tests.conftest import LiveServer, sign_in
from tests.e2e import conftest as e2e
from tests.factories import Tenant, Viewer, make_account

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chairside.db'}"


@pytest.fixture(scope="module")  # closed after this module: a live sync Playwright keeps an event loop running
def browser() -> Iterator[Any]:
    yield from e2e.launch_chromium()


@pytest.fixture
def open_as(browser: Any, server: LiveServer) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def make(who: Viewer, device: str, **options: Any) -> Any:
        options.setdefault("viewport", {"width": 1440, "height": 900})
        context = browser.new_context(**options)
        contexts.append(context)
        token = sign_in(server, who, device, takeover=True)
        context.add_cookies([{"name": "cs_session", "value": token, "url": server.url, "httpOnly": True}])
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.js_errors = errors
        page.goto(server.url + "/")
        page.wait_for_selector("#shell")
        return page

    yield make
    for context in contexts:
        context.close()


def _actions(ctx: Context, tenant: Tenant) -> list[str]:
    with ctx.db.read() as s:
        return list(s.scalars(select(AuditEvent.action).where(AuditEvent.contract_id == tenant.contract_id)
                              .order_by(AuditEvent.id)))


def _row(page: Any, login: str) -> Any:
    return page.locator(f"#admin-accounts li[data-login='{login}']")


def test_the_admin_ends_a_session_adds_an_account_resets_a_password_and_disables_one_on_a_pc(
    ctx: Context, server: LiveServer, tenant: Tenant, open_as: Callable[..., Any]
) -> None:
    boss = make_account(ctx, tenant, "office-admin", admin=True)
    dr = make_account(ctx, tenant, "dr-sato")
    dr_device = {"Authorization": f"Bearer {sign_in(server, dr, 'Chair 2 iPad')}"}
    page = open_as(boss, "Office PC")
    page.click("#admin-open")
    page.wait_for_selector("#admin-accounts[data-loaded]")
    row = _row(page, "dr-sato")
    assert "Chair 2 iPad" in row.locator(".admin-session").text_content()
    assert _row(page, "office-admin").locator("#admin-disable-office-admin").count() == 0  # not oneself

    # end its session: the iPad is signed out at once
    row.locator("#admin-end-dr-sato").click()
    assert "Chair 2 iPad" in page.text_content("#admin-end-question")
    page.click("#admin-end-confirm")
    page.wait_for_function("() => document.querySelector(\"#admin-accounts li[data-login='dr-sato'] .admin-session\")"
                           ".textContent.includes('サインインしている端末はありません')")
    me = httpx.get(f"{server.url}/api/v1/me", headers=dr_device)
    assert me.status_code == 401 and me.json()["type"].endswith("/signed-out-by-admin")

    # add an account that sees the second clinic only; a taken login is refused in the sheet first
    page.click("#admin-add-account")
    page.fill("#admin-new-login", "dr-sato")
    page.click("#admin-new-password-suggest")
    password = page.input_value("#admin-new-password")
    assert len(password) == 12
    page.uncheck("#admin-new-scope-all")
    page.check(f"#admin-new-scope-{tenant.clinic_ids[1]}")
    page.click("#admin-new-save")
    page.wait_for_function("() => document.querySelector('#admin-new-error').textContent.includes('使われています')")
    page.fill("#admin-new-login", "hygienist-2")
    page.click("#admin-new-save")
    page.wait_for_selector("#admin-accounts li[data-login='hygienist-2']")
    assert "テスト歯科 2" in _row(page, "hygienist-2").locator(".admin-scope-text").text_content()
    new_token = sign_in(server, Viewer("hygienist-2", password, dr.account_id))
    scope = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {new_token}"}).json()["clinic_ids"]
    assert scope == [str(tenant.clinic_ids[1])]

    # widen it to every clinic from its row's scope sheet; ticking nothing is refused in the sheet first
    _row(page, "hygienist-2").locator("#admin-scope-hygienist-2").click()
    page.uncheck(f"#admin-scope-pick-{tenant.clinic_ids[1]}")
    page.click("#admin-scope-save")
    page.wait_for_function("() => document.querySelector('#admin-scope-error').textContent.includes('1 つ以上')")
    page.check("#admin-scope-pick-all")
    page.click("#admin-scope-save")
    page.wait_for_selector("#admin-scope", state="detached")
    page.wait_for_function("() => document.querySelector(\"#admin-accounts li[data-login='hygienist-2'] "
                           ".admin-scope-text\").textContent.includes('すべての医院')")
    widened = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {new_token}"}).json()
    assert widened["clinic_ids"] is None  # every clinic, the ones added later too

    # reset dr-sato's password: the new one signs in, the old one no more
    _row(page, "dr-sato").locator("#admin-reset-dr-sato").click()
    page.fill("#admin-reset-password", "short")
    page.click("#admin-reset-save")
    page.wait_for_function("() => document.querySelector('#admin-reset-error').textContent.includes('10 文字')")
    page.fill("#admin-reset-password", "clinic-new-pass-7")
    page.click("#admin-reset-save")
    page.wait_for_selector("#admin-reset", state="detached")
    assert sign_in(server, Viewer("dr-sato", "clinic-new-pass-7", dr.account_id), "Chair 2 iPad")
    old = httpx.post(f"{server.url}/api/v1/sessions", json={"login": "dr-sato", "password": dr.password,
                                                           "device_name": "x"})
    assert old.status_code == 401

    # the panel fits a tablet in landscape: nothing wider than the screen
    page.set_viewport_size({"width": 1024, "height": 768})
    box = page.locator("#admin").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1024 and box["height"] <= 768
    assert page.evaluate("() => { const b = document.querySelector('#admin-body'); "
                         "return b.scrollWidth <= b.clientWidth; }")

    # disable dr-sato: a badge, and the account can no longer sign in
    _row(page, "dr-sato").locator("#admin-disable-dr-sato").click()
    page.click("#admin-disable-confirm")
    page.wait_for_selector("#admin-accounts li[data-login='dr-sato'].disabled #admin-enable-dr-sato")
    refused = httpx.post(f"{server.url}/api/v1/sessions", json={"login": "dr-sato", "password": "clinic-new-pass-7",
                                                               "device_name": "x"})
    assert refused.status_code == 401
    actions = _actions(ctx, tenant)
    for action in ("session.end", "account.create", "account.password_reset", "account.disable"):
        assert action in actions, action
    assert not page.js_errors


def test_on_a_phone_the_admin_issues_an_enrolment_code_and_revokes_a_station(
    ctx: Context, server: LiveServer, tenant: Tenant, open_as: Callable[..., Any]
) -> None:
    boss = make_account(ctx, tenant, "office-admin", admin=True)
    viewer = make_account(ctx, tenant, "reception")
    plain = open_as(viewer, "Reception phone", **PHONE)
    assert plain.locator("#admin-open").count() == 0  # only an admin has the entry: not in the top bar,
    plain.tap("#nav-account")
    plain.wait_for_selector("#sheet-lang-switch")
    assert plain.locator("#sheet-admin-open").count() == 0  # nor in the その他 sheet

    page = open_as(boss, "Admin phone", **PHONE)
    assert not page.locator("#admin-open").is_visible()  # the top bar is for the phone's bottom navigation
    page.tap("#nav-account")
    page.tap("#sheet-admin-open")
    page.wait_for_selector("#admin-accounts[data-loaded]")
    page.tap("#admin-tab-stations")
    page.wait_for_selector("#admin-stations[data-loaded]")
    assert page.locator("#admin-stations li").count() == 2
    assert "まだ写真・動画を受け取っていません" in page.text_content("#admin-stations li[data-name='Chair 1']")

    page.tap("#admin-enroll")
    page.select_option("#admin-enroll-clinic", str(tenant.clinic_ids[1]))
    page.tap("#admin-enroll-issue")
    code = page.text_content("#admin-enroll-code", timeout=15_000)
    assert code is not None and len(code) == 19
    sheet = page.locator("#admin-enroll-sheet").bounding_box()
    assert sheet is not None and sheet["width"] <= 390
    enrolled = httpx.post(f"{server.url}/api/v1/stations/enroll", json={"code": code, "name": "Chair 9"})
    assert enrolled.status_code == 201
    page.tap("#admin-enroll-close")
    page.tap("#admin-tab-accounts")
    page.tap("#admin-tab-stations")
    page.wait_for_selector("#admin-stations li[data-name='Chair 9']")

    # it sees its own clinic only, chosen in its row's scope sheet
    page.locator("#admin-stations li[data-name='Chair 9'] button[data-action='scope']").tap()
    page.uncheck("#admin-st-scope-pick-all")
    page.check(f"#admin-st-scope-pick-{tenant.clinic_ids[1]}")
    page.tap("#admin-st-scope-save")
    page.wait_for_selector("#admin-st-scope", state="detached")
    page.wait_for_function("() => document.querySelector(\"#admin-stations li[data-name='Chair 9'] .admin-scope-text\")"
                           ".textContent.includes('テスト歯科 2')")
    assert "scope.set" in _actions(ctx, tenant)

    page.locator("#admin-stations li[data-name='Chair 9'] button[data-action='revoke']").tap()
    page.tap("#admin-revoke-confirm")
    page.wait_for_selector("#admin-stations li[data-name='Chair 9'].disabled")
    gone = httpx.get(f"{server.url}/api/v1/patients", headers={"Authorization": f"Bearer {enrolled.json()['token']}"})
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
    actions = _actions(ctx, tenant)
    assert "station.enroll_code" in actions and "station.revoke" in actions
    page.tap("#admin-close")
    assert page.locator("#admin").count() == 0
    assert not page.js_errors and not plain.js_errors
