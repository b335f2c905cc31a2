"""HTTP Range (RFC 9110 §14) for immutable, content-addressed bytes.

A strong ETag from the SHA-256; 206 with Content-Range for one satisfiable range;
416 when none is; If-Range honoured; several ranges at once are answered with the
whole representation (allowed by the RFC, and no browser player asks for them).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import anyio
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chairside.blobs import BlobStore
from chairside.blobs.crypt import EncryptedBlobStore

# ASCII digits, at most 18 (any byte offset fits; a longer number is ignored like any malformed Range).
_SPEC = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")

# Behind nginx (settings.offload == "nginx"): the internal locations of `chairside deploy nginx-config` that send
# a filesystem blob, `ACCEL_RANGE/ab/cd/<sha256>` with the client's one Range, `ACCEL_WHOLE/…` always whole.
ACCEL_RANGE = "/_chairside/range"
ACCEL_WHOLE = "/_chairside/whole"


class Unsatisfiable(Exception):
    pass


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range to send, None for the whole, or Unsatisfiable (416)."""
    if not header:
        return None
    m = _SPEC.match(header.replace(" ", ""))
    if m is None:
        return None  # another unit, several ranges, or garbage: ignore the header
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid range-spec: ignored, per RFC 9110
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, min(end, size - 1))


def etag_for(sha256: str) -> str:
    return f'"{sha256}"'


def _matches(header: str, etag: str) -> bool:
    return any(tag.strip() in (etag, "*") for tag in header.split(","))


class BlobResponse(Response):
    """Streams a blob (or a range of it) with large reads and no whole-file buffering."""

    def __init__(
        self,
        blobs: BlobStore,
        sha256: str,
        size: int,
        media_type: str,
        *,
        range_header: str | None = None,
        if_range: str | None = None,
        if_none_match: str | None = None,
        filename: str | None = None,
        head: bool = False,
        chunk_size: int = 1 << 20,
        accel: bool = False,
    ) -> None:
        self.blobs = blobs
        self.sha256 = sha256
        self.chunk_size = chunk_size
        self.head = head
        etag = etag_for(sha256)
        headers = {
            "accept-ranges": "bytes",
            "etag": etag,
            "cache-control": "private, max-age=3600",
        }
        if filename:
            headers["content-disposition"] = f"inline; filename*=UTF-8''{quote(filename)}"
        self.start, self.length = 0, size
        status = 200
        if if_none_match and _matches(if_none_match, etag):
            status, self.length = 304, 0
        else:
            use_range = if_range is None or if_range.strip() == etag
            try:
                byte_range = parse_range(range_header, size) if use_range else None
            except Unsatisfiable:
                byte_range = None
                status = 416
                headers["content-range"] = f"bytes */{size}"
            if byte_range is not None:
                status = 206
                self.start, self.length = byte_range.start, byte_range.length
                headers["content-range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        if accel and status in (200, 206) and not head:  # decided here, sent by nginx: no body
            where = ACCEL_RANGE if status == 206 else ACCEL_WHOLE
            headers["x-accel-redirect"] = f"{where}/{sha256[:2]}/{sha256[2:4]}/{sha256}"
            self.length = 0
        self.problem = b""
        if status == 416:
            self.problem = json.dumps({
                "type": "about:blank", "title": "Range not satisfiable", "status": 416,
                "detail": f"The requested byte range is outside the file, which has {size} bytes.",
            }).encode()
            self.length = len(self.problem)
            media_type = "application/problem+json"
        if status != 304:
            headers["content-length"] = str(self.length)
        super().__init__(status_code=status, headers=headers, media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.problem and not self.head:
            await send({"type": "http.response.body", "body": self.problem, "more_body": False})
            return
        if self.head or self.length == 0 or self.problem:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        path = self.blobs.local_path(self.sha256)
        if path is not None:
            await self._send_file(path, send)
        else:
            await self._send_stored(send)

    async def _send_stored(self, send: Send) -> None:
        """A blob with no plain local file: encrypted at rest in a folder (a MiB at a time, decrypted in the
        event loop when its chunks are in the page cache, like `_read_cached`, else in one worker thread hop per
        MiB), or in S3, or whatever `read_plain` does not take (streamed through the thread pool)."""
        pos, end = self.start, self.start + self.length
        read_plain = self.blobs.read_plain if isinstance(self.blobs, EncryptedBlobStore) else None
        while read_plain is not None and pos < end:
            n = min(self.chunk_size, end - pos)
            chunk = read_plain(self.sha256, pos, n, nowait=True)
            if chunk is None:
                chunk = await anyio.to_thread.run_sync(read_plain, self.sha256, pos, n)
            if not chunk:
                break  # not a local encrypted file after all, or shorter: open_range below tells
            pos += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": pos < end})
        if pos < end:
            chunks = self.blobs.open_range(self.sha256, pos, end - pos, chunk_size=self.chunk_size)
            async for piece in iterate_in_threadpool(chunks):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_file(self, path: Path, send: Send) -> None:
        fd = os.open(path, os.O_RDONLY)  # a local open is microseconds: no worker thread for it
        try:
            pos, end = self.start, self.start + self.length
            while pos < end:
                n = min(self.chunk_size, end - pos)
                chunk: bytes | bytearray | None = _read_cached(fd, n, pos)
                if chunk is None:
                    chunk = await anyio.to_thread.run_sync(os.pread, fd, n, pos)
                if not chunk:
                    raise OSError(f"blob {self.sha256} is shorter than recorded")
                pos += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": pos < end})
        finally:
            os.close(fd)


def _read_cached(fd: int, n: int, pos: int) -> bytearray | None:
    """The bytes at `pos` if they are all in the page cache (read at once, in the event loop);
    None when the read would wait for the disk, which then happens in a worker thread.

    `RWF_NOWAIT` makes the kernel answer from memory or refuse: a hot video (one being
    watched, or just recorded) costs no thread hop per range, and a cold one never blocks
    the loop behind a disk seek."""
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None:
        return None
    buf = bytearray(n)
    try:
        got = os.preadv(fd, [buf], pos, flag)
    except OSError:  # EAGAIN (not cached), or a filesystem without the flag
        return None
    if got != n:
        return None  # partly cached: the thread reads it whole
    return buf  # sent as is (uvicorn writes any bytes-like body): no copy


def iter_file(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(chunk):
            yield block
