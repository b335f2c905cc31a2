"""A real `chairside backup run` process killed with SIGKILL mid-way lists nothing, and the next run resumes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from chairside.backup import catalog
from chairside.backup.targets import FolderTarget
from chairside.context import Context
from chairside.db.models import Media
from tests.factories import Tenant, make_patient

from .conftest import SQLITE_ONLY

BLOBS = 16
SIZE = 2 << 20


def _recordings(ctx: Context, tenant: Tenant) -> set[str]:
    """Media rows naming blobs of random bytes. Built directly, not through ingest: the backup never parses
    media, and 16 real 2 MiB clips would cost the suite a minute of encoding for nothing the test looks at."""
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    hashes = set()
    with ctx.db.session() as s:
        for i in range(BLOBS):
            data = os.urandom(SIZE)
            sha = hashlib.sha256(data).hexdigest()
            ctx.blobs.put_stream(sha, [data])
            hashes.add(sha)
            s.add(Media(id=uuid.uuid4(), contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0],
                        patient_id=patient.id, kind="video", mime="video/mp4", sha256=sha, size=SIZE,
                        filename=f"rec{i}.mp4", captured_at=datetime.now(UTC), source="station"))
    return hashes


def _run(ctx: Context, target: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chairside", "backup", "run", "--data", str(ctx.settings.data_dir),
         "--database-url", ctx.settings.database_url, "--to", str(target), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHAIRSIDE_")},
    )


@SQLITE_ONLY
def test_sigkill_mid_run_leaves_no_complete_generation_and_the_rerun_sends_only_the_rest(
    ctx: Context, tenant: Tenant, tmp_path: Path
) -> None:
    hashes = _recordings(ctx, tenant)
    target = tmp_path / "backups"
    victim = _run(ctx, target)
    deadline = time.monotonic() + 120
    while not any(p.is_file() for p in (target / "blobs").rglob("*")):  # the first blob is in place
        assert victim.poll() is None, victim.stderr.read() if victim.stderr else b""
        assert time.monotonic() < deadline
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL

    folder = FolderTarget(target)
    sent_before = {p.name for p in (target / "blobs").rglob("*") if p.is_file()}
    assert catalog.generations(folder) == []  # nothing half-made is listed
    assert 0 < len(sent_before & hashes) < len(hashes)

    again = _run(ctx, target)
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["new_blobs"] == summary["blobs"] - len(sent_before)  # no blob sent twice
    [generation] = catalog.generations(folder)
    assert {b.sha256 for b in generation.blobs} >= hashes
    assert catalog.incomplete(folder) == []  # the killed run's leftovers were removed
