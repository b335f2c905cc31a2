"""The price list of a request, enforced as bytes arrive: before routing, authentication or parsing.

Two layers, one set of settings (docs/security.md, "Hostile input"):

- `BoundedHttpTools`, the server's HTTP protocol (uvicorn's httptools protocol with limits): the request
  line, the header block's bytes and the number of headers are counted while they arrive, and a request over
  any of them is answered 414/431 problem+json and its connection closed before the rest is read. Without
  it a 96 MB header is buffered whole by the parser before the app sees anything.
- `Limits`, an ASGI middleware: the body of every route but the tus uploads (which stream to disk and are
  bounded by `Upload-Length`) is received here, at most the route's limit (`Content-Length` checked up front,
  chunked bodies counted), within `body_timeout_s`; over it the answer is 413 or 408 problem+json with
  `Connection: close`, and the rest is never read. The app then gets the body from memory, at most the
  limit. It also marks API JSON answers `Cache-Control: no-store`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httptools
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chairside.errors import PROBLEM_JSON, Problem
from chairside.settings import Settings

KiB = 1 << 10


@dataclass(frozen=True)
class HeadLimits:
    request_line_bytes: int = 8 * KiB
    header_bytes: int = 16 * KiB
    header_count: int = 100


# The protocol is made by the server (one instance per connection, possibly in a spawned worker), so the
# limits reach it through the module: `create_app` calls `configure` with the process's settings.
_head = HeadLimits()


def configure(settings: Settings) -> None:
    global _head
    _head = HeadLimits(settings.limit_request_line_bytes, settings.limit_header_bytes, settings.limit_header_count)


def _problem_bytes(problem: Problem) -> bytes:
    return json.dumps(problem.body(), ensure_ascii=False).encode()


URI_TOO_LONG = Problem(
    414, "アドレスが長すぎます。リンクを確認してください。 / The address is too long. Check the link.",
    title="URI too long", code="uri-too-long")
HEADERS_TOO_LARGE = Problem(
    431, "要求のヘッダーが大きすぎます。ブラウザーのCookieを削除するか、管理者に連絡してください。 / The request's "
    "headers are too large. Clear this site's cookies in the browser, or contact your administrator.",
    title="Request header fields too large", code="headers-too-large")

MALFORMED = Problem(
    400, "要求の形式が正しくありません。アプリを最新にしてもう一度お試しください。 / "
    "The request is malformed (not valid HTTP). Update the app, then try again.", code="malformed-request")


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing an oversized request line or header block while it arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _head
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._refused: Problem | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        if self._refused is None and len(self.url) + len(url) > self._limits.request_line_bytes:
            self._refused = URI_TOO_LONG
        if self._refused is None:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._refused is None and self._header_count > self._limits.header_count:
            self._refused = HEADERS_TOO_LARGE
        if self._refused is None:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused is not None:
            raise _Refused  # stops the parser; data_received answers
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._refused is not None and self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refused is None:  # malformed (a Content-Length of thousands of digits, …): problem+json
                self._refused = MALFORMED
        # A head still incomplete after more bytes than the limit (counting at most one read of a body
        # that shared the last packet with the head's end).
        if self._refused is None and self._in_head and self._head_bytes > self._limits.header_bytes:
            self._refused = HEADERS_TOO_LARGE
        if self._refused is not None:
            self._refuse(self._refused)

    def _refuse(self, problem: Problem) -> None:
        if self.transport.is_closing():
            return
        body = _problem_bytes(problem)
        head = (f"HTTP/1.1 {problem.status} {problem.title}\r\ncontent-type: {PROBLEM_JSON}\r\n"
                f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n")
        self.logger.warning("Refused a request: %s", problem.code)
        self.transport.write(head.encode() + body)
        self.transport.close()


class _Refused(Exception):
    pass


# --- bodies -------------------------------------------------------------------------------------------------

# Routes whose body streams elsewhere (tus: to the partial file, bounded by Upload-Length and quota; the line
# check's upload sink: counted and dropped, bounded by time and an onboarding code, api/netcheck.py).
STREAMED = re.compile(r"^/api/v1/(uploads(/|$)|netcheck/upload$)")
# Routes with their own body limit (setting name); every other route has `limit_json_body_bytes`.
DRAWINGS = re.compile(r"^/api/v1/(media/[^/]+/annotations|annotations/[^/]+)/?$")
EXPORTS = re.compile(r"^/api/v1/exports(/|$)")


def body_limit(settings: Settings, path: str) -> int | None:
    """The most bytes a request to `path` may send; None: not limited here (streamed)."""
    if STREAMED.match(path):
        return None
    if DRAWINGS.match(path):
        return int(settings.limit_drawing_body_bytes)
    if EXPORTS.match(path):
        return int(settings.limit_export_body_bytes)
    return int(settings.limit_json_body_bytes)


def _size(limit: int) -> str:
    return f"{limit // KiB} KiB" if limit < (1 << 20) else f"{limit / (1 << 20):g} MiB"


def body_too_large(limit: int) -> Problem:
    return Problem(
        413, f"送信された内容が大きすぎます（上限 {_size(limit)}）。内容を減らしてもう一度お試しください。 / What was "
        f"sent is larger than this request accepts ({_size(limit)}). Send less, then try again.",
        code="body-too-large", headers={"Connection": "close"}, limit=limit)


def body_too_slow(seconds: float) -> Problem:
    return Problem(
        408, f"送信に時間がかかりすぎました（{seconds:g} 秒以内）。回線を確認してもう一度お試しください。 / "
        f"What was sent took longer than {seconds:g} seconds to arrive. Check the connection, then try again.",
        title="Request timeout", code="body-timeout", headers={"Connection": "close"})


def headers_too_large() -> Problem:
    return Problem(HEADERS_TOO_LARGE.status, HEADERS_TOO_LARGE.detail, title=HEADERS_TOO_LARGE.title,
                   code=HEADERS_TOO_LARGE.code, headers={"Connection": "close"})


class Limits:
    """The ASGI half: headers checked again (for servers other than ours), bodies received within limits."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _no_store(scope, send)
        refused = self._check_head(scope)
        if refused is not None:
            await _answer(refused, scope, send)
            return
        limit = body_limit(self.settings, scope["path"])
        if limit is None or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _answer(body_too_large(limit), scope, send)
            return
        body, outcome = await self._receive_body(receive, limit)
        if outcome == "disconnect":
            return
        if outcome == "large":
            await _answer(body_too_large(limit), scope, send)
            return
        if outcome == "slow":
            await _answer(body_too_slow(self.settings.body_timeout_s), scope, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_head(self, scope: Scope) -> Problem | None:
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > self.settings.limit_request_line_bytes:
            return Problem(URI_TOO_LONG.status, URI_TOO_LONG.detail, title=URI_TOO_LONG.title, code=URI_TOO_LONG.code)
        headers = scope["headers"]
        if len(headers) > self.settings.limit_header_count or sum(
                len(k) + len(v) + 4 for k, v in headers) > self.settings.limit_header_bytes:
            return headers_too_large()
        return None

    async def _receive_body(self, receive: Receive, limit: int) -> tuple[bytes, str]:
        parts: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.settings.body_timeout_s
        while True:
            message: Message | None = None
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                message = await receive()
            if message is None:
                return b"", "slow"
            if message["type"] == "http.disconnect":
                return b"", "disconnect"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", "large"
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), "ok"


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return bool(value.strip() != b"0")
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            # The server's parser has checked it is a number; one too long to convert is simply too large.
            return int(text) if text.isdigit() and len(text) <= 18 else 1 << 62
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(problem: Problem, scope: Scope, send: Send) -> None:
    body = json.dumps(problem.body(scope.get("path")), ensure_ascii=False).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _no_store(scope: Scope, send: Send) -> Send:
    """API JSON (and problem+json) answers get `Cache-Control: no-store` unless the route chose otherwise."""
    if not scope["path"].startswith("/api/"):
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {k.lower() for k, _ in headers}
            ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if b"cache-control" not in names and b"json" in ctype:
                headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
        await send(message)

    return wrapped

