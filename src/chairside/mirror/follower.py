"""The mirror's follower: copies the primary's blobs (SHA-256 verified) and its Litestream files, in a loop.

One round: `hello` (is this still the primary this folder follows?), then the Litestream
replica's new files (SQLite metadata), then the blobs of the feed events after the mirror's
cursors, several at once, each stored through the blob store's `put_stream`, which hashes the
bytes on the way and keeps nothing under the key when they do not match. A blob already here
is not fetched again, so after a cut the mirror picks up where it stopped. Progress is reported
to the primary only for events whose blobs are all verified here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from chairside.blobs.base import BlobHashMismatch, BlobStore
from chairside.mirror import standby
from chairside.mirror.standby import StandbyState

log = logging.getLogger("chairside.mirror")
POLL_S = 0.5  # between rounds when caught up
RETRY_S = 2.0  # after a failed round (link down, primary down)
PARALLEL = 4  # blobs fetched at once
CHUNK = 1 << 20


class WrongPrimary(Exception):
    """The URL answers as another deployment than the one this mirror follows."""


class Refused(Exception):
    """The primary refused the mirror (a wrong or revoked token): the problem's detail."""


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail") or response.text[:300])
    except ValueError:
        return response.text[:300]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


@dataclass
class Follower:
    data_dir: Path
    blobs: BlobStore
    state: StandbyState
    transport: httpx.BaseTransport | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    on_round: Callable[[StandbyState], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _notice: str | None = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.state.primary.rstrip("/"), transport=self.transport,
                            headers={"Authorization": f"Bearer {self.state.token}"},
                            timeout=httpx.Timeout(30.0, connect=5.0))

    def save(self) -> None:
        with self.lock:
            standby.save(self.data_dir, self.state)

    # --- one round ----------------------------------------------------------------------------------------

    def hello(self, http: httpx.Client) -> dict[str, Any]:
        response = http.get("/api/v1/mirror/hello")
        if response.status_code == 401:
            raise Refused(_detail(response))
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if self.state.deployment_id is None:
            self.state.deployment_id = body["deployment_id"]
        elif body["deployment_id"] != self.state.deployment_id:
            raise WrongPrimary(
                f"wrong-primary: {self.state.primary} は、このミラーが追従している本サイト"
                f"（{self.state.deployment_id}）ではありません（{body['deployment_id']}）。"
                f"--primary のURLを確認してください。 / {self.state.primary} is "
                f"not the primary this mirror follows (deployment {self.state.deployment_id}, it answers as "
                f"{body['deployment_id']}): check --primary.")
        self.state.epoch = max(self.state.epoch, int(body["epoch"]), int(body.get("fenced_epoch") or 0))
        self.state.mirror_id = body["mirror_id"]
        return body

    def sync_litestream(self, http: httpx.Client) -> None:
        """Copy the replica's new LTX files; drop the ones compaction removed at the primary."""
        root = standby.litestream_copy(self.data_dir)
        response = http.get("/api/v1/mirror/litestream")
        response.raise_for_status()
        listed = {f["path"]: int(f["size"]) for f in response.json()["files"]}
        for rel, size in listed.items():
            target = root / rel
            if target.exists() and target.stat().st_size == size:
                continue
            with http.stream("GET", f"/api/v1/mirror/litestream/{rel}") as r:
                if r.status_code == 404:
                    continue  # compacted away since the listing: the next round lists its replacement
                r.raise_for_status()
                _write_atomically(target, r.iter_bytes(CHUNK))
        if root.exists():
            for path in root.rglob("*.ltx"):
                if path.relative_to(root).as_posix() not in listed:
                    path.unlink(missing_ok=True)
        self.state.metadata_synced_at = time.time()

    def copy_blob(self, http: httpx.Client, sha256: str) -> int:
        """Fetch one blob into the store, verified by SHA-256; answers the bytes fetched (0: had it or gone)."""
        if self.blobs.stat(sha256) is not None:
            return 0
        with http.stream("GET", f"/api/v1/mirror/blobs/{sha256}") as r:
            if r.status_code == 404:
                return 0  # purged at the primary since the event: nothing to keep
            r.raise_for_status()
            info = self.blobs.put_stream(sha256, r.iter_bytes(CHUNK))
            return info.size

    def copy_blobs(self, http: httpx.Client, pool: ThreadPoolExecutor) -> bool:
        """One page of pending events; answers True when more may follow."""
        response = http.get("/api/v1/mirror/pending", params={"limit": 200})
        response.raise_for_status()
        page = response.json()
        items = page["items"]
        shas = sorted({b["sha256"] for item in items for b in item["blobs"]})
        failed: set[str] = set()
        results = pool.map(lambda sha: (sha, self._try_copy(http, sha)), shas)
        for sha, outcome in results:
            if outcome is None:
                failed.add(sha)
            elif outcome > 0:
                self.state.blobs_copied += 1
                self.state.bytes_copied += outcome
        cursors: dict[str, int] = {}
        stuck: set[str] = set()
        for item in items:  # in seq order per contract: stop a contract at its first event not fully here
            contract = item["contract_id"]
            if contract in stuck:
                continue
            if any(b["sha256"] in failed for b in item["blobs"]):
                stuck.add(contract)
                continue
            cursors[contract] = item["seq"]
        if cursors:
            http.post("/api/v1/mirror/progress", json={"cursors": [
                {"contract_id": c, "seq": s} for c, s in cursors.items()]}).raise_for_status()
        now = _ts(page["now"])
        more = bool(items) and not failed
        if not items:
            self.state.caught_up_to = now
            self.state.blobs_behind = 0
        else:
            self.state.blobs_behind = int(page["behind"])
            if self.state.caught_up_to is None:
                self.state.caught_up_to = now - float(page["lag_s"])
        if failed:
            raise RuntimeError(f"{len(failed)} blobs could not be copied; retrying")
        return more

    def _notify(self) -> None:
        """The operator's notice (in the health and `mirror status`) goes to the log too, when it starts and ends."""
        notice = self.state.figures()["notice"]
        if notice != self._notice:
            if notice is not None:
                log.warning("%s", notice)
            else:
                log.warning("the mirror has caught up with the primary again")
            self._notice = notice

    def _try_copy(self, http: httpx.Client, sha256: str) -> int | None:
        try:
            return self.copy_blob(http, sha256)
        except BlobHashMismatch as e:
            log.warning("blob %s arrived damaged (%s); fetching it again", sha256, e)
            return None
        except (httpx.HTTPError, OSError) as e:
            log.info("blob %s not copied: %s", sha256, e)
            return None

    def round(self, http: httpx.Client, pool: ThreadPoolExecutor) -> None:
        self.hello(http)
        if self.state.database_url is None:
            self.sync_litestream(http)
        while self.copy_blobs(http, pool) and not self.stop.is_set():
            self.save()
        self.state.last_contact_at = time.time()
        self.state.last_error = None
        self.save()

    def run(self) -> None:
        """Follow until `stop` is set or the folder is promoted (a thread of `mirror serve`)."""
        with self.client() as http, ThreadPoolExecutor(PARALLEL, thread_name_prefix="mirror-blob") as pool:
            while not self.stop.is_set():
                current = standby.load(self.data_dir)
                if current is not None and current.role != "mirror":
                    self.state.role = current.role
                    self.state.epoch = current.epoch
                    break  # promoted by `chairside mirror promote`
                wait = POLL_S
                try:
                    with standby.exclusive(self.data_dir):
                        if standby.promoted_marker(self.data_dir) is not None:
                            continue
                        self.round(http, pool)
                except (WrongPrimary, Refused) as e:
                    self.state.last_error = str(e)
                    log.error("%s", e)
                    wait = RETRY_S * 5
                except (httpx.HTTPError, OSError, RuntimeError, KeyError, ValueError) as e:
                    self.state.last_error = f"{type(e).__name__}: {e}"[:500]
                    wait = RETRY_S
                with contextlib.suppress(OSError):
                    self.save()
                self._notify()
                if self.on_round is not None:
                    self.on_round(self.state)
                self.stop.wait(wait)


def _write_atomically(target: Path, chunks: Iterator[bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
