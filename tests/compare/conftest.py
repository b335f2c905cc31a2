"""Compare in Debian's Chromium: the browser and the e2e world (tests/e2e/conftest.py), SQLite only like the
other browser tests."""

# ruff: noqa: F401  (fixtures imported to be used by the tests of this folder)
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import conftest as e2e
from tests.e2e.conftest import database_url, e2e_media, open_page, world


@pytest.fixture(scope="package")  # closed after this folder: a live sync Playwright keeps an event loop running
def browser() -> Iterator[Any]:
    if not e2e.CHROMIUM.exists():
        if os.environ.get("CHAIRSIDE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium is required (CHAIRSIDE_REQUIRE_BROWSER=1) but {e2e.CHROMIUM} is missing")
        pytest.skip(f"no browser at {e2e.CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        yield chromium
        chromium.close()
