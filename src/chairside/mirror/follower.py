"""The mirror's follower: copies the primary's blobs (SHA-256 verified) and its Litestream files, in a loop.

One round: `hello` (is this still the primary this folder follows?), then the blobs of the
feed events after the mirror's cursors, several at once, each stored through the blob store's
`put_stream`, which hashes the bytes on the way and keeps nothing under the key when they do not
match. A blob already here is not fetched again, so after a cut the mirror picks up where it
stopped. The Litestream replica's new files (SQLite metadata) are copied by a thread of their own
every 0.2 s, so a long blob never holds the metadata back. Progress is reported to the primary
only for events whose blobs are all verified here and whose database rows this site holds too
(`_metadata_held`): that report is what lets a relay drop its copy of a recording.
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
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from chairside.blobs.base import BlobHashMismatch, BlobStore
from chairside.mirror import standby
from chairside.mirror.standby import StandbyState

log = logging.getLogger("chairside.mirror")
POLL_S = 0.5  # between blob rounds when caught up
METADATA_POLL_S = 0.2  # between copies of the Litestream files (SQLite): part of the metadata window
METADATA_SAVE_S = 1.0  # the metadata thread writes the state file at most this often
# "Stored at both sites" covers the metadata too: a blob's event is reported verified only once the mirror holds
# the database's record of it. SQLite: the events of a page are committed before the primary answered it; a
# Litestream listing asked for METADATA_MARGIN_S after that answer names the files that hold them, as long as
# Litestream at the primary ships within that time (its monitor and sync intervals, 0.2 s each, plus the work).
# PostgreSQL: exact: the event's seq must be replayed at the standby.
METADATA_MARGIN_S = 1.0
METADATA_WAIT_S = 15.0  # longer than this without a fresh metadata copy: the page's progress is not reported
RETRY_S = 2.0  # after a failed round (link down, primary down)
PARALLEL = 8  # blobs fetched at once: a long fat inter-site link wants several streams (bench/mirror_lag.py)
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
    # Report an event verified only once this site's metadata holds it too (`_metadata_held`): `mirror serve` and
    # `mirror promote` turn it on; off, progress follows the blobs alone (a follower of blobs only, in tests).
    metadata_gate: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    _notice: str | None = None
    _primary_ok: bool = False  # the last `hello` answered as the primary this folder follows
    _listed_at: float = 0.0  # monotonic time the last fully copied Litestream listing was asked for
    _await_metadata: bool = False  # the metadata thread runs: progress waits for it (SQLite)
    _metadata_failing: bool = False  # the metadata thread's last copy failed (the primary or the link is down)
    _standby: Engine | None = None  # PostgreSQL: the hot standby, asked how far it has replayed the feed

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
        asked = time.monotonic()
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
        self._listed_at = asked

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
        answered = time.monotonic()
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
        if cursors and self.metadata_gate:
            cursors = self._metadata_held(cursors, answered)
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

    def _metadata_held(self, cursors: dict[str, int], answered: float) -> dict[str, int]:
        """The cursors lowered to what this site's metadata already holds (see METADATA_MARGIN_S)."""
        if self.state.database_url is not None:
            replayed = self._replayed(list(cursors))
            return {c: min(seq, replayed.get(c, 0)) for c, seq in cursors.items() if replayed.get(c, 0) > 0}
        if not self._await_metadata:
            return cursors  # one round with its own Litestream copy (`promote --force`'s last, with writes fenced)
        deadline = time.monotonic() + METADATA_WAIT_S
        while self._listed_at < answered + METADATA_MARGIN_S:
            if self.stop.is_set() or self._metadata_failing or time.monotonic() > deadline:
                raise RuntimeError("the primary's database copy is not advancing: progress not reported")
            self.stop.wait(0.05)
        return cursors

    def _replayed(self, contracts: list[str]) -> dict[str, int]:
        """PostgreSQL: each contract's highest feed seq the hot standby has replayed."""
        if self._standby is None:
            assert self.state.database_url is not None
            self._standby = create_engine(self.state.database_url, pool_size=1, max_overflow=0)
        out: dict[str, int] = {}
        try:
            with self._standby.connect() as conn:
                for contract in contracts:
                    seq = conn.execute(text("SELECT max(seq) FROM changes WHERE contract_id = :c"),
                                       {"c": uuid.UUID(contract)}).scalar()
                    out[contract] = int(seq or 0)
        except SQLAlchemyError as e:  # the standby is down or restarting: no progress this round
            raise RuntimeError(f"the standby database cannot be read: {type(e).__name__}") from e
        return out

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

    def round(self, http: httpx.Client, pool: ThreadPoolExecutor, metadata: bool = True) -> None:
        """One round: `hello`, the Litestream files (unless `metadata` is False: `run` copies them apart), the blobs."""
        self.hello(http)
        self._primary_ok = True
        if metadata and self.state.database_url is None:
            self.sync_litestream(http)
        while self.copy_blobs(http, pool) and not self.stop.is_set():
            self.save()
        self.state.last_contact_at = time.time()
        self.state.last_error = None
        self.save()

    def run_metadata(self) -> None:
        """SQLite: copy the Litestream files every METADATA_POLL_S, apart from the blob rounds (a thread)."""
        saved = 0.0
        with self.client() as http:
            while not self.stop.is_set():
                if standby.promoted_marker(self.data_dir) is not None:
                    break
                if self._primary_ok:  # never copy from a URL that answered as another deployment
                    try:
                        with standby.exclusive(self.data_dir, "metadata.lock"):
                            if standby.promoted_marker(self.data_dir) is None:
                                self.sync_litestream(http)
                        self._metadata_failing = False
                    except Exception as e:  # the link, the primary: the next turn tries again; never dies
                        self._metadata_failing = True
                        log.info("litestream files not copied: %s", e)
                    if time.monotonic() - saved > METADATA_SAVE_S:
                        with contextlib.suppress(OSError):
                            self.save()
                        saved = time.monotonic()
                self.stop.wait(METADATA_POLL_S)

    def run(self) -> None:
        """Follow until `stop` is set or the folder is promoted (a thread of `mirror serve`)."""
        metadata: threading.Thread | None = None
        if self.state.database_url is None:
            metadata = threading.Thread(target=self.run_metadata, name="mirror-metadata", daemon=True)
            self._await_metadata = True
            metadata.start()
        try:
            self._run_blobs()
        finally:
            if metadata is not None:
                self.stop.set()
                metadata.join(30)
            if self._standby is not None:
                self._standby.dispose()

    def _run_blobs(self) -> None:
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
                        self.round(http, pool, metadata=False)
                except (WrongPrimary, Refused) as e:
                    self._primary_ok = False
                    self.state.last_error = str(e)
                    log.error("%s", e)
                    wait = RETRY_S * 5
                except (httpx.HTTPError, OSError, RuntimeError, KeyError, ValueError) as e:
                    self.state.last_error = f"{type(e).__name__}: {e}"[:500]
                    wait = RETRY_S
                except Exception as e:  # never let the follower die: a dead one would never see the promotion
                    log.exception("mirror round failed")
                    self.state.last_error = f"{type(e).__name__}: {e}"[:500]
                    wait = RETRY_S
                with contextlib.suppress(OSError):
                    self.save()
                self._notify()
                if self.on_round is not None:
                    self.on_round(self.state)
                until = time.monotonic() + wait
                while not self.stop.wait(min(0.2, max(0.0, until - time.monotonic()))) and time.monotonic() < until:
                    if standby.promoted_marker(self.data_dir) is not None:
                        break  # promoted while waiting: the loop's top stops the follower at once


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
