"""Browser tests: the real viewer in Debian's Chromium, driven by Playwright, against the real server.

Chromium is taken from the system (/usr/bin/chromium); Playwright's own browser download is never
used. Without it these tests are skipped, or fail when CHAIRSIDE_REQUIRE_BROWSER=1 (CI sets it).
They run on SQLite only: the API tests already cover both databases, and the browser is the slow part.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chairside.client import Client
from chairside.context import Context
from tests.conftest import LiveServer, Tenant, Viewer, make_account, sign_in

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chairside.db'}"


@pytest.fixture(scope="package")  # closed after tests/e2e: a live sync Playwright keeps an event loop running
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def launch_chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright, for a `browser` fixture (each browser test folder scopes its own);
    skipped when missing, unless CHAIRSIDE_REQUIRE_BROWSER=1 (CI) makes that a failure."""
    if not CHROMIUM.exists():
        if os.environ.get("CHAIRSIDE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium is required (CHAIRSIDE_REQUIRE_BROWSER=1) but {CHROMIUM} is missing: "
                        "apt-get install chromium")
        pytest.skip(f"no browser at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def e2e_media(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clips long enough to seek in (4 s, 30 fps), and a photo large enough to upload in several chunks."""
    from chairside.mediafile import generate
    d = tmp_path_factory.mktemp("e2e-media")
    generate.make_video(d / "before.mp4", seconds=4.0, width=640, height=360, fps=30, label="before",
                        bitrate=1_000_000)
    generate.make_video(d / "after.mp4", seconds=4.0, width=640, height=360, fps=30, label="after", seed=7,
                        bitrate=1_000_000)
    generate.make_jpeg(d / "big.jpg", width=2000, height=1500, seed=3, quality=95,
                       captured_at=datetime(2026, 10, 1, 9, 30, tzinfo=UTC))
    for name in ("photo.jpg", "photo.heic"):
        (d / name).write_bytes((media_dir / name).read_bytes())
    return d


@dataclass
class World:
    server: LiveServer
    tenant: Tenant
    viewer: Viewer
    patient: dict[str, Any]
    media: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def patient_url(self, media_id: str | None = None) -> str:
        return f"{self.url}/p/{self.patient['id']}" + (f"?m={media_id}" if media_id else "")


@pytest.fixture
def world(ctx: Context, server: LiveServer, tenant: Tenant, e2e_media: Path) -> World:
    """A clinic with a viewer account, a patient with two videos and a photo, and two other patients."""
    viewer = make_account(ctx, tenant, "dr-sato")
    with Client(server.url, tenant.token) as chair:
        patient = chair.create_patient(tenant.clinic_ids[0], "00123", "山田 太郎", "ヤマダ タロウ",
                                       birth_date="1980-04-01", sex="male")
        chair.create_patient(tenant.clinic_ids[0], "00124", "山田 花子", "ヤマダ ハナコ", sex="female")
        chair.create_patient(tenant.clinic_ids[1], "00200", "佐藤 健一", "サトウ ケンイチ", sex="male")
        media = {name: chair.upload(e2e_media / name, patient["id"]) for name in ("before.mp4", "after.mp4",
                                                                                   "photo.jpg")}
    return World(server, tenant, viewer, patient, media)


@pytest.fixture
def open_page(browser: Any, world: World) -> Iterator[Callable[..., Any]]:
    """A fresh browser (context) signed in as the world's viewer, at a path; several may be opened."""
    contexts: list[Any] = []

    def make(path: str = "/", *, device: str = "Test browser", signed_in: bool = True, **options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("accept_downloads", True)
        context = browser.new_context(**options)
        contexts.append(context)
        if signed_in:
            token = sign_in(world.server, world.viewer, device, takeover=True)
            context.add_cookies([{"name": "cs_session", "value": token, "url": world.url, "httpOnly": True}])
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.js_errors = errors
        page.goto(world.url + path)
        return page

    yield make
    for context in contexts:
        context.close()


def wait_video(page: Any, selector: str = "#viewer video") -> None:
    page.wait_for_function(f"() => document.querySelector('{selector}')?.readyState >= 1")


def video_time(page: Any, selector: str = "#viewer video") -> float:
    value: float = page.evaluate(f"document.querySelector('{selector}').currentTime")
    return value


def seek_slider(page: Any, seconds: float, scope: str = "#viewer") -> None:
    page.evaluate("""([scope, s]) => {
        const el = document.querySelector(scope + ' input.seek');
        el.value = String(s);
        el.dispatchEvent(new Event('input', { bubbles: true }));
    }""", [scope, seconds])


def settled(page: Any, selector: str = "#viewer video") -> None:
    """Wait until the video has finished seeking and shows a decoded frame."""
    page.wait_for_function(f"() => {{ const v = document.querySelector('{selector}'); "
                           "return v && !v.seeking && v.readyState >= 2; }")
