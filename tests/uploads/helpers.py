"""Raw tus requests for the tests: what a client would send, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import time
import uuid
from urllib.parse import urlsplit

import httpx

TUS = {"Tus-Resumable": "1.0.0"}
# A PATCH that stores into a real object store on a busy machine can take longer than httpx's 5 s default;
# a request that truly hangs still ends at pytest-timeout.
TIMEOUT_S = 60.0


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(base: str, token: str, length: int, patient_id: str, media_id: str | None = None,
           filename: str = "rec.mp4", **extra: str) -> httpx.Response:
    headers = {**TUS, "Authorization": f"Bearer {token}", "Upload-Length": str(length),
               "Upload-Metadata": meta(patient_id=patient_id, media_id=media_id or str(uuid.uuid4()),
                                       filename=filename, **extra)}
    return httpx.post(f"{base}/api/v1/uploads/", headers=headers, timeout=TIMEOUT_S)


def patch(url: str, token: str, offset: int, data: bytes, checksum: str | None = None) -> httpx.Response:
    headers = {**TUS, "Authorization": f"Bearer {token}", "Upload-Offset": str(offset),
               "Content-Type": "application/offset+octet-stream"}
    if checksum:
        algo = checksum
        headers["Upload-Checksum"] = f"{algo} " + base64.b64encode(hashlib.new(algo, data).digest()).decode()
    return httpx.patch(url, headers=headers, content=data, timeout=TIMEOUT_S)


def head(url: str, token: str) -> httpx.Response:
    return httpx.head(url, headers={**TUS, "Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S)


def offset(url: str, token: str) -> int:
    return int(head(url, token).headers["Upload-Offset"])


def raw_patch_then_cut(url: str, token: str, offset: int, declared: int, data: bytes) -> None:
    """Start a PATCH declaring `declared` bytes, send only `data`, then drop the connection."""
    parts = urlsplit(url)
    request = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Length: {declared}\r\n"
        "Content-Type: application/offset+octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(request + data)
        # A line that dies mid-request: the bytes reach the server, then the connection is reset.
        # (Bytes still in the server's receive buffer at the very moment of a cut are lost with
        # it, by uvicorn's design; the client resumes from the offset the server reports.)
        time.sleep(1.0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
