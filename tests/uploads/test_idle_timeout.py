"""A PATCH whose client stops sending (bytes stop, the connection stays open) is ended after
`upload_idle_timeout_s`: the bytes that arrived are kept, the upload's lock is released, and the
client's retry resumes from there instead of getting 423 until TCP gives up."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from chairside.client import Client
from chairside.context import Context
from tests.conftest import LiveServer, Tenant
from tests.hostile.locks import wait_until_locked
from tests.uploads.helpers import create, head, meta, offset, patch

IDLE_S = 1.5


def _stalled_patch(url: str, token: str, at: int, declared: int, data: bytes,
                   extra: str = "") -> socket.socket:
    """Open a PATCH declaring `declared` bytes, send `data`, then send nothing more (the socket stays open)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    request = (
        f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {at}\r\nContent-Length: {declared}\r\n{extra}"
        "Content-Type: application/offset+octet-stream\r\n\r\n"
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(request + data)
    return sock


def _answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """The server's answer on a stalled connection (read until the server closes it)."""
    sock.settimeout(timeout)
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    head_part, _, body = raw.partition(b"\r\n\r\n")
    lines = head_part.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _short_timeouts(ctx: Context) -> None:
    # The app reads ctx.settings at each request: a short idle timeout, and a short wait for a busy upload.
    ctx.settings = dataclasses.replace(ctx.settings, upload_idle_timeout_s=IDLE_S, upload_lock_wait_s=0.3)


def test_a_stalled_patch_ends_keeps_its_bytes_and_frees_the_upload(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    _short_timeouts(ctx)
    data = (media_dir / "clip.mp4").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    assert patch(url, tenant.token, 0, data[:20_000]).status_code == 204
    started = time.monotonic()
    sock = _stalled_patch(url, tenant.token, 20_000, len(data) - 20_000, data[20_000:50_000])
    try:
        wait_until_locked(ctx.parts.path(url.rsplit("/", 1)[1]))
        # While the stalled request holds the upload, another PATCH is refused as busy (the old trouble).
        busy = patch(url, tenant.token, 20_000, data[20_000:])
        assert busy.status_code == 423
        assert busy.headers["connection"] == "close"  # a client streaming a body stops sending it
        status, headers, body = _answer(sock, timeout=IDLE_S + 10)
    finally:
        sock.close()
    waited = time.monotonic() - started
    assert status == 408, body
    assert IDLE_S <= waited < IDLE_S + 5
    assert headers["upload-offset"] == "50000" and headers["connection"] == "close"
    assert b"upload-idle" in body
    # The lock is released and the bytes that arrived are kept: HEAD, then resume from there.
    r = head(url, tenant.token)
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "50000"
    r = patch(url, tenant.token, 50_000, data[50_000:])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    (item,) = api.list_media(patient["id"])
    assert item["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_stalled_checksummed_patch_keeps_nothing_and_frees_the_upload(
    ctx: Context, server: LiveServer, tenant: Tenant, patient: dict[str, Any], media_dir: Path
) -> None:
    _short_timeouts(ctx)
    data = (media_dir / "clip.mp4").read_bytes()
    url = server.url + create(server.url, tenant.token, len(data), patient["id"]).headers["Location"]
    assert patch(url, tenant.token, 0, data[:20_000]).status_code == 204
    whole = data[20_000:80_000]
    checksum = "Upload-Checksum: sha256 " + base64.b64encode(hashlib.sha256(whole).digest()).decode() + "\r\n"
    sock = _stalled_patch(url, tenant.token, 20_000, len(whole), whole[:30_000], extra=checksum)
    try:
        status, _, body = _answer(sock, timeout=IDLE_S + 10)
    finally:
        sock.close()
    assert status == 460, body  # a checksummed request is kept only whole, as on a cut
    assert offset(url, tenant.token) == 20_000
    assert patch(url, tenant.token, 20_000, data[20_000:], checksum="sha256").status_code == 204


def test_a_stalled_creation_with_upload_says_where_the_upload_is_so_it_can_be_resumed(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    _short_timeouts(ctx)
    data = (media_dir / "clip.mp4").read_bytes()
    metadata = meta(patient_id=patient["id"], media_id=str(uuid.uuid4()), filename="rec.mp4")
    host = server.url.split("//", 1)[1]
    request = (
        f"POST /api/v1/uploads/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tenant.token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Length: {len(data)}\r\nUpload-Metadata: {metadata}\r\n"
        f"Content-Length: {len(data)}\r\nContent-Type: application/offset+octet-stream\r\n\r\n"
    ).encode()
    h, p = host.split(":")
    sock = socket.create_connection((h, int(p)))
    try:
        sock.sendall(request + data[:40_000])  # the first bytes, then the line goes quiet
        status, headers, body = _answer(sock, timeout=IDLE_S + 10)
    finally:
        sock.close()
    assert status == 408, body
    assert headers["upload-offset"] == "40000"
    url = server.url + headers["location"]  # without it the client could only start over
    assert offset(url, tenant.token) == 40_000
    assert patch(url, tenant.token, 40_000, data[40_000:]).status_code == 204
    (item,) = api.list_media(patient["id"])
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
