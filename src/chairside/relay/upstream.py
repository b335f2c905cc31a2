"""The relay's side of the WAN: how it reaches the cloud, and when it last did.

Every piece of the relay that talks to the cloud (the uploader, the feed follower, the
cache's fetches) gets its HTTP clients here and reports each answer it got, so that
`online` and `last_contact` mean the same thing everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Upstream:
    base_url: str
    token: str
    offline_after_s: float = 60.0
    # time.time() of the last answer from the cloud (any status), 0.0 for never.
    last_contact: float = 0.0
    last_error: str | None = None
    _clients: list[httpx.AsyncClient] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def async_client(self, *, timeout: float = 30.0, read_timeout: float | None = None) -> httpx.AsyncClient:
        """A client for the cloud; closed by `aclose()`. A silent stall ends in a timeout, never a hang."""
        client = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers,
            timeout=httpx.Timeout(timeout, connect=10.0, read=read_timeout or timeout),
        )
        self._clients.append(client)
        return client

    def sync_client(self, *, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=httpx.Timeout(timeout, connect=10.0))

    def contact(self) -> None:
        """The cloud answered (whatever it said)."""
        self.last_contact = time.time()
        self.last_error = None

    def failed(self, why: str) -> None:
        """The cloud could not be reached (connection refused, cut, timeout)."""
        self.last_error = why[:300]

    @property
    def online(self) -> bool:
        return self.last_contact > 0 and time.time() - self.last_contact < self.offline_after_s

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients.clear()
