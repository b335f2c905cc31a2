"""A PATCH body as the upload's rules read it, for every place its bytes go (a partial file or S3 parts).

The body ends when the client has sent it all, when it disconnects, or when no byte arrives for
`upload_idle_timeout_s` (a stalled client is treated like a cut: what arrived is kept, and the upload's lock
goes with the answer). A byte past the upload's declared length is refused at once (`too-long`), before it
is written anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import anyio
from starlette.requests import ClientDisconnect

from chairside.uploads.tus import bad


class Body:
    """Iterate for the chunks; afterwards `disconnected` says the body was cut (or stalled), `idle` stalled."""

    def __init__(self, chunks: AsyncIterator[bytes], room: int, idle_s: float) -> None:
        self._chunks, self._room, self._idle_s = chunks, room, idle_s
        self.received = 0
        self.disconnected = self.idle = False

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        stream = self._chunks.__aiter__()
        try:
            while True:
                with anyio.move_on_after(self._idle_s) as waited:
                    try:
                        chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        return
                if waited.cancelled_caught:
                    self.idle = self.disconnected = True
                    return
                self.received += len(chunk)
                if self.received > self._room:
                    raise bad("The request sends more bytes than the upload's declared length.", code="too-long")
                yield chunk
        except ClientDisconnect:
            self.disconnected = True
