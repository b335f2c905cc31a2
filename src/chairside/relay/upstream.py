"""The relay's side of the WAN: how it reaches the cloud, and when it last did.

Every piece of the relay that talks to the cloud (the uploader, the feed follower, the
cache's fetches) gets its HTTP clients here and reports each answer it got, so that
`online` and `last_contact` mean the same thing everywhere.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field

import httpx

from chairside.relay.failover import Addresses, AsyncFailover, SyncFailover, split_urls


@dataclass
class Upstream:
    base_url: str
    token: str
    offline_after_s: float = 60.0
    # time.time() of the last answer from the cloud (any status), 0.0 for never.
    last_contact: float = 0.0
    last_error: str | None = None
    # How the cloud's certificate is checked (keys/tls.py client_context: system roots or ca_bundle).
    verify: ssl.SSLContext | bool = True
    _clients: list[httpx.AsyncClient] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        # `URL[,URL…]`: a primary and its mirror; the relay follows the primary of the newest epoch (failover.py).
        self.addresses = Addresses(split_urls(self.base_url))
        self.base_url = str(self.addresses.urls[0]).rstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def async_client(self, *, timeout: float = 30.0, read_timeout: float | None = None) -> httpx.AsyncClient:
        """A client for the cloud; closed by `aclose()`. A silent stall ends in a timeout, never a hang."""
        failover = AsyncFailover(self.addresses, httpx.AsyncHTTPTransport(verify=self.verify)) \
            if len(self.addresses.urls) > 1 else None
        client = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, verify=self.verify, transport=failover,
            timeout=httpx.Timeout(timeout, connect=10.0, read=read_timeout or timeout),
        )
        self._clients.append(client)
        return client

    def sync_client(self, *, timeout: float = 30.0) -> httpx.Client:
        failover = SyncFailover(self.addresses, httpx.HTTPTransport(verify=self.verify)) \
            if len(self.addresses.urls) > 1 else None
        return httpx.Client(base_url=self.base_url, headers=self.headers, verify=self.verify, transport=failover,
                            timeout=httpx.Timeout(timeout, connect=10.0))

    def contact(self) -> None:
        """The cloud answered (whatever it said)."""
        self.last_contact = time.time()
        self.last_error = None

    def failed(self, why: str) -> None:
        """The cloud could not be reached (connection refused, cut, timeout)."""
        self.last_error = why[:300]

    def unreachable(self, e: BaseException) -> str:
        """The one wording of a transport failure, whichever task met it (feed, uploader, heartbeat):
        recorded as `last_error` and returned for the caller's own record."""
        why = f"cannot reach the cloud ({type(e).__name__}{': ' + str(e) if str(e) else ''})"
        self.failed(why)
        return why

    @property
    def online(self) -> bool:
        return self.last_contact > 0 and time.time() - self.last_contact < self.offline_after_s

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients.clear()
