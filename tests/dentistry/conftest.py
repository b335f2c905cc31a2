"""Fixtures of the dentistry tests: a signed-in viewer account as an HTTP client, and a patient's items."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import Client
from tests.conftest import LiveServer, sign_in
from tests.factories import Viewer


@pytest.fixture
def dr(server: LiveServer, viewer: Viewer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {sign_in(server, viewer)}"}) as client:
        yield client


@pytest.fixture
def items(api: Client, patient: dict[str, Any], media_dir: Path) -> list[dict[str, Any]]:
    """Three items of the patient: a photo, a clip, another photo."""
    return [api.upload(media_dir / name, str(patient["id"])) for name in ("photo.jpg", "clip.mp4", "photo.png")]


@pytest.fixture
def photo(api: Client, patient: dict[str, Any], media_dir: Path) -> dict[str, Any]:
    """One photo of the patient."""
    return api.upload(media_dir / "photo.jpg", str(patient["id"]))
