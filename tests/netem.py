"""A userspace WAN emulator for tests: an asyncio TCP proxy on loopback, in a thread.

It stands in for the internet between two of our own processes, and does to the bytes
what a bad line does: delay them, cap their rate, and cut connections after a given
number of bytes. (The kernel here has no netem; this is the honest stand-in.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    latency_s: float = 0.0  # one way, added to each forwarded piece
    rate_bps: float | None = None  # bits per second per direction per connection
    cut_after_bytes: int | None = None  # client→server bytes after which the connection is reset (once)
    cuts: int = 0  # how many cuts happened
    forwarded: int = field(default=0)  # client→server bytes forwarded in total


class WanProxy:
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

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        cut = asyncio.Event()
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, cut, upstream=True)),
            asyncio.create_task(self._pipe(up_reader, writer, cut, upstream=False)),
            asyncio.create_task(cut.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not cut.is_set():  # one side closed: let the other finish its last bytes
                await asyncio.wait(tasks[:2], timeout=5)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: asyncio.Event,
                    *, upstream: bool) -> None:
        f = self.faults
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                data = await reader.read(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                if upstream and f.cut_after_bytes is not None:
                    room = f.cut_after_bytes - f.forwarded
                    if room <= len(data):
                        writer.write(data[:max(room, 0)])
                        f.forwarded += max(room, 0)
                        f.cut_after_bytes = None
                        f.cuts += 1
                        cut.set()
                        return
                if f.latency_s:
                    await asyncio.sleep(f.latency_s)
                if f.rate_bps:
                    await asyncio.sleep(len(data) * 8 / f.rate_bps)
                writer.write(data)
                await writer.drain()
                if upstream:
                    f.forwarded += len(data)
