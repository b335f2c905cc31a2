"""Several server addresses for one client: switch when the current one is down or fenced, never to an older epoch.

`Client([primary, mirror], token)` sends each request to the current address. When it cannot be
reached, or answers 503 `fenced` / `read-only` (a mirror not promoted, an old primary after a
failover), the client asks every address's `GET /api/v1/health` and moves to the primary of the
highest epoch it finds, then sends the request once more there. It remembers the highest epoch it
has seen (every cloud answers with `Chairside-Epoch`): it never sends a write to an address whose
last known epoch is lower, and never moves to one. Requests are resent only when the first server
did not take them (connection refused, or a 503 that refused them), so nothing is applied twice;
uploads are idempotent by media id anyway.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import httpx

EPOCH = "chairside-epoch"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSALS = ("/fenced", "/read-only")
PROBE_TIMEOUT_S = 3.0


class FailoverTransport(httpx.BaseTransport):
    def __init__(self, urls: Sequence[str], inner: httpx.BaseTransport | None = None) -> None:
        if not urls:
            raise ValueError("at least one server address is needed")
        self.urls = [httpx.URL(u.rstrip("/") + "/") for u in urls]
        self.inner = inner or httpx.HTTPTransport()
        self.current = 0
        self.highest_epoch = 0
        self.epochs: dict[int, int] = {}  # address index → the epoch it last answered with
        self._lock = threading.Lock()

    @property
    def current_url(self) -> str:
        return str(self.urls[self.current]).rstrip("/")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in (0, 1):
            with self._lock:
                index = self.current
                stale = self.epochs.get(index, self.highest_epoch) < self.highest_epoch
            if stale and request.method not in SAFE and attempt == 0 and self.elect():
                continue  # this address is behind the newest epoch seen: never write there
            target = self._rewrite(request, self.urls[index])
            try:
                response = self.inner.handle_request(target)
            except httpx.TransportError:
                if attempt == 0 and self.elect(exclude=index):
                    continue
                raise
            self._note_epoch(index, response)
            if response.status_code == 503 and attempt == 0 and self._refused(response) and self.elect(exclude=index):
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.inner.close()

    # --- choosing the address ----------------------------------------------------------------------------

    def elect(self, exclude: int | None = None) -> bool:
        """Move to the primary of the highest epoch among the addresses; True when one was found."""
        best: tuple[int, int] | None = None  # (epoch, -order) of the best candidate
        choice = None
        for offset in range(len(self.urls)):
            index = (self.current + offset) % len(self.urls)
            if index == exclude and len(self.urls) > 1:
                continue
            health = self._health(index)
            if health is None or health.get("fenced") or health.get("role") == "mirror":
                continue
            raw = health.get("epoch")
            epoch = raw if isinstance(raw, int) else 0
            with self._lock:
                if epoch:
                    self.epochs[index] = epoch
                if epoch < self.highest_epoch:
                    continue
            rank = (epoch, -offset)
            if best is None or rank > best:
                best, choice = rank, index
        if choice is None:
            return False
        with self._lock:
            self.current = choice
            self.highest_epoch = max(self.highest_epoch, best[0] if best else 0)
        return True

    def _health(self, index: int) -> dict[str, object] | None:
        request = httpx.Request("GET", self.urls[index].join("api/v1/health"),
                                extensions={"timeout": {"connect": PROBE_TIMEOUT_S, "read": PROBE_TIMEOUT_S,
                                                        "write": PROBE_TIMEOUT_S, "pool": PROBE_TIMEOUT_S}})
        try:
            response = self.inner.handle_request(request)
            body = response.read()
            response.close()
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        try:
            value = json.loads(body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _note_epoch(self, index: int, response: httpx.Response) -> None:
        value = response.headers.get(EPOCH)
        if value is None or not value.isdigit():
            return
        with self._lock:
            self.epochs[index] = int(value)
            self.highest_epoch = max(self.highest_epoch, int(value))

    @staticmethod
    def _refused(response: httpx.Response) -> bool:
        if not response.headers.get("content-type", "").startswith("application/problem+json"):
            return False
        try:
            problem = json.loads(response.read())
        except ValueError:
            return False
        return isinstance(problem, dict) and str(problem.get("type", "")).endswith(REFUSALS)

    @staticmethod
    def _rewrite(request: httpx.Request, base: httpx.URL) -> httpx.Request:
        if (request.url.scheme, request.url.host, request.url.port) == (base.scheme, base.host, base.port):
            return request
        request.url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
        request.headers["Host"] = base.netloc.decode("ascii")
        return request
