"""What differs between the server's roles, decided here and only here.

One application runs as the `cloud` (the authority), a clinic's `relay` (local-first, carries
its clinic's writes upstream) or a `mirror` (a standby copy of a cloud, read-only until
promoted). Code that behaves differently by role asks the role policy a question named for
the behaviour (`ctx.role.queues_writes_upstream`), never the role's name: a new role is a new
`Role` value here, and no router changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Role:
    name: str
    # Which routes the app mounts: everything, what a clinic's stations use, or a standby's health only.
    api: Literal["full", "station", "standby"]
    # The hybrid logical clock's node id; None: one made per installation and kept in its database.
    clock_node: str | None
    # A write commits here together with an outbox operation that carries it upstream.
    queues_writes_upstream: bool = False
    # Media bytes that are not held here are fetched from upstream on first use, and cached.
    fetches_blobs_upstream: bool = False
    # An upload that would take the disk below `relay_min_free_bytes` is refused (507) before it starts.
    checks_free_disk: bool = False
    # With upstream unreachable, a recording over the video quota is taken (and counted), never refused.
    accepts_over_quota_offline: bool = False
    # Quota notices are e-mailed from here (the authority's job).
    sends_notices: bool = False
    # Serves the viewer (its page, sign-in, drawings, tags) to the clinic's LAN from its replica (relay/viewer.py).
    serves_viewer: bool = False
    # Reports its link to upstream at GET /api/v1/relay/status.
    reports_upstream_link: bool = False
    # Every write is refused: a standby copy changes only through replication.
    read_only: bool = False
    # Holds the deployment's epoch: ships its metadata and blobs to mirror sites, refuses writes once fenced.
    keeps_epoch: bool = False


CLOUD = Role("cloud", api="full", clock_node="cloud", sends_notices=True, keeps_epoch=True)
RELAY = Role("relay", api="station", clock_node=None, queues_writes_upstream=True, fetches_blobs_upstream=True,
             checks_free_disk=True, accepts_over_quota_offline=True, reports_upstream_link=True, serves_viewer=True)
# The mirror serves its health only (figures, and writes refused naming the primary) until promoted.
MIRROR = Role("mirror", api="standby", clock_node="cloud", read_only=True)

ROLES = {role.name: role for role in (CLOUD, RELAY, MIRROR)}


def role_named(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r}: one of {', '.join(ROLES)}") from None
