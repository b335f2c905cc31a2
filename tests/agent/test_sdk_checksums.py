"""The SDK's per-request checksums: on by default over plain http://, off over https:// (TLS protects each
chunk), a Client keyword either way; the whole file's SHA-256 is checked in every case."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from chairside.client import Client
from tests.conftest import LiveServer
from tests.factories import Tenant


class Recording(httpx.HTTPTransport):
    """The real transport, noting whether each PATCH carried Upload-Checksum."""

    def __init__(self) -> None:
        super().__init__()
        self.patches: list[bool] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            self.patches.append("upload-checksum" in request.headers)
        return super().handle_request(request)


@pytest.mark.parametrize(("url", "expected"), [
    ("http://relay.local:8000", True), ("HTTP://relay.local", True), ("https://cloud.example.jp", False),
    ("HTTPS://cloud.example.jp/", False),
])
def test_default_follows_the_scheme(url: str, expected: bool) -> None:
    with Client(url, "t") as c:
        assert c.chunk_checksums is expected
    with Client(url, "t", chunk_checksums=not expected) as c:
        assert c.chunk_checksums is (not expected)


@pytest.mark.parametrize(("setting", "per_call", "sent"), [
    (None, None, True),  # plain http: on
    (False, None, False),  # the client's keyword
    (False, True, True),  # a call may still ask for them
])
def test_patches_carry_checksums_as_set(
    server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path,
    setting: bool | None, per_call: bool | None, sent: bool,
) -> None:
    transport = Recording()
    with Client(server.url, tenant.token, transport=transport, chunk_checksums=setting) as client:
        item = client.upload(media_dir / "clip.mp4", patient["id"], chunk_size=256 * 1024, checksum=per_call)
    assert item["sha256"] == hashlib.sha256((media_dir / "clip.mp4").read_bytes()).hexdigest()
    assert len(transport.patches) > 1 and set(transport.patches) == {sent}


def test_on_created_gives_the_url_to_resume_from(
    server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path,
) -> None:
    urls: list[str] = []
    with Client(server.url, tenant.token) as client:
        item = client.upload(media_dir / "photo.jpg", patient["id"], on_created=urls.append)
        assert len(urls) == 1 and urls[0].startswith(server.url + "/api/v1/uploads/")
        again = client.upload(media_dir / "photo.jpg", patient["id"], media_id=item["id"], resume_url=urls[0],
                              on_created=urls.append)
    assert again["id"] == item["id"] and len(urls) == 1  # resumed (here: already stored), nothing created
