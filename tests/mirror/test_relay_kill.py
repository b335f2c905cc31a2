"""Must-hold 1 of issue 11: the primary site killed while stations upload through a relay (one seeded kill each).

SQLite shipped by Litestream, and PostgreSQL streaming replication (synchronous, so the metadata
window is 0 too). The scenario is tests/mirror/killrun.py; bench/mirror_kills.py runs it 20 times
with random moments. Each round is bounded (about a minute on a quiet machine).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tests.mirror import pg
from tests.mirror.killrun import one_kill


def _clips(media_dir: Path, tmp_path: Path) -> list[Path]:
    out = []
    for name in ("clip.mp4", "clip2.mp4", "photo.jpg"):
        out.append(Path(shutil.copy(media_dir / name, tmp_path / name)))
    return out


def _assert_held(row: dict[str, object]) -> None:
    assert row["acked_recordings"], row  # the station did upload through the relay before the kill
    assert row["lost_recordings"] == 0, row  # RPO 0 for what the relay acknowledged
    assert row["duplicated"] == 0 and row["unexpected"] == 0, row  # exactly once
    assert row["epoch"] == 2 and row["reads"], row


@pytest.mark.timeout(600)  # two database servers and three sites on a shared 2-core machine
def test_sqlite_litestream_a_kill_loses_no_recording_the_relay_acknowledged(tmp_path: Path, media_dir: Path) -> None:
    row = one_kill(tmp_path / "k", random.Random(11), _clips(media_dir, tmp_path))
    print(f"sqlite kill: {row}")
    _assert_held(row)
    assert float(row["window_s"]) <= 1.5, row  # asynchronous: only the last moments' patient writes may be lost


@pytest.mark.timeout(600)  # two database servers and three sites on a shared 2-core machine
def test_postgres_synchronous_a_kill_loses_no_recording_and_no_acknowledged_write(
    tmp_path: Path, media_dir: Path,
) -> None:
    if not pg.available():
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    with pg.pg_pair() as pair:
        row = one_kill(tmp_path / "k", random.Random(12), _clips(media_dir, tmp_path), pair, synchronous=True)
    print(f"postgres (synchronous) kill: {row}")
    _assert_held(row)
    assert row["lost_writes"] == 0 and row["window_s"] == 0.0, row  # synchronous: metadata window 0
