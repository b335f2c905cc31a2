"""The drill restores the latest generation into scratch, verifies it, serves it, and reads media through the API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from chairside.context import Context
from tests.seaweed import SeaweedS3

from .conftest import SQLITE_ONLY
from .helpers import SMALL, Site, backup, seed_site


@SQLITE_ONLY
def test_drill_reads_media_through_the_api_of_a_restored_site_and_fails_loudly_on_damage(
    ctx: Context, server: object, api: object, tenant: object, media_dir: Path, seaweed_s3: SeaweedS3,
    tmp_path: Path,
) -> None:
    site: Site = seed_site(ctx, api, tenant, media_dir, SMALL)  # type: ignore[arg-type]
    bucket = seaweed_s3.make_bucket(f"drill-{uuid.uuid4().hex[:12]}")
    target = f"s3://{bucket}/site?endpoint_url={seaweed_s3.endpoint_url}"
    env = seaweed_s3.env()
    data = str(ctx.settings.data_dir)
    assert backup("run", "--data", data, "--database-url", ctx.settings.database_url, "--to", target,
                  env=env).exit_code == 0

    drilled = backup("drill", "--from", target, "--data", data, "--sample", "1", "--scratch", str(tmp_path / "d"),
                     env=env)
    assert drilled.exit_code == 0, drilled.stdout + drilled.stderr
    report = drilled.json()
    assert report["ok"] and report["media_read"] == report["media_total"] == len(site.media)
    assert report["verify_mismatches"] == [] and report["to_serving_s"] > 0
    assert not (tmp_path / "d" / "site").exists()  # scratch removed

    # Damage one media blob in the bucket (a newer version on an unversioned bucket replaces it): the drill fails,
    # names it, and the operator gets a notice.
    client = seaweed_s3.client()
    sha = next(iter(site.media.values()))
    client.put_object(Bucket=bucket, Key=f"site/blobs/{sha[:2]}/{sha}", Body=b"garbage")
    client.close()
    failed = backup("drill", "--from", target, "--data", data, "--sample", "1", "--scratch", str(tmp_path / "e"),
                    env=env)
    assert failed.exit_code == 1
    assert not failed.json()["ok"]
    notice = json.loads((ctx.settings.data_dir / "backup" / "notices.jsonl").read_text().splitlines()[-1])
    assert notice["kind"] == "drill"


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_drill_of_a_postgresql_generation_uses_a_scratch_database(
    ctx: Context, server: object, api: object, tenant: object, media_dir: Path, tmp_path: Path,
    new_database: str | None,
) -> None:
    assert new_database is not None
    seed_site(ctx, api, tenant, media_dir, ("photo.jpg",))  # type: ignore[arg-type]
    target = str(tmp_path / "backups")
    taken = backup("run", "--data", str(ctx.settings.data_dir), "--database-url", ctx.settings.database_url,
                   "--to", target)
    assert taken.exit_code == 0 and taken.json()["database"] == "pg_dump", taken.stderr
    refused = backup("drill", "--from", target, "--scratch", str(tmp_path / "d"))
    assert refused.exit_code == 1 and "PostgreSQL" in refused.json()["error"]
    drilled = backup("drill", "--from", target, "--database-url", new_database, "--sample", "1",
                     "--scratch", str(tmp_path / "e"))
    assert drilled.exit_code == 0, drilled.stdout + drilled.stderr
    assert drilled.json()["media_read"] == drilled.json()["media_total"] == 1
