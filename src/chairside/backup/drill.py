"""The restore drill: restore the latest generation into a scratch place, verify it, start the app on it, read
a sample of media through the API (by their SHA-256), and report.

The app is started by the caller (``serve``: the command line runs the real app under uvicorn on a
loopback port), so this package stays below the HTTP layer. To read as a station would, the drill
registers one station per clinic it samples from *in the scratch copy* (never in the primary).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from chairside.context import Context, build_context
from chairside.db.models import Media, Patient
from chairside.tenancy.service import create_station

from .manifest import Manifest
from .restore import restore, restore_settings
from .seal import Sealer
from .targets import Target
from .verify import verify

__all__ = ["DrillReport", "drill"]

Serve = Callable[[Context], AbstractContextManager[str]]
"""Start the app on a context; the block's value is its base URL."""


@dataclass
class DrillReport:
    generation: str
    scratch: str
    ok: bool = False
    restore_s: float = 0.0
    restored_bytes: int = 0
    verify_mismatches: list[str] = field(default_factory=list)
    media_total: int = 0
    media_read: int = 0
    media_bytes: int = 0
    media_failures: list[str] = field(default_factory=list)
    to_serving_s: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def drill(
    target: Target,
    sealer: Sealer,
    manifest: Manifest,
    scratch: Path,
    serve: Serve,
    *,
    database_url: str | None = None,
    master_key_file: Path | None = None,
    sample: float = 0.1,
    most: int = 50,
    keep: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> DrillReport:
    report = DrillReport(manifest.generation, str(scratch))
    started = time.monotonic()
    site = scratch / "site"
    try:
        settings = restore_settings(site, database_url, master_key_file)
        restored = restore(target, sealer, manifest, settings, on_progress=on_progress)
        report.restored_bytes = restored.restored_bytes
        report.restore_s = time.monotonic() - started
        checked = verify(target, sealer, manifest, sample=sample, on_progress=on_progress)
        report.verify_mismatches = checked.mismatches
        ctx = build_context(settings)  # migrates to this version's schema, as the server does on start
        try:
            with ctx.db.read() as s:
                rows = s.execute(
                    select(Media.id, Media.sha256, Media.size, Patient.clinic_id)
                    .join(Patient, Patient.id == Media.patient_id)
                    .where(Media.deleted_at.is_(None))
                ).all()
            report.media_total = len(rows)
            picked = random.sample(rows, min(len(rows), most, max(1, round(len(rows) * sample)))) if rows else []
            tokens: dict[Any, str] = {}
            for row in picked:
                if row.clinic_id not in tokens:
                    tokens[row.clinic_id] = create_station(ctx, row.clinic_id, "backup drill")[1]
            with serve(ctx) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
                report.to_serving_s = time.monotonic() - started
                for row in picked:
                    hasher = hashlib.sha256()
                    size = 0
                    headers = {"Authorization": f"Bearer {tokens[row.clinic_id]}"}
                    with http.stream("GET", f"/api/v1/media/{row.id}/content", headers=headers) as response:
                        if response.status_code != 200:
                            report.media_failures.append(f"{row.id}: HTTP {response.status_code}")
                            continue
                        for chunk in response.iter_bytes(1 << 20):
                            hasher.update(chunk)
                            size += len(chunk)
                    if hasher.hexdigest() != row.sha256:
                        report.media_failures.append(f"{row.id}: served bytes hash to {hasher.hexdigest()}")
                        continue
                    report.media_read += 1
                    report.media_bytes += size
        finally:
            ctx.db.dispose()
            ctx.blobs.close()
        report.ok = not report.verify_mismatches and not report.media_failures
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        if not keep:
            shutil.rmtree(site, ignore_errors=True)
    return report
