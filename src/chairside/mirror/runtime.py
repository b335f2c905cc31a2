"""`mirror serve`'s process: the follower thread while a mirror, then, once promoted, the old primary's fence.

The running `chairside mirror serve` is the one process of the mirror site: while following it
serves its health (role `mirror`, epoch, lag) and refuses writes naming the primary; when
`chairside mirror promote` has promoted its folder, the follower stops, `on_promoted` is called
(the command line then restarts the server in the cloud role on the same folder and port), and
the new cloud keeps telling the old primary about its epoch until the old one has heard it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chairside.blobs.base import BlobStore
from chairside.mirror import standby
from chairside.mirror.follower import Follower
from chairside.mirror.standby import StandbyState

log = logging.getLogger("chairside.mirror")
FENCE_EVERY_S = 5.0


@dataclass(eq=False)
class MirrorRuntime:
    data_dir: Path
    state: StandbyState
    blobs: BlobStore
    transport: httpx.BaseTransport | None = None
    on_promoted: Callable[[], None] | None = None
    self_url: str | None = None  # this site's URL, named to the old primary once promoted
    follower: Follower = field(init=False)

    def __post_init__(self) -> None:
        self.follower = Follower(self.data_dir, self.blobs, self.state, transport=self.transport, metadata_gate=True)

    def figures(self) -> dict[str, Any]:
        return self.follower.state.figures()

    @property
    def primary(self) -> str:
        return self.state.primary

    @property
    def following(self) -> bool:
        return self.follower.state.role == "mirror"


async def run(runtime: MirrorRuntime) -> None:
    """The background task of `mirror serve`: follow while a mirror; once promoted, fence the old primary."""
    if runtime.following:
        await run_mirror(runtime)
    else:
        await fence_old_primary(runtime.data_dir, runtime.self_url)


async def run_mirror(runtime: MirrorRuntime) -> None:
    """Follow the primary until promoted or cancelled (a background task of the mirror's app)."""
    thread = threading.Thread(target=runtime.follower.run, name="mirror-follower", daemon=True)
    thread.start()
    try:
        while thread.is_alive():  # noqa: ASYNC110 - a thread, not a coroutine, is waited for
            await asyncio.sleep(0.2)
    finally:
        runtime.follower.stop.set()
        await asyncio.to_thread(thread.join, 60)
    if standby.promoted_marker(runtime.data_dir) is not None and runtime.on_promoted is not None:
        log.warning("promoted: this site becomes the cloud (epoch %s)", runtime.follower.state.epoch)
        runtime.on_promoted()


def tell_old_primary(state: StandbyState, epoch: int, self_url: str | None,
                     transport: httpx.BaseTransport | None = None) -> bool:
    """One attempt to fence the old primary; True once it has heard of `epoch` (or a newer one)."""
    try:
        with httpx.Client(base_url=state.primary.rstrip("/"), transport=transport, timeout=5.0,
                          headers={"Authorization": f"Bearer {state.token}"}) as http:
            r = http.post("/api/v1/mirror/fence", json={"epoch": epoch, "primary": self_url or ""})
    except httpx.HTTPError:
        return False
    if r.status_code == 200:
        return True
    if r.status_code == 409:
        body = r.json()
        return max(int(body.get("epoch") or 0), int(body.get("fenced_epoch") or 0)) >= epoch
    return False


async def fence_old_primary(data_dir: Path, self_url: str | None) -> None:
    """At a promoted mirror: until the old primary has heard of our epoch, tell it every few seconds."""
    state = standby.load(data_dir)
    if state is None or state.role != "cloud":
        return
    while not await asyncio.to_thread(tell_old_primary, state, state.epoch, self_url):  # noqa: ASYNC110 - polls a peer
        await asyncio.sleep(FENCE_EVERY_S)
    with contextlib.suppress(OSError):
        log.warning("the old primary %s now refuses writes (epoch %s)", state.primary, state.epoch)
