"""Fixtures of the sharing tests: a signed-in viewer account as an HTTP client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, sign_in
from tests.factories import Viewer


@pytest.fixture
def dr(server: LiveServer, viewer: Viewer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {sign_in(server, viewer)}"}) as client:
        yield client
