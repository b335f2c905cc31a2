"""Pruning by the retention policy: dropped generations go (and the blobs only they named); locked ones stay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chairside.backup import catalog
from chairside.backup.manifest import blob_key
from chairside.backup.retention import Policy
from chairside.backup.run import run_backup
from chairside.backup.seal import PlainSealer
from chairside.backup.targets import FolderTarget, Target
from chairside.context import Context
from chairside.media import trash
from tests.factories import Tenant

from .conftest import SQLITE_ONLY
from .helpers import SMALL, Site, seed_site

ONLY_THREE = Policy(daily=0, weekly=0, monthly=0)


def _generations(ctx: Context, target: Target, tmp_path: Path, count: int, first_day: int = 0) -> list[str]:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=first_day)
    return [run_backup(ctx.settings.database_url, ctx.blobs, target, PlainSealer(), tmp_path / "s",
                       now=start + timedelta(days=i)).generation for i in range(count)]


@SQLITE_ONLY
def test_prune_drops_old_generations_and_the_blobs_only_they_named(
    ctx: Context, server: object, api: object, tenant: Tenant, media_dir: Path, tmp_path: Path
) -> None:
    site: Site = seed_site(ctx, api, tenant, media_dir, SMALL)  # type: ignore[arg-type]
    target = FolderTarget(tmp_path / "backups")
    first = _generations(ctx, target, tmp_path, 1)
    gone_id, gone_sha = next(iter(site.media.items()))
    api.trash(gone_id)  # type: ignore[attr-defined]
    assert trash.purge_media(ctx.db, ctx.blobs, uuid.UUID(gone_id))
    later = _generations(ctx, target, tmp_path, 3, first_day=1)
    assert (target.root / blob_key(gone_sha)).exists()

    dropped = catalog.prune(target, ONLY_THREE)
    assert dropped == first
    assert [m.generation for m in catalog.generations(target)] == sorted(later)
    assert not (target.root / blob_key(gone_sha)).exists()  # named only by the dropped generation
    for sha in set(site.media.values()) - {gone_sha}:
        assert (target.root / blob_key(sha)).exists()
