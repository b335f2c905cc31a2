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
    yield from e2e.launch_chromium()
