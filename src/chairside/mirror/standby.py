"""The mirror site's own state: whom it follows, how far it got, and whether it was promoted.

Kept in a small JSON file in the data folder (`DATA/mirror/state.json`, written to a temporary
file, fsynced and renamed), not in the database: a PostgreSQL hot standby is read-only, and a
SQLite mirror's database is only made at promotion (restored by Litestream).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

NOTICE_LAG_S = 60.0  # a mirror further behind than this (or cut off this long) shows a notice to the operator


@dataclass
class StandbyState:
    primary: str
    token: str
    database_url: str | None = None  # PostgreSQL: the hot standby's URL; None: SQLite through Litestream
    role: str = "mirror"  # "mirror" while following; "cloud" once promoted
    deployment_id: str | None = None  # learnt at first contact: the primary this folder follows
    mirror_id: str | None = None  # this mirror's registration at the primary (revoked at promotion)
    epoch: int = 1  # the highest epoch heard of
    caught_up_to: float | None = None  # every blob of the feed up to this time (primary's clock) is verified here
    blobs_behind: int | None = None
    metadata_synced_at: float | None = None  # the Litestream replica's files were all copied at this time
    last_contact_at: float | None = None
    last_error: str | None = None
    blobs_copied: int = 0
    bytes_copied: int = 0
    promoted_at: float | None = None

    def figures(self, now: float | None = None) -> dict[str, Any]:
        """The figures `mirror status` and the mirror's health show (docs/disaster-recovery.md)."""
        now = time.time() if now is None else now
        lag_s = None if self.caught_up_to is None else round(max(0.0, now - self.caught_up_to), 3)
        meta_lag = None if self.metadata_synced_at is None else round(max(0.0, now - self.metadata_synced_at), 3)
        out: dict[str, Any] = {
            "role": self.role, "epoch": self.epoch, "primary": self.primary, "deployment_id": self.deployment_id,
            "lag_s": lag_s,
            "blobs_behind": self.blobs_behind, "metadata_lag_s": meta_lag,
            "metadata": "postgresql" if self.database_url else "litestream",
            "last_contact_s": None if self.last_contact_at is None else round(now - self.last_contact_at, 3),
            "blobs_copied": self.blobs_copied, "bytes_copied": self.bytes_copied, "last_error": self.last_error,
        }
        out["notice"] = notice(out) if self.role == "mirror" else None
        return out


def notice(figures: dict[str, Any]) -> str | None:
    """A message for the operator when the mirror is stalled or far behind; None when all is well."""
    if figures["last_error"] and "wrong-primary" in figures["last_error"]:
        return figures["last_error"]  # type: ignore[no-any-return]
    lag = figures["lag_s"]
    if lag is None or lag > NOTICE_LAG_S:
        since = "未接続" if lag is None else f"{lag:.0f}秒"
        return (f"ミラーが本サイトから遅れています（{since}）。サイト間の回線と本サイトを確認してください。"
                " / The mirror is "
                f"behind the primary ({'never reached' if lag is None else f'{lag:.0f} s'}): check the link between "
                "the sites and the primary.")
    return None


def state_path(data_dir: Path) -> Path:
    return data_dir / "mirror" / "state.json"


def litestream_copy(data_dir: Path) -> Path:
    return data_dir / "mirror" / "litestream"


def promoted_path(data_dir: Path) -> Path:
    return data_dir / "mirror" / "promoted.json"


def load(data_dir: Path) -> StandbyState | None:
    """The state, with `role` and `epoch` from the promotion's marker when there is one."""
    path = state_path(data_dir)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    known = {f.name for f in fields(StandbyState)}
    state = StandbyState(**{k: v for k, v in raw.items() if k in known})
    promoted = promoted_marker(data_dir)
    if promoted is not None:
        state.role, state.epoch, state.promoted_at = "cloud", int(promoted["epoch"]), float(promoted["at"])
    return state


def promoted_marker(data_dir: Path) -> dict[str, Any] | None:
    try:
        marker: dict[str, Any] = json.loads(promoted_path(data_dir).read_text())
        return marker
    except FileNotFoundError:
        return None


def mark_promoted(data_dir: Path, epoch: int) -> None:
    """The last step of a promotion: from now on this folder is a cloud's (the follower stops)."""
    _write_json(promoted_path(data_dir), {"epoch": epoch, "at": time.time()})


@contextlib.contextmanager
def exclusive(data_dir: Path, name: str = "lock") -> Iterator[None]:
    """Held by the follower during a round and by `mirror promote`: a promotion never restores half a copy.

    `name` "lock": the blob rounds; "metadata.lock": the Litestream copy, which runs on its own faster
    cadence so that a long blob never delays the metadata (`mirror promote` holds both).
    """
    path = data_dir / "mirror" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def save(data_dir: Path, state: StandbyState) -> None:
    """Write the state atomically (a crash leaves the old file or the new one, never half of one)."""
    body = asdict(state)
    for key in ("role", "promoted_at"):  # the promotion's marker says these
        body.pop(key)
    _write_json(state_path(data_dir), body)


def _write_json(path: Path, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the state holds the token
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
