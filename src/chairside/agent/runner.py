"""The agent: notices complete files, works out their patient, uploads them once, moves them to `.sent/`.

Two threads share the state file (`state.py`): the watcher loop (watchdog events, the periodic
rescan, the completeness rule of `detect.py`) records each complete file with a media id made once;
the sender takes the oldest due file, resolves its patient (`patients.py`), uploads it with the SDK
(resumed from the stored tus URL, idempotent by the media id), and marks it `sent` only when the
server's SHA-256 matches the bytes read from the file and the file did not change meanwhile; only
then is it moved to `.sent/` (unless `keep_sent`).

Anything the network or the server does wrong is retried with a growing pause; what someone must
fix (an empty file, a file the server refuses, no chart number) is `failed` with a reason and is
tried again only once the file changes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import httpx

from chairside.agent import reasons, relaykey
from chairside.agent.detect import Tracker, Watcher, open_for_writing, stat_or_none, walk
from chairside.agent.layout import (
    SENT_DIR,
    LayoutError,
    Sidecar,
    is_candidate,
    parse_sidecar,
    resolve,
    sidecar_candidates,
    windows_safe,
)
from chairside.agent.patients import PatientResolver, PatientWait
from chairside.agent.state import FileRow, State, connect
from chairside.client import ChairsideError, Client, UploadFailed, uuid7
from chairside.client._pin import pinned_transport

Log = Callable[[str], None]


@dataclass
class AgentConfig:
    watch: Path
    server: str
    token: str
    layout: str = "folder"
    clinic_id: str | None = None
    keep_sent: bool = False
    settle_s: float = 5.0  # quiet time that makes a file complete where no close events exist
    close_settle_s: float = 0.3  # after a close event, how long size and time must stay the same
    stale_open_s: float = 600.0  # a file marked open is taken after this much silence (a lost close event)
    rescan_s: float = 30.0
    tick_s: float = 0.2
    retry_base_s: float = 5.0
    retry_max_s: float = 300.0
    use_watchdog: bool = True
    chunk_size: int = 16 << 20
    chunk_checksums: bool | None = None  # None: the SDK's default (on for http://, off for https://)
    sdk_retries: int = 3
    sdk_retry_delay: float = 0.5
    transport: httpx.BaseTransport | None = field(default=None, repr=False)  # tests: a WAN emulator
    pin: str | None = None  # the relay's certificate fingerprint from enrollment (agent/relaykey.py)
    relay_key_check_s: float = 30.0  # how often the relay's key share is refreshed (and a locked relay released)


class AlreadyRunning(RuntimeError):
    pass


class Agent:
    def __init__(self, config: AgentConfig, log: Log | None = None) -> None:
        self.cfg = config
        self.watch = config.watch.resolve()
        self.log: Log = log or (lambda _msg: None)
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # set once the watcher runs and the first rescan is done
        self.wake = threading.Event()
        self.started_at = time.time()
        self._lock_file: IO[bytes] | None = None
        self.pin: str | None = None
        self.http_transport: httpx.BaseTransport | None = None

    # -- the process ---------------------------------------------------------------------------
    def run(self) -> None:
        """Run until `stop()` (or a signal handler calling it)."""
        if not self.watch.is_dir():
            raise FileNotFoundError(f"the watch folder {self.watch} does not exist")
        self._lock()
        try:  # the relay's certificate, pinned at enrollment (or now, the first time): agent/relaykey.py
            self.pin = relaykey.resolve_pin(self.watch, self.cfg.server, self.cfg.pin, self.log)
        except BaseException:
            self._unlock()
            raise
        self.http_transport = self.cfg.transport or (pinned_transport(self.pin) if self.pin else None)
        conn = connect(self.watch)
        state = State(conn)
        state.heartbeat(os.getpid(), self.cfg.server, self.started_at)
        watcher: Watcher | None = None
        if self.cfg.use_watchdog:
            watcher = Watcher(self.watch)
            watcher.start()
        tracker = Tracker(closes_reported=watcher is not None and watcher.closes_reported, settle_s=self.cfg.settle_s,
                          close_settle_s=self.cfg.close_settle_s, stale_open_s=self.cfg.stale_open_s,
                          held_open=lambda rel: open_for_writing(self.watch / rel))
        sender = threading.Thread(target=self._send_loop, name="chairside-agent-sender", daemon=True)
        sender.start()
        keeper = relaykey.ShareKeeper(self.watch, self.cfg.server, self.cfg.token, pin=self.pin,
                                      check_s=self.cfg.relay_key_check_s, transport=self.cfg.transport, log=self.log)
        threading.Thread(target=keeper.run, args=(self.stop_event,), name="chairside-agent-relaykey",
                         daemon=True).start()
        try:
            if not self.cfg.keep_sent:
                for row in state.unmoved():
                    self._move_sent(state, row)
            next_scan = 0.0
            next_beat = time.monotonic() + 2.0
            while not self.stop_event.is_set():
                now = time.monotonic()
                try:
                    if watcher is not None:
                        self._drain(watcher, tracker, state, now)
                    if now >= next_scan:
                        self._rescan(tracker, state, now)
                        next_scan = now + self.cfg.rescan_s
                        self.ready.set()
                    self._check(tracker, state)
                    if now >= next_beat:
                        state.heartbeat(os.getpid(), self.cfg.server, self.started_at)
                        next_beat = now + 2.0
                except (OSError, sqlite3.Error) as e:  # a busy state file, an unplugged share: keep watching
                    self.log(f"エラー（続行します） / error, carrying on: {e}")
                    next_scan = min(next_scan, now + self.cfg.rescan_s)
                self.stop_event.wait(self.cfg.tick_s)
        finally:
            self.stop_event.set()
            self.wake.set()
            if watcher is not None:
                watcher.stop()
            sender.join(timeout=10)
            conn.close()
            self._unlock()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def _lock(self) -> None:
        """One agent per folder: an OS lock on `.chairside/agent.lock`, released when the process ends."""
        path = self.watch / ".chairside" / "agent.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        f = path.open("a+b")
        try:
            if sys.platform == "win32":
                import msvcrt
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise AlreadyRunning(f"another agent is already watching {self.watch}") from None
        self._lock_file = f

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- noticing complete files ---------------------------------------------------------------
    def _rel(self, path: str) -> str | None:
        try:
            rel = Path(path).relative_to(self.watch)
        except ValueError:
            return None
        return rel.as_posix() if is_candidate(rel.parts) else None

    def _drain(self, watcher: Watcher, tracker: Tracker, state: State, now: float) -> None:
        while True:
            try:
                kind, path = watcher.events.get_nowait()
            except queue.Empty:
                return
            if kind == "rescan":  # a folder appeared (or was moved in): look inside it now
                self._rescan(tracker, state, now)
                continue
            rel = self._rel(path)
            if rel is None:
                continue
            if kind == "gone":
                tracker.drop(rel)
                continue
            tracker.event(rel, kind, stat_or_none(self.watch / rel), now)

    def _rescan(self, tracker: Tracker, state: State, now: float) -> None:
        for failed in state.failed():  # someone removed a failed file: nothing left to act on
            if not (self.watch / failed.path).exists():
                state.forget(failed.id)
        for rel, st in walk(self.watch):
            if rel in tracker:
                continue
            row = state.by_path(rel)
            if row is not None and _same(row, st):
                if row.state == "sent" and not self.cfg.keep_sent and row.moved == 0:
                    self._move_sent(state, row)
                continue  # known as it is: the sender has it (or it failed until it changes)
            tracker.event(rel, "seen", st, now)

    def _check(self, tracker: Tracker, state: State) -> None:
        now, wall = time.monotonic(), time.time()
        for rel in tracker.paths():
            st = stat_or_none(self.watch / rel)
            if st is None:
                tracker.drop(rel)
                continue
            if tracker.complete(rel, st, now, wall):
                tracker.drop(rel)
                self._register(state, rel, st)

    def _register(self, state: State, rel: str, st: os.stat_result) -> None:
        """Record a complete file: the same file again is nothing new; a renamed one keeps its row; a
        changed one gets a new media id; a new one a new row."""
        row = state.by_path(rel)
        if row is not None and _same(row, st):
            return
        if row is not None and row.state != "sent":  # its content changed before it was sent
            state.update(row.id, size=st.st_size, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino,
                         media_id=str(uuid7()), state="waiting", upload_url=None, sent_bytes=0, attempts=0,
                         next_try_at=0, reason_ja=None, reason_en=None, patient_id=None)
            self.log(f"変更を検出 / changed: {rel}")
            self._check_empty(state, row.id, st)
            self.wake.set()
            return
        for other in state.by_inode(st.st_dev, st.st_ino):
            if _same(other, st) and other.path != rel and not (self.watch / other.path).exists():
                # Renamed (or moved into another folder) by someone: the same file, the same row.
                updates: dict[str, Any] = {"path": rel}
                if other.state == "failed" and other.reason_en == reasons.GONE[1]:
                    updates.update(state="waiting", reason_ja=None, reason_en=None, next_try_at=0)
                state.update(other.id, **updates)
                self.log(f"名前の変更を検出 / renamed: {other.path} → {rel}")
                moved = state.get(other.id)
                if moved is not None and moved.state == "sent" and not self.cfg.keep_sent:
                    self._move_sent(state, moved)
                self.wake.set()
                return
        new = state.add(rel, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, str(uuid7()))
        self.log(f"完了を検出 / complete: {rel} ({st.st_size} bytes)")
        self._check_empty(state, new.id, st)
        self.wake.set()

    @staticmethod
    def _check_empty(state: State, file_id: int, st: os.stat_result) -> None:
        if st.st_size == 0:
            ja, en = reasons.EMPTY
            state.update(file_id, state="failed", reason_ja=ja, reason_en=en)

    # -- sending -------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        conn = connect(self.watch)
        state = State(conn)
        try:
            with Client(self.cfg.server, self.cfg.token, transport=self.http_transport, pin=self.pin,
                        chunk_checksums=self.cfg.chunk_checksums) as client:
                resolver = PatientResolver(client, self.cfg.clinic_id, self.cfg.server, self.cfg.token,
                                           self.http_transport)
                while not self.stop_event.is_set():
                    row = state.due(time.time())
                    if row is None:
                        self.wake.wait(1.0)
                        self.wake.clear()
                        continue
                    try:
                        self._send(state, client, resolver, row)
                    except Exception as e:  # never let one file stop the agent: it waits and is tried again
                        self._later(state, row, (f"予期しないエラー: {e}", f"Unexpected error: {e}"))
        finally:
            conn.close()

    def _later(self, state: State, row: FileRow, why: tuple[str, str], *, slow: bool = False) -> None:
        """Try this file again after a pause that grows with its attempts."""
        pause = self.cfg.retry_max_s if slow else min(self.cfg.retry_max_s,
                                                      self.cfg.retry_base_s * (2 ** min(row.attempts, 10)))
        state.update(row.id, state="waiting", reason_ja=why[0], reason_en=why[1], next_try_at=time.time() + pause,
                     attempts=row.attempts + 1)

    def _fail(self, state: State, row: FileRow, why: tuple[str, str]) -> None:
        state.update(row.id, state="failed", reason_ja=why[0], reason_en=why[1])
        self.log(f"失敗 / failed: {row.path}: {why[0]} / {why[1]}")

    def _send(self, state: State, client: Client, resolver: PatientResolver, row: FileRow) -> None:
        path = self.watch / row.path
        st = stat_or_none(path)
        if st is None or not _same(row, st):
            if st is None and (found := self._find_inode(row)) is not None:
                state.update(row.id, path=found)  # renamed before we started: follow it
                return
            if st is None:
                self._fail(state, row, reasons.GONE)
            else:  # it changed since it was recorded: the watcher records it again once complete
                state.update(row.id, next_try_at=time.time() + max(1.0, self.cfg.settle_s))
            return
        try:
            sidecar = self._sidecar(path)
            target = resolve(self.cfg.layout, PurePosixPath(row.path).parts, sidecar)
        except LayoutError as e:
            if e.wait:
                self._later(state, row, (e.ja, e.en))
            else:
                self._fail(state, row, (e.ja, e.en))
            return
        try:
            patient_id = row.patient_id or resolver.patient_for(target)
        except PatientWait as e:
            self._later(state, row, (e.ja, e.en), slow=e.slow)
            return
        except (httpx.TransportError, ChairsideError) as e:
            self._later(state, row, reasons.for_error(e))
            return
        state.update(row.id, state="sending", patient_id=patient_id, chart_no=target.chart_no,
                     started_at=row.started_at or time.time(), reason_ja=None, reason_en=None)
        self.log(f"送信開始 / sending: {row.path} → カルテ {target.chart_no}")
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or done >= total:
                last[0] = now
                state.update(row.id, sent_bytes=done)

        resume = row.upload_url
        try:
            for _ in range(2):
                try:
                    item = client.upload(
                        path, patient_id, media_id=row.media_id, captured_at=target.captured_at,
                        filename=PurePosixPath(row.path).name, progress=progress, chunk_size=self.cfg.chunk_size,
                        max_retries=self.cfg.sdk_retries, retry_delay=self.cfg.sdk_retry_delay, resume_url=resume,
                        on_created=lambda url: state.update(row.id, upload_url=url))
                    break
                except UploadFailed as e:
                    if resume is None or e.status not in (404, 410):
                        raise
                    resume = None  # the server forgot (or expired) that upload: start it again, same media id
                    state.update(row.id, upload_url=None, sent_bytes=0)
        except (httpx.TransportError, ChairsideError, OSError) as e:
            after = stat_or_none(path)
            if after is not None and not _same(row, after):
                state.update(row.id, state="waiting", next_try_at=time.time() + max(1.0, self.cfg.settle_s))
                return
            if isinstance(e, ChairsideError) and (e.problem or {}).get("code") == "unknown-patient":
                resolver.forget(target.chart_no)
                state.update(row.id, patient_id=None)
            if isinstance(e, ChairsideError) and reasons.is_permanent(e):
                self._fail(state, row, reasons.for_error(e))
            elif isinstance(e, FileNotFoundError):
                state.update(row.id, state="waiting", next_try_at=time.time() + 1.0)
            else:
                self._later(state, row, reasons.for_error(e) if not isinstance(e, OSError) else
                            (f"ファイルを読めません: {e}", f"The file cannot be read: {e}"))
                self.log(f"再試行予定 / will retry: {row.path}: {e}")
            return
        # Sent: confirmed only when the stored SHA-256 is the SDK's hash of what it read from the file, and
        # the file is still the one recorded (same size and modification time, wherever it is now).
        current = self.watch / row.path
        if not current.exists() and (found := self._find_inode(row)) is not None:
            state.update(row.id, path=found)
        latest = state.get(row.id)
        if latest is None or latest.media_id != row.media_id:
            return  # changed while being sent: the new version has its own row state
        after = stat_or_none(self.watch / latest.path)
        if after is not None and not _same(latest, after):
            state.update(row.id, state="waiting", next_try_at=time.time() + max(1.0, self.cfg.settle_s))
            return
        state.update(row.id, state="sent", sha256=item["sha256"], sent_bytes=row.size, reason_ja=None,
                     reason_en=None)
        self.log(f"送信完了 / sent: {latest.path} (media {row.media_id}, SHA-256 {item['sha256'][:12]}…)")
        if not self.cfg.keep_sent:
            done = state.get(row.id)
            if done is not None:
                self._move_sent(state, done)

    def _sidecar(self, path: Path) -> Sidecar | None:
        for candidate in sidecar_candidates(path):
            p = Path(candidate)
            if p.is_file():
                try:
                    text = p.read_text(encoding="utf-8-sig")
                except (OSError, UnicodeDecodeError):
                    raise LayoutError("サイドカー JSON が読めません（UTF-8 で保存してください）。",
                                      "The sidecar JSON cannot be read (save it as UTF-8).", wait=True) from None
                return parse_sidecar(text)
        return None

    def _find_inode(self, row: FileRow) -> str | None:
        for rel, st in walk(self.watch):
            if st.st_dev == row.dev and st.st_ino == row.ino and _same(row, st):
                return rel
        return None

    # -- moving what was sent ------------------------------------------------------------------
    def _move_sent(self, state: State, row: FileRow) -> None:
        """Move a confirmed file (and its sidecar) to `.sent/`, under names a Windows PC can open too."""
        src = self.watch / row.path
        st = stat_or_none(src)
        if st is None or not _same(row, st):
            state.update(row.id, moved=1)  # already moved (a crash after the move), or replaced: nothing to move
            return
        parts = [windows_safe(p) for p in PurePosixPath(row.path).parts]
        dest = _free_name(self.watch.joinpath(SENT_DIR, *parts))
        dest.parent.mkdir(parents=True, exist_ok=True)
        sidecars = [Path(c) for c in sidecar_candidates(src) if Path(c).is_file()]
        os.replace(src, dest)
        for side in sidecars:
            with contextlib.suppress(OSError):
                os.replace(side, _free_name(dest.parent / side.name))
        state.update(row.id, moved=1, path=dest.relative_to(self.watch).as_posix())
        self.log(f"移動 / moved to {dest.relative_to(self.watch).as_posix()}")


def _same(row: FileRow, st: os.stat_result) -> bool:
    return (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)


def _free_name(path: Path) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`… when taken."""
    if not path.exists():
        return path
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.stem} ({i}){path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)


@contextlib.contextmanager
def running(config: AgentConfig, log: Log | None = None) -> Iterator[Agent]:
    """An agent in a thread, yielded once it watches, stopped on exit (for tests and benchmarks)."""
    agent = Agent(config, log)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.run()
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=target, name="chairside-agent", daemon=True)
    thread.start()
    try:
        while not agent.ready.wait(0.05) and thread.is_alive():
            pass
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=30)
        if errors:
            raise errors[0]
