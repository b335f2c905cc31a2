"""When is a file complete: closed by its writer and no longer growing.

Two sources of news, one rule:

- `watchdog` events. On Linux (inotify) the kernel reports when a writer closes a file
  (`IN_CLOSE_WRITE`), also when the writer dies: a file created or modified and not yet closed is
  still being written, however long it stays quiet, and a closed file is complete once its size and
  modification time stayed the same for `close_settle_s`. A rename into place (`tmp` → `rec.mp4`)
  counts as closed. Where no close events exist (Windows, macOS, network shares), the quiet rule
  below decides.
- A periodic rescan of the whole folder, the safety net for lost events, files present at start,
  and folders where events do not arrive at all: a file is complete when its size and modification
  time stayed the same for `settle_s` and it was last modified at least `settle_s` ago.

A file still marked open is taken anyway after `stale_open_s` of silence (a lost close event).
Where the quiet rule decides on Linux, the agent also asks the kernel whether any process still holds
the file open for writing (`/proc/*/fd`, the processes it may see): a writer that opened the file
before the agent started, and pauses, is not mistaken for a finished one.
"""

from __future__ import annotations

import os
import queue
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chairside.agent.layout import SENT_DIR, STATE_DIR, is_candidate


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    same_since: float  # monotonic time this (size, mtime) was first observed
    open_mark: bool = False  # created/modified after its last close (close events only)
    closed: bool = False  # a close (or a rename into place) came after the last modification


class Tracker:
    """Candidate files (by relative path) and whether each is complete yet."""

    def __init__(self, *, closes_reported: bool, settle_s: float, close_settle_s: float, stale_open_s: float,
                 held_open: Callable[[str], bool] | None = None) -> None:
        self.closes_reported = closes_reported
        self.held_open = held_open or (lambda _rel: False)
        self.settle_s = settle_s
        self.close_settle_s = close_settle_s
        self.stale_open_s = stale_open_s
        self._seen: dict[str, _Seen] = {}

    def __contains__(self, rel: str) -> bool:
        return rel in self._seen

    def paths(self) -> list[str]:
        return list(self._seen)

    def drop(self, rel: str) -> None:
        self._seen.pop(rel, None)

    def event(self, rel: str, kind: str, st: os.stat_result | None, now: float) -> None:
        """A watchdog event (`modified`, `closed`, `moved_in`) or a rescan's sighting (`seen`)."""
        if st is None:
            self._seen.pop(rel, None)
            return
        before = self._seen.get(rel)
        unchanged = before is not None and (before.size, before.mtime_ns) == (st.st_size, st.st_mtime_ns)
        seen = self._observe(rel, st, now)
        if kind == "modified" and self.closes_reported:
            # watchdog reports attribute changes (a chmod after the copy) as modifications too: only
            # new bytes or a new modification time mean someone is writing.
            if not unchanged:
                seen.open_mark, seen.closed = True, False
        elif kind in ("closed", "moved_in"):
            seen.open_mark, seen.closed = False, True

    def _observe(self, rel: str, st: os.stat_result, now: float) -> _Seen:
        seen = self._seen.get(rel)
        if seen is None:
            seen = self._seen[rel] = _Seen(st.st_size, st.st_mtime_ns, now)
        elif (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
            seen.size, seen.mtime_ns, seen.same_since = st.st_size, st.st_mtime_ns, now
            if not self.closes_reported:
                seen.closed = False
        return seen

    def complete(self, rel: str, st: os.stat_result, now: float, wall: float) -> bool:
        """Is the file complete now (`now` monotonic, `wall` the clock the file system's times use)?"""
        seen = self._observe(rel, st, now)
        quiet = now - seen.same_since
        if seen.open_mark:
            return quiet >= self.stale_open_s
        if seen.closed and quiet >= self.close_settle_s:
            return True
        age = wall - st.st_mtime_ns / 1e9
        quiet_enough = quiet >= self.settle_s or (age >= self.settle_s and quiet >= self.close_settle_s)
        return quiet_enough and not self.held_open(rel)


def walk(watch: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every candidate file below `watch` as (relative POSIX path, stat); skips the agent's own folders,
    hidden ones, sidecars and temporary files. Unreadable folders are skipped, not fatal."""
    stack = [watch]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if (folder == watch and entry.name in (STATE_DIR, SENT_DIR)) or entry.name.startswith("."):
                        continue
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    rel = Path(entry.path).relative_to(watch)
                    if is_candidate(rel.parts):
                        yield rel.as_posix(), entry.stat(follow_symlinks=False)
            except OSError:
                continue


def open_for_writing(path: Path) -> bool:
    """Linux: does a process (one this user may see) hold `path` open for writing? Elsewhere: False."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        target = os.stat(path)
    except OSError:
        return False
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
                if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next((int(line.split()[1], 8) for line in info if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                return True
    return False


def stat_or_none(path: Path) -> os.stat_result | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st if os.path.isfile(path) else None


class Watcher:
    """watchdog's observer feeding (kind, absolute path) into a queue; `closes_reported` says whether
    this platform's observer reports a writer closing a file (Linux inotify does)."""

    def __init__(self, watch: Path) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        events = self.events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    if event.event_type in ("created", "moved"):
                        events.put(("rescan", _text(event.dest_path or event.src_path)))
                    return
                kind = {"created": "modified", "modified": "modified", "closed": "closed"}.get(event.event_type)
                if kind is not None:
                    events.put((kind, _text(event.src_path)))
                elif event.event_type == "moved":
                    events.put(("gone", _text(event.src_path)))
                    events.put(("moved_in", _text(event.dest_path)))
                elif event.event_type == "deleted":
                    events.put(("gone", _text(event.src_path)))

        self.observer: Any = Observer()
        self.observer.schedule(Handler(), str(watch), recursive=True)
        self.closes_reported = sys.platform.startswith("linux") and type(self.observer).__name__ == "InotifyObserver"

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)


def _text(path: str | bytes) -> str:
    return path.decode(errors="surrogateescape") if isinstance(path, bytes) else path
