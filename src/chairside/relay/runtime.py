"""What a serving relay keeps in memory: its link to the cloud and its background workers.

Made when the relay starts (`attach`) and kept on the process's Context as `ctx.relay`; the
workers set their own fields when they start (relay/runner.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from chairside.context import Context
from chairside.keys.release import Released
from chairside.keys.tls import client_context
from chairside.relay.upstream import Upstream

if TYPE_CHECKING:
    from chairside.relay.prefetch import Prefetcher
    from chairside.relay.uploader import Uploader


@dataclass
class FollowerStatus:
    """The feed follower's last error and error count, for the relay's status."""

    last_error: str | None = None
    errors: int = 0


@dataclass(eq=False)
class RelayRuntime:
    upstream: Upstream
    uploader: Uploader | None = None
    prefetcher: Prefetcher | None = None
    follower: FollowerStatus = field(default_factory=FollowerStatus)
    # The blob cache's clients to the cloud (one per event loop), last touches, and downloads under way.
    cache_clients: dict[int, httpx.AsyncClient] = field(default_factory=dict)
    cache_touched: dict[str, float] = field(default_factory=dict)
    cache_downloads: dict[tuple[int, str], asyncio.Task[bool]] = field(default_factory=dict)
    # The master key released at boot and its release key, kept in memory to hand stations their shares
    # (keys/release.py); None when the relay's key is not released at boot.
    released: Released | None = None


def attach(ctx: Context, upstream_url: str, token: str) -> RelayRuntime:
    """Give a relay's context its link to the cloud; the app's lifespan then starts its workers."""
    verify = client_context(ctx.settings.ca_bundle)  # the cloud's certificate: system roots or ca_bundle (keys/tls.py)
    ctx.relay = RelayRuntime(Upstream(upstream_url, token, offline_after_s=ctx.settings.relay_offline_after_s,
                                      verify=verify))
    return ctx.relay


def runtime_of(ctx: Context) -> RelayRuntime:
    """The relay's runtime, or a clear error where there is none (a relay started without its upstream)."""
    if ctx.relay is None:
        raise RuntimeError("the relay has no upstream: start it with `chairside relay serve --upstream URL --token T`")
    return ctx.relay
