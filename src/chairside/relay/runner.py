"""The relay's background work, started by the app's lifespan when the context has a relay runtime.

- the uploader (relay/uploader.py): carries the outbox to the cloud;
- the feed follower (relay/follower.py): keeps the relay's replica current;
- the cache janitor (relay/cache.py): trims the cache of other branches' media;
- every few seconds, the upstream's last contact and the upload rate are written to the
  relay_state table, so `chairside relay status --data DIR` can show them without a server.

`status(ctx)` answers the figures of `GET /api/v1/relay/status` and `chairside relay status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
from sqlalchemy.orm import Session

from chairside.context import Context
from chairside.db.models import RelayState
from chairside.relay import cache, follower
from chairside.relay.queue import status_figures
from chairside.relay.runtime import runtime_of
from chairside.relay.uploader import Uploader
from chairside.relay.upstream import Upstream

log = logging.getLogger("chairside.relay")

UPSTREAM_KEY = "upstream"  # relay_state: {last_contact, last_error, upload_rate_bps, saved_at}
OVER_QUOTA_KEY = "accepted_over_quota"  # relay_state: {count}
SAVE_EVERY_S = 5.0


def upstream_of(ctx: Context) -> Upstream:
    return runtime_of(ctx).upstream


async def _forever(name: str, make: Callable[[], Awaitable[None]]) -> None:
    """Run a background coroutine; if it ever ends with an error, log it and start it again."""
    while True:
        try:
            await make()
            log.warning("relay task %s ended; starting it again", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relay task %s failed; starting it again in 5 s", name)
        await asyncio.sleep(5.0)


async def run_relay_tasks(ctx: Context) -> None:
    """Every background task of the relay, until cancelled."""
    up = upstream_of(ctx)
    uploader = Uploader(ctx, up)
    runtime_of(ctx).uploader = uploader
    tasks = [asyncio.create_task(_forever("uploader", uploader.run)),
             asyncio.create_task(_forever("state", functools.partial(_save_state_loop, ctx))),
             asyncio.create_task(_forever("heartbeat", functools.partial(heartbeat, ctx)))]
    for name, fn in (("follower", follower.run), ("cache janitor", cache.janitor)):
        tasks.append(asyncio.create_task(_forever(name, functools.partial(fn, ctx))))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await anyio.to_thread.run_sync(_save_state, ctx)
        await up.aclose()


async def heartbeat(ctx: Context) -> None:
    """When nothing else has reached the cloud lately, ask its health: `online` stays true to life
    (and the uploader retries at once what waits for the cloud, see Uploader._due)."""
    up = upstream_of(ctx)
    every = max(1.0, ctx.settings.relay_offline_after_s / 4)
    client = up.async_client(timeout=max(2.0, every))
    while True:
        if time.time() - up.last_contact >= every:
            try:
                await client.get("/api/v1/health")
                up.contact()
            except httpx.HTTPError as e:
                up.unreachable(e)
        await asyncio.sleep(every)


async def _save_state_loop(ctx: Context) -> None:
    while True:
        await asyncio.sleep(SAVE_EVERY_S)
        try:
            await anyio.to_thread.run_sync(_save_state, ctx)
        except Exception:  # the database is busy: next time
            log.debug("relay: saving the upstream state failed", exc_info=True)


def _save_state(ctx: Context) -> None:
    up = upstream_of(ctx)
    uploader = runtime_of(ctx).uploader
    rate = uploader.meter.rate() if uploader is not None else 0.0
    value = {"upstream": up.base_url, "last_contact": up.last_contact, "last_error": up.last_error,
             "upload_rate_bps": round(rate * 8),
             "saved_at": time.time()}
    with ctx.db.session() as s:
        _put(s, UPSTREAM_KEY, value)


def _put(s: Session, key: str, value: dict[str, Any]) -> None:
    row = s.get(RelayState, key)
    if row is None:
        s.add(RelayState(key=key, value=value))
    else:
        row.value = value


def count_accepted_over_quota(s: Session) -> None:
    """An upload over the video limit was accepted while the cloud was unreachable (in `s`'s transaction)."""
    row = s.get(RelayState, OVER_QUOTA_KEY, with_for_update=True)
    if row is None:
        s.add(RelayState(key=OVER_QUOTA_KEY, value={"count": 1}))
    else:
        row.value = {"count": int(row.value.get("count", 0)) + 1}


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts > 0 else None


def status(ctx: Context) -> dict[str, Any]:
    """The relay's status. In the serving process the upstream's figures are live; read from
    the data folder alone (`chairside relay status --data`) they are as last saved."""
    with ctx.db.read() as s:
        saved = s.get(RelayState, UPSTREAM_KEY)
        over = s.get(RelayState, OVER_QUOTA_KEY)
        saved_value = dict(saved.value) if saved else {}
        over_count = int(over.value.get("count", 0)) if over else 0
    up = ctx.relay.upstream if ctx.relay is not None else None
    uploader = ctx.relay.uploader if ctx.relay is not None else None
    if up is not None:
        url: str | None = up.base_url
        last_contact, last_error = up.last_contact, up.last_error
        online = up.online
        rate_bps = round(uploader.meter.rate() * 8) if uploader is not None else 0
        live = True
    else:
        url = ctx.settings.upstream_url or saved_value.get("upstream")
        last_contact = float(saved_value.get("last_contact") or 0.0)
        last_error = saved_value.get("last_error")
        online = last_contact > 0 and time.time() - last_contact < ctx.settings.relay_offline_after_s
        rate_bps = int(saved_value.get("upload_rate_bps") or 0)
        live = False
    out: dict[str, Any] = {
        "role": "relay",
        "live": live,
        "online": online,
        "upstream": url,
        "last_contact": _iso(last_contact),
        "last_error": last_error,
        **status_figures(ctx),
        "upload_rate_bps": rate_bps,
        "bandwidth_cap_bps": (uploader.throttle.rate_bps if uploader is not None else None),
        "accepted_over_quota": over_count,
    }
    parts: tuple[tuple[str, Callable[[Context], dict[str, Any]]], ...] = (
        ("cache", cache.stats), ("feed", follower.status))
    for key, fn in parts:
        try:
            out[key] = fn(ctx)
        except Exception as e:  # one part's trouble must not hide the rest of the status
            out[key] = {"error": f"{type(e).__name__}: {e}"}
    return out
