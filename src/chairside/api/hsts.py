"""HTTP Strict Transport Security on every answer given over TLS (docs/security.md, "TLS").

A browser that once reached Chairside over HTTPS refuses plain HTTP to it for a year afterwards,
so a network attacker cannot downgrade the viewer. Answers over plain HTTP carry no header
(RFC 6797 §7.2: it is ignored there and would only mislead).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = b"max-age=31536000"


class Hsts:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"strict-transport-security"]
                headers.append((b"strict-transport-security", HSTS))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_hsts)
