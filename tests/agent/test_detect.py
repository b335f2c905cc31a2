"""Completeness: closed and no longer growing (the rule, with the clock passed in)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, cast

from chairside.agent.detect import Tracker, walk


class FakeStat(NamedTuple):
    st_size: int
    st_mtime_ns: int


def f(size: int, mtime: float) -> os.stat_result:
    """What the rule reads of a stat: size and modification time."""
    return cast(os.stat_result, FakeStat(size, int(mtime * 1e9)))


def tracker(closes: bool) -> Tracker:
    return Tracker(closes_reported=closes, settle_s=5.0, close_settle_s=0.3, stale_open_s=600.0)


def test_with_close_events_an_open_file_is_never_complete_however_quiet() -> None:
    t = tracker(closes=True)
    t.event("1/rec.mp4", "modified", f(1000, 100.0), now=0.0)
    assert not t.complete("1/rec.mp4", f(1000, 100.0), now=60.0, wall=1000.0)  # quiet a minute, still open
    t.event("1/rec.mp4", "modified", f(2000, 160.0), now=60.0)
    t.event("1/rec.mp4", "closed", f(2000, 160.0), now=60.1)
    assert not t.complete("1/rec.mp4", f(2000, 160.0), now=60.2, wall=160.2)  # just closed: settles first
    assert t.complete("1/rec.mp4", f(2000, 160.0), now=60.5, wall=160.5)


def test_a_file_that_grows_again_after_its_close_waits_for_the_next_close() -> None:
    t = tracker(closes=True)
    t.event("a.mp4", "closed", f(10, 1.0), now=0.0)
    t.event("a.mp4", "modified", f(20, 2.0), now=0.1)
    assert not t.complete("a.mp4", f(20, 2.0), now=10.0, wall=20.0)
    assert t.complete("a.mp4", f(20, 2.0), now=601.0, wall=611.0)  # a lost close event: taken after the silence


def test_an_attribute_change_after_the_close_is_not_a_writer() -> None:
    t = tracker(closes=True)
    t.event("a.mp4", "modified", f(10, 1.0), now=0.0)
    t.event("a.mp4", "closed", f(10, 1.0), now=0.1)
    t.event("a.mp4", "modified", f(10, 1.0), now=0.2)  # chmod (shutil.copy's copymode): same size and time
    assert t.complete("a.mp4", f(10, 1.0), now=0.5, wall=2.0)


def test_a_rename_into_place_counts_as_closed() -> None:
    t = tracker(closes=True)
    t.event("1/rec.mp4", "moved_in", f(500, 10.0), now=0.0)
    assert t.complete("1/rec.mp4", f(500, 10.0), now=0.4, wall=10.4)


def test_without_close_events_a_growing_file_waits_for_quiet() -> None:
    t = tracker(closes=False)  # Windows, macOS, a network share
    t.event("a.mp4", "modified", f(100, 100.0), now=0.0)
    assert not t.complete("a.mp4", f(100, 100.0), now=4.0, wall=104.0)
    assert not t.complete("a.mp4", f(200, 104.0), now=4.1, wall=104.1)  # grew: the clock starts again
    assert not t.complete("a.mp4", f(200, 104.0), now=8.0, wall=108.0)
    assert t.complete("a.mp4", f(200, 104.0), now=9.2, wall=109.2)


def test_an_old_file_found_by_the_rescan_goes_without_waiting_the_whole_settle() -> None:
    t = tracker(closes=False)
    t.event("old.mp4", "seen", f(100, 0.0), now=50.0)
    assert not t.complete("old.mp4", f(100, 0.0), now=50.1, wall=3600.0)
    assert t.complete("old.mp4", f(100, 0.0), now=50.4, wall=3600.3)


def test_walk_skips_the_agents_folders_sidecars_and_temporary_files(tmp_path: Path) -> None:
    for rel in ("00123/rec.mp4", "00123/rec.mp4.json", "00123/rec2.mp4.part", ".sent/00123/old.mp4",
                ".chairside/state.db", "00124/sub/photo.jpg", ".hidden/x.mp4", "00125/.~lock.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert sorted(rel for rel, _ in walk(tmp_path)) == ["00123/rec.mp4", "00124/sub/photo.jpg"]
