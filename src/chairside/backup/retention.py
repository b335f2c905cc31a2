"""Which generations to keep: the newest of each of the last N days, ISO weeks and months (Japan time).

Pure: the generation times and the policy come in, the ids to keep go out. Whatever the policy, the
``minimum`` newest generations are always kept (never fewer than 3).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

from chairside.domain.calendar import CLINIC_TZ

__all__ = ["MIN_KEPT", "Policy", "to_keep"]

MIN_KEPT = 3


@dataclass(frozen=True)
class Policy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12
    minimum: int = MIN_KEPT

    def __post_init__(self) -> None:
        if min(self.daily, self.weekly, self.monthly) < 0:
            raise ValueError("retention counts must be >= 0")


def _newest_per_bucket(items: Sequence[tuple[str, datetime]], bucket: Callable[[datetime], Hashable],
                       count: int) -> set[str]:
    kept: set[str] = set()
    seen: set[Hashable] = set()
    for gen_id, when in items:  # newest first
        key = bucket(when.astimezone(CLINIC_TZ))
        if key in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(key)
        kept.add(gen_id)
    return kept


def to_keep(generations: Sequence[tuple[str, datetime]], policy: Policy) -> set[str]:
    """The ids of ``generations`` ((id, created_at) in any order) that the policy keeps."""
    items = sorted(generations, key=lambda g: (g[1], g[0]), reverse=True)
    kept = {gen_id for gen_id, _ in items[: max(policy.minimum, MIN_KEPT)]}
    kept |= _newest_per_bucket(items, lambda t: t.date(), policy.daily)
    kept |= _newest_per_bucket(items, lambda t: t.isocalendar()[:2], policy.weekly)
    kept |= _newest_per_bucket(items, lambda t: (t.year, t.month), policy.monthly)
    return kept
