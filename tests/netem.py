"""A userspace WAN emulator for tests: an asyncio TCP proxy on loopback, in a thread.

It stands in for the internet between two of our own processes, and does to the bytes
what a bad line does (the kernel here has no netem; this is the honest stand-in):

- `latency_s`: one-way delay. Bytes go through a delay line: each piece is delivered
  `latency_s` after it left, while later pieces keep flowing (a pipe, not a stop-and-wait),
  so a bulk transfer is limited by the rate, and each request/answer pays the round trip.
- `rate_bps`: the link's rate, per direction, shared by every connection through the proxy
  (one line, as at a clinic). The proxy reads from a sender only as fast as the line drains,
  so TCP's flow control pushes back on the sender the way a slow line does.
- `cut_after_bytes` (once) and `cut_every_bytes` (again and again): after that many
  client→server bytes the connection is reset; bytes in flight are lost.
- `stall`: a silent stall. Connections stay open and bytes are accepted, but nothing is
  forwarded either way (a dead route behind a NAT that still answers TCP).
- `outage()`: a full outage. Every open connection is reset at once, and new ones are
  reset as soon as they connect, until `outage(False)`.

`forwarded` counts client→server bytes the proxy took from senders (cut pieces included up
to the cut), so a test can count what was resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    latency_s: float = 0.0  # one way
    rate_bps: float | None = None  # bits per second per direction, shared by all connections
    cut_after_bytes: int | None = None  # client→server bytes after which the connection is reset (once)
    cut_every_bytes: int | None = None  # reset a connection each time this many more client→server bytes went
    stall: bool = False  # accept bytes, forward nothing, keep connections open
    down: bool = False  # reset every connection (use WanProxy.outage() to also reset the open ones)
    cuts: int = 0  # how many cuts happened
    forwarded: int = field(default=0)  # client→server bytes taken from senders in total
    connections: int = 0  # connections accepted in total
    _next_cut_at: int | None = field(default=None, repr=False)


class _Link:
    """One direction of the line: the time it is next free (serialisation at the rate)."""

    def __init__(self) -> None:
        self.free_at = 0.0

    def depart(self, nbytes: int, rate_bps: float | None) -> float:
        now = time.monotonic()
        if not rate_bps:
            return now
        start = max(now, self.free_at)
        self.free_at = start + nbytes * 8 / rate_bps
        return self.free_at


class WanProxy:
    PIECE = 16 * 1024  # bytes read at a time: small enough that a rate cap is smooth

    def __init__(self, target_port: int, faults: Faults | None = None, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.faults = faults or Faults()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._links = {True: _Link(), False: _Link()}
        self._live: set[asyncio.Event] = set()

    def __enter__(self) -> WanProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def outage(self, down: bool = True) -> None:
        """Start (or end) a full outage: open connections are reset now, new ones as they come."""
        self.faults.down = down
        if down:
            def reset_all() -> None:
                for cut in list(self._live):
                    cut.set()

            self._loop.call_soon_threadsafe(reset_all)

    def reset_connections(self) -> None:
        """Reset every open connection once (a NAT timeout, a router reboot)."""
        def reset_all() -> None:
            for cut in list(self._live):
                cut.set()

        self._loop.call_soon_threadsafe(reset_all)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Shutting the proxy down cancels this; end quietly (asyncio logs a cancelled handler as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await self._connection(reader, writer)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.faults.connections += 1
        up_writer: asyncio.StreamWriter | None = None
        try:  # every way out closes both sockets, a cancel at shutdown included (else a ResourceWarning)
            if self.faults.down:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            cut = asyncio.Event()
            self._live.add(cut)
            tasks = [
                asyncio.create_task(self._pipe(reader, up_writer, cut, upstream=True)),
                asyncio.create_task(self._pipe(up_reader, writer, cut, upstream=False)),
                asyncio.create_task(cut.wait()),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if not cut.is_set():  # one side closed: let the other finish its last bytes
                    await asyncio.wait(tasks[:2], timeout=5 + 2 * self.faults.latency_s)
            finally:
                self._live.discard(cut)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()

    def _cut_point(self) -> int | None:
        """Client→server byte count at which the next cut happens, if any."""
        f = self.faults
        points = []
        if f.cut_after_bytes is not None:
            points.append(f.cut_after_bytes)
        if f.cut_every_bytes:
            if f._next_cut_at is None:
                f._next_cut_at = f.forwarded + f.cut_every_bytes
            points.append(f._next_cut_at)
        return min(points) if points else None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: asyncio.Event,
                    *, upstream: bool) -> None:
        f = self.faults
        line: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(line, writer, cut))
        try:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while True:
                    data = await reader.read(self.PIECE)
                    if f.down:
                        cut.set()
                        return
                    if not data:
                        await line.put((time.monotonic() + f.latency_s, None))
                        await deliver
                        return
                    if f.stall:
                        if upstream:
                            f.forwarded += len(data)
                        continue  # into the void; the connection stays open
                    if upstream:
                        point = self._cut_point()
                        if point is not None and f.forwarded + len(data) >= point:
                            room = max(point - f.forwarded, 0)
                            f.forwarded += room
                            if f.cut_after_bytes is not None and point == f.cut_after_bytes:
                                f.cut_after_bytes = None
                            else:
                                f._next_cut_at = None
                            f.cuts += 1
                            cut.set()  # what was in flight is lost with the connection
                            return
                        f.forwarded += len(data)
                    departs = self._links[upstream].depart(len(data), f.rate_bps)
                    wait = departs - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)  # the line is busy: hold the sender back
                    await line.put((departs + f.latency_s, data))
        finally:
            if not deliver.done():
                deliver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await deliver

    async def _deliver(self, line: asyncio.Queue[tuple[float, bytes | None]], writer: asyncio.StreamWriter,
                       cut: asyncio.Event) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                at, data = await line.get()
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.faults.stall or self.faults.down:
                    if self.faults.down:
                        cut.set()
                        return
                    continue
                if data is None:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
