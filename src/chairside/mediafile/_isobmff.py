"""Just enough ISO base media file format (MP4, MOV, HEIF) to sniff and sanity-check.

Only top-level box headers are read: 8 or 16 bytes per box, so a 5 GB recording
costs a handful of small reads.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

_MAX_TOP_LEVEL_BOXES = 1_000_000  # fragmented MP4: one moof+mdat pair per fragment


@dataclass(frozen=True, slots=True)
class Ftyp:
    major: str
    compatible: tuple[str, ...]

    @property
    def brands(self) -> frozenset[str]:
        return frozenset((self.major, *self.compatible))


@dataclass(frozen=True, slots=True)
class Box:
    type: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


class BoxError(Exception):
    """The top-level box structure is broken; ``truncated`` when the file just ends early."""

    def __init__(self, reason: str, *, truncated: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated


def _fourcc(raw: bytes) -> str | None:
    if len(raw) != 4 or any(b < 0x20 or b > 0x7E for b in raw):
        return None
    return raw.decode("ascii")


def parse_ftyp(head: bytes) -> Ftyp | None:
    """The ``ftyp`` box at the very start of ``head``, or None if there is none."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    (size,) = struct.unpack(">I", head[:4])
    if size < 16 or size > 4096:
        return None
    major = _fourcc(head[8:12])
    if major is None:
        return None
    body = head[16 : min(size, len(head))]
    compatible = tuple(
        brand
        for brand in (_fourcc(body[i : i + 4]) for i in range(0, len(body) - 3, 4))
        if brand is not None and brand != "\0\0\0\0"
    )
    return Ftyp(major=major, compatible=compatible)


def head_box_types(head: bytes) -> list[str]:
    """Types of the top-level boxes whose headers lie within ``head`` (best effort)."""
    types: list[str] = []
    offset = 0
    while offset + 8 <= len(head):
        size, raw_type = struct.unpack(">I4s", head[offset : offset + 8])
        box_type = _fourcc(raw_type)
        if box_type is None:
            break
        types.append(box_type)
        if size == 1:
            if offset + 16 > len(head):
                break
            (size,) = struct.unpack(">Q", head[offset + 8 : offset + 16])
        if size < 8:
            break
        offset += size
    return types


def iter_top_level_boxes(f: BinaryIO, file_size: int) -> Iterator[Box]:
    """Walk the top-level boxes of a seekable file; raise BoxError if they do not add up."""
    offset = 0
    for _ in range(_MAX_TOP_LEVEL_BOXES):
        remaining = file_size - offset
        if remaining == 0:
            return
        if remaining < 8:
            raise BoxError(f"{remaining} stray bytes after the last box", truncated=True)
        f.seek(offset)
        header = f.read(16 if remaining >= 16 else 8)
        size, raw_type = struct.unpack(">I4s", header[:8])
        box_type = _fourcc(raw_type)
        if box_type is None:
            raise BoxError(f"unreadable box type {raw_type!r} at byte {offset}", truncated=False)
        header_size = 8
        if size == 1:
            if len(header) < 16:
                raise BoxError(f"box {box_type!r} header cut short", truncated=True)
            (size,) = struct.unpack(">Q", header[8:16])
            header_size = 16
        elif size == 0:  # "extends to the end of the file"
            size = remaining
        if size < header_size:
            raise BoxError(f"box {box_type!r} at byte {offset} has size {size}", truncated=False)
        if size > remaining:
            raise BoxError(
                f"box {box_type!r} at byte {offset} needs {size} bytes, only {remaining} present",
                truncated=True,
            )
        yield Box(type=box_type, offset=offset, size=size)
        offset += size


def top_level_boxes(path: str | os.PathLike[str]) -> list[Box]:
    with open(path, "rb") as f:
        return list(iter_top_level_boxes(f, os.fstat(f.fileno()).st_size))
