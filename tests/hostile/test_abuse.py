"""Abuse from outside, against a real server process: each prints the server's peak memory and a concurrent
health check's latency (tests/hostile/conftest.py), asserts the memory bound (idle + 100 MB), and checks that
the answer is the documented 4xx problem+json and that nothing is left behind.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chairside.mediafile import generate
from tests.hostile.conftest import Served, measured, raw_exchange

MiB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}


def _chunks(total: int, size: int = MiB) -> Iterator[bytes]:
    block = b"a" * size
    for _ in range(total // size):
        yield block


def _chunked(total: int) -> Iterator[bytes]:
    block = b"a" * MiB
    frame = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    for _ in range(total // MiB):
        yield frame


def _problem(status: int, headers: dict[str, str], body: bytes, expected: int, code: str) -> dict[str, object]:
    assert status == expected, body[:300]
    assert headers["content-type"] == "application/problem+json"
    doc: dict[str, object] = json.loads(body)
    assert doc["status"] == expected and str(doc["type"]).endswith(code), doc
    return doc


# --- bodies and headers -----------------------------------------------------------------------------------


def test_a_gigabyte_posted_without_credentials_is_refused_unread(served: Served) -> None:
    with measured(served, "1 GB chunked body to sign-in, anonymous"):
        head = (b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        status, headers, body, sent = raw_exchange(served.port, head, _chunked(1 << 30))
    _problem(status, headers, body, 413, "body-too-large")
    assert headers.get("connection") == "close"
    assert sent < 64 * MiB, f"the server read {sent} bytes before refusing"


def test_a_gigabyte_declared_by_a_signed_in_station_is_refused_before_reading(served: Served) -> None:
    token = served.tenant.station_tokens[0]
    with measured(served, "1 GB Content-Length to patients, signed in"):
        head = (f"POST /api/v1/patients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {1 << 30}\r\n\r\n").encode()
        status, headers, body, sent = raw_exchange(served.port, head, _chunks(1 << 30))
    _problem(status, headers, body, 413, "body-too-large")
    assert sent < 64 * MiB


def test_a_ninety_six_megabyte_header_is_refused_while_it_arrives(served: Served) -> None:
    with measured(served, "96 MB header"):
        head = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Filler: "
        status, headers, body, sent = raw_exchange(served.port, head, _chunks(96 * MiB))
    _problem(status, headers, body, 431, "headers-too-large")
    assert sent < 64 * MiB


def test_thousands_of_headers_are_refused(served: Served) -> None:
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(5000))
    status, headers, body, _ = raw_exchange(served.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    _problem(status, headers, body, 431, "headers-too-large")


def test_a_long_request_line_is_refused(served: Served) -> None:
    status, headers, body, _ = raw_exchange(served.port, b"GET /api/v1/patients?q=" + b"a" * 20000 +
                                            b" HTTP/1.1\r\nHost: x\r\n\r\n")
    _problem(status, headers, body, 414, "uri-too-long")


def test_a_body_that_trickles_is_ended_with_408(served: Served) -> None:
    """The body must arrive within body_timeout_s (3 s for this server)."""
    def trickle() -> Iterator[bytes]:
        yield b'{"login": "a'
        threading.Event().wait(5)
        yield b'"}'

    head = b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n"
    status, headers, body, _ = raw_exchange(served.port, head, trickle())
    _problem(status, headers, body, 408, "body-timeout")


def test_a_giant_drawing_is_refused_and_one_at_the_limit_is_stored_off_the_loop(served: Served,
                                                                                  media_dir: Path) -> None:
    media_id = _stored_photo(served, media_dir)
    session = _sign_in(served)
    stroke = {"type": "pen", "color": "#e53935", "points": [[i / 5000, 0.5] for i in range(5000)]}
    giant = json.dumps({"shapes": [stroke] * 300}).encode()  # ~30 MB: within the old per-shape limits
    with measured(served, f"giant drawing ({len(giant) / MiB:.0f} MB)"):
        r = httpx.post(f"{served.url}/api/v1/media/{media_id}/annotations", content=giant, timeout=60,
                       headers={"Authorization": f"Bearer {session}", "Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json", r.text[:300]
    many_points = json.dumps({"shapes": [stroke] * 5}).encode()  # 25 000 points, under 1 MiB
    r = httpx.post(f"{served.url}/api/v1/media/{media_id}/annotations", content=many_points, timeout=60,
                   headers={"Authorization": f"Bearer {session}", "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["type"].endswith("drawing-too-large"), r.text[:300]
    at_limit = json.dumps({"shapes": [stroke] * 4}).encode()
    with measured(served, f"drawing at the limit ({len(at_limit) / MiB:.1f} MB, 20 000 points)"):
        r = httpx.post(f"{served.url}/api/v1/media/{media_id}/annotations", content=at_limit, timeout=60,
                       headers={"Authorization": f"Bearer {session}", "Content-Type": "application/json"})
    assert r.status_code == 201, r.text[:300]


# --- pixel bombs ------------------------------------------------------------------------------------------


def png_bomb(side: int) -> bytes:
    """A greyscale PNG of side² pixels, all black: a few hundred KB that decode to side² bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_claiming(media_dir: Path, width: int, height: int) -> bytes:
    """A real small JPEG whose frame header claims width × height (what a bomb's header says)."""
    data = bytearray((media_dir / "photo.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def heic_claiming(media_dir: Path, side: int) -> bytes:
    """A real small HEIC whose image size box (ispe) claims side × side."""
    data = bytearray((media_dir / "photo.heic").read_bytes())
    at = data.index(b"ispe")
    struct.pack_into(">II", data, at + 8, side, side)  # after the box type: version/flags, then width, height
    return bytes(data)


def _metadata(served: Served, filename: str, **extra: str) -> str:
    values = {"patient_id": served.patient_id, "media_id": str(uuid.uuid4()), "filename": filename, **extra}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def _upload(served: Served, data: bytes, filename: str = "IMG_0001.PNG", **meta: str) -> httpx.Response:
    """tus creation-with-upload: the whole file in the creating POST."""
    return httpx.post(f"{served.url}/api/v1/uploads/", content=data, timeout=120, headers={
        **TUS, **served.station, "Upload-Length": str(len(data)),
        "Upload-Metadata": _metadata(served, filename, **meta), "Content-Type": "application/offset+octet-stream"})


def _stored_photo(served: Served, media_dir: Path) -> str:
    media_id = str(uuid.uuid4())
    data = (media_dir / "photo.jpg").read_bytes()
    r = httpx.post(f"{served.url}/api/v1/uploads/", content=data, timeout=60, headers={
        **TUS, **served.station, "Upload-Length": str(len(data)),
        "Upload-Metadata": _metadata(served, "photo.jpg", media_id=media_id),
        "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 201, r.text
    return media_id


def _sign_in(served: Served) -> str:
    r = httpx.post(f"{served.url}/api/v1/sessions", json={
        "login": served.viewer.login, "password": served.viewer.password, "device_name": "Attacker's PC",
        "takeover": True})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


@pytest.mark.parametrize("bomb", ["png-13000", "jpeg-9000", "heic-8192"])
def test_a_pixel_bomb_is_refused_before_decoding(served: Served, media_dir: Path, bomb: str) -> None:
    data = {"png-13000": lambda: png_bomb(13000), "jpeg-9000": lambda: jpeg_claiming(media_dir, 9000, 9000),
            "heic-8192": lambda: heic_claiming(media_dir, 8192)}[bomb]()
    with measured(served, f"pixel bomb {bomb} ({len(data) / 1024:.0f} KB)"):
        r = _upload(served, data)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["type"].endswith("photo-too-large")
    assert served.partial_files() == []


def test_several_pixel_bombs_at_once(served: Served) -> None:
    data = png_bomb(13000)
    with measured(served, "4 PNG bombs at once"), concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _upload(served, data), range(4)))
    assert [r.status_code for r in answers] == [422] * 4
    assert served.partial_files() == []


def test_photos_within_the_budget_are_stored_with_bounded_memory(served: Served) -> None:
    """Real 24 MP JPEGs, several at once: decoded reduced (draft) and a bounded number at a time."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 180, 160)).save(out, "JPEG", quality=80)
    data = out.getvalue()
    with measured(served, "3 × 24 MP JPEG at once"), concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: _upload(served, data, f"IMG_{i}.JPG"), range(3)))
    assert [r.status_code for r in answers] == [201] * 3, [r.text for r in answers]


# --- long numbers and dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Upload-Length", "Upload-Offset", "Range", "Content-Length"])
def test_numbers_of_thousands_of_digits_answer_4xx_problem_json(served: Served, media_dir: Path,
                                                                header: str) -> None:
    digits = "9" * 5000
    with measured(served, f"5000-digit {header}"):
        if header == "Upload-Length":
            head = (f"POST /api/v1/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{served.tenant.station_tokens[0]}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {digits}\r\n"
                    f"Upload-Metadata: {_metadata(served, 'a.jpg')}\r\nContent-Length: 0\r\n\r\n")
        elif header == "Upload-Offset":
            created = httpx.post(f"{served.url}/api/v1/uploads/", headers={
                **TUS, **served.station, "Upload-Length": "10", "Upload-Metadata": _metadata(served, "a.jpg")})
            assert created.status_code == 201, created.text
            head = (f"PATCH {created.headers['location']} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{served.tenant.station_tokens[0]}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {digits}\r\n"
                    "Content-Type: application/offset+octet-stream\r\nContent-Length: 0\r\n\r\n")
        elif header == "Range":
            media_id = _stored_photo(served, media_dir)
            head = (f"GET /api/v1/media/{media_id}/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{served.tenant.station_tokens[0]}\r\nRange: bytes={digits}-{digits}\r\n\r\n")
        else:
            head = f"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: {digits}\r\n\r\n"
        status, headers, body, _ = raw_exchange(served.port, head.encode())
    if header == "Range":  # a Range that is not a byte range is ignored (RFC 9110): the whole file
        assert status == 200, body[:300]
        return
    assert 400 <= status < 500, body[:300]
    assert headers["content-type"] == "application/problem+json", body[:300]
    if header == "Upload-Length":
        assert served.partial_files() == []


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00", "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59"])
def test_captured_at_at_the_ends_of_the_calendar_is_refused(served: Served, media_dir: Path, when: str) -> None:
    before = served.partial_files()
    r = _upload(served, (media_dir / "photo.jpg").read_bytes(), "photo.jpg", captured_at=when)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["type"].endswith("bad-captured-at")
    assert served.partial_files() == before


def test_metadata_over_the_limit_is_refused_not_cut(served: Served) -> None:
    r = httpx.post(f"{served.url}/api/v1/uploads/", headers={
        **TUS, **served.station, "Upload-Length": "10",
        "Upload-Metadata": _metadata(served, "a.jpg", note="x" * 4000)})
    assert r.status_code == 400 and r.json()["type"].endswith("metadata-too-long"), r.text


# --- the end-of-upload race ---------------------------------------------------------------------------------


def test_heads_and_a_second_patch_while_the_last_patch_stores_the_file(served: Served, tmp_path: Path) -> None:
    """The final PATCH answers 204 whatever HEADs and repeated PATCHes arrive while it stores the file."""
    clip = tmp_path / "race.mp4"
    generate.make_video(clip, seconds=4.0, width=1280, height=720, fps=30)
    data = clip.read_bytes()
    with measured(served, "end-of-upload race (HEAD and PATCH storms)"):
        for _ in range(3):
            created = httpx.post(f"{served.url}/api/v1/uploads/", headers={
                **TUS, **served.station, "Upload-Length": str(len(data)),
                "Upload-Metadata": _metadata(served, "race.mp4")})
            assert created.status_code == 201, created.text
            url = served.url + created.headers["location"]
            half = len(data) // 2
            first = httpx.patch(url, content=data[:half], headers={
                **TUS, **served.station, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
            assert first.status_code == 204, first.text
            stop = threading.Event()
            seen: list[int] = []

            def storm(url: str = url, stop: threading.Event = stop, seen: list[int] = seen) -> None:
                with httpx.Client(timeout=30) as client:
                    while not stop.is_set():
                        seen.append(client.head(url, headers={**TUS, **served.station}).status_code)
                        seen.append(client.patch(url, content=b"", headers={
                            **TUS, **served.station, "Upload-Offset": str(len(data)),
                            "Content-Type": "application/offset+octet-stream"}).status_code)

            storms = [threading.Thread(target=storm) for _ in range(2)]
            for t in storms:
                t.start()
            last = httpx.patch(url, content=data[half:], timeout=60, headers={
                **TUS, **served.station, "Upload-Offset": str(half), "Content-Type": "application/offset+octet-stream"})
            stop.set()
            for t in storms:
                t.join()
            assert last.status_code == 204, last.text
            assert 500 not in seen and all(s < 500 for s in seen), seen


# --- whose address -----------------------------------------------------------------------------------------


def test_x_forwarded_for_is_not_believed_without_trusted_proxies(served: Served) -> None:
    """`chairside cloud serve` with `trusted_proxies` unset: the peer's address is the client's (the audit trail
    and the throttle by address use it), whatever X-Forwarded-For says."""
    from sqlalchemy import select

    from chairside.context import build_context
    from chairside.db.models import AuditEvent
    from chairside.settings import Settings

    r = httpx.post(f"{served.url}/api/v1/sessions", headers={"X-Forwarded-For": "203.0.113.9"}, json={
        "login": served.viewer.login, "password": "wrong", "device_name": "spoofer"})
    assert r.status_code == 401
    ctx = build_context(Settings.load(environ={}, data_dir=served.data), upgrade=False)
    try:
        with ctx.db.read() as s:
            addresses = {e.address for e in s.scalars(select(AuditEvent).where(
                AuditEvent.action == "session.signin_failed"))}
    finally:
        ctx.db.dispose()
    assert addresses == {"127.0.0.1"}
