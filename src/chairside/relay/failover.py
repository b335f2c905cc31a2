"""A relay with several upstream addresses (`relay serve --upstream URL,URL`): the primary of the newest epoch.

The relay's side of the mirror site (docs/disaster-recovery.md). Every request goes to the
current address; when it cannot be reached, or answers 503 `fenced` / `read-only`, the relay asks
each address's `GET /api/v1/health` and moves to the primary (role `cloud`, not fenced) of the
highest epoch, then sends the request once more there (only requests the first address did not
take). It remembers the highest epoch it has seen (`Chairside-Epoch` on every cloud's answer)
and never writes to, nor moves to, an address of a lower epoch. Outbox uploads are idempotent
by media id, so a recording re-sent to the promoted mirror is stored once. The SDK has the same
rule in `client/_failover.py` (the SDK imports nothing of the server, so the rule is written twice).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence

import httpx

log = logging.getLogger("chairside.relay")
EPOCH = "chairside-epoch"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSALS = ("/fenced", "/read-only")
PROBE_TIMEOUT_S = 3.0


def split_urls(value: str) -> list[str]:
    """`URL[,URL…]` → the addresses, in order, without trailing slashes."""
    return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]


class Addresses:
    """The addresses, which is current, and the epochs seen: shared by every client the relay makes."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one upstream address is needed")
        self.urls = [httpx.URL(u.rstrip("/") + "/") for u in urls]
        self.current = 0
        self.highest_epoch = 0
        self.epochs: dict[int, int] = {}
        self.lock = threading.Lock()

    def stale(self, index: int) -> bool:
        with self.lock:
            return self.epochs.get(index, self.highest_epoch) < self.highest_epoch

    def note(self, index: int, response: httpx.Response) -> None:
        value = response.headers.get(EPOCH)
        if value is not None and value.isdigit():
            with self.lock:
                self.epochs[index] = int(value)
                self.highest_epoch = max(self.highest_epoch, int(value))

    def choose(self, healths: dict[int, dict[str, object] | None]) -> bool:
        """Move to the primary of the highest epoch among the answers; True when one qualifies."""
        best: tuple[int, int] | None = None
        choice = None
        with self.lock:
            for offset in range(len(self.urls)):
                index = (self.current + offset) % len(self.urls)
                health = healths.get(index)
                if health is None or health.get("fenced") or health.get("role") == "mirror":
                    continue
                raw = health.get("epoch")
                epoch = raw if isinstance(raw, int) else 0
                if epoch:
                    self.epochs[index] = epoch
                if epoch < self.highest_epoch:
                    continue
                if best is None or (epoch, -offset) > best:
                    best, choice = (epoch, -offset), index
            if choice is None or best is None:
                return False
            if choice != self.current:
                log.warning("upstream: switching to %s (epoch %s)", self.urls[choice], best[0])
            self.current = choice
            self.highest_epoch = max(self.highest_epoch, best[0])
            return True


def _rewrite(request: httpx.Request, base: httpx.URL) -> httpx.Request:
    if (request.url.scheme, request.url.host, request.url.port) != (base.scheme, base.host, base.port):
        request.url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
        request.headers["Host"] = base.netloc.decode("ascii")
    return request


def _probe(base: httpx.URL) -> httpx.Request:
    timeout = {"connect": PROBE_TIMEOUT_S, "read": PROBE_TIMEOUT_S, "write": PROBE_TIMEOUT_S, "pool": PROBE_TIMEOUT_S}
    return httpx.Request("GET", base.join("api/v1/health"), extensions={"timeout": timeout})


def _json(body: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _refused(response: httpx.Response, body: bytes) -> bool:
    if response.status_code != 503 or not response.headers.get("content-type", "").startswith(
            "application/problem+json"):
        return False
    problem = _json(body)
    return problem is not None and str(problem.get("type", "")).endswith(REFUSALS)


class AsyncFailover(httpx.AsyncBaseTransport):
    def __init__(self, addresses: Addresses, inner: httpx.AsyncBaseTransport) -> None:
        self.addresses = addresses
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        a = self.addresses
        for attempt in (0, 1):
            index = a.current
            if attempt == 0 and request.method not in SAFE and a.stale(index) and await self.elect():
                continue
            try:
                response = await self.inner.handle_async_request(_rewrite(request, a.urls[index]))
            except httpx.TransportError:
                if attempt == 0 and await self.elect(exclude=index):
                    continue
                raise
            a.note(index, response)
            if response.status_code == 503 and attempt == 0:
                body = await response.aread()
                if _refused(response, body) and await self.elect(exclude=index):
                    continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def elect(self, exclude: int | None = None) -> bool:
        healths: dict[int, dict[str, object] | None] = {}
        for index, base in enumerate(self.addresses.urls):
            if index == exclude and len(self.addresses.urls) > 1:
                continue
            try:
                response = await self.inner.handle_async_request(_probe(base))
                body = await response.aread()
                healths[index] = _json(body) if response.status_code == 200 else None
            except httpx.TransportError:
                healths[index] = None
        return self.addresses.choose(healths)

    async def aclose(self) -> None:
        await self.inner.aclose()


class SyncFailover(httpx.BaseTransport):
    def __init__(self, addresses: Addresses, inner: httpx.BaseTransport) -> None:
        self.addresses = addresses
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        a = self.addresses
        for attempt in (0, 1):
            index = a.current
            if attempt == 0 and request.method not in SAFE and a.stale(index) and self.elect():
                continue
            try:
                response = self.inner.handle_request(_rewrite(request, a.urls[index]))
            except httpx.TransportError:
                if attempt == 0 and self.elect(exclude=index):
                    continue
                raise
            a.note(index, response)
            if response.status_code == 503 and attempt == 0 and _refused(response, response.read()) \
                    and self.elect(exclude=index):
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def elect(self, exclude: int | None = None) -> bool:
        healths: dict[int, dict[str, object] | None] = {}
        for index, base in enumerate(self.addresses.urls):
            if index == exclude and len(self.addresses.urls) > 1:
                continue
            try:
                response = self.inner.handle_request(_probe(base))
                body = response.read()
                healths[index] = _json(body) if response.status_code == 200 else None
            except httpx.TransportError:
                healths[index] = None
        return self.addresses.choose(healths)

    def close(self) -> None:
        self.inner.close()
