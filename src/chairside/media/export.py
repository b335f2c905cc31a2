"""A selection of media (or all of a patient's) as one zip with a manifest: planned here, then streamed.

The zip is written as it is sent: entries are STORED (videos do not compress), read from
the blob store in pieces, with sizes and CRCs in data descriptors, so memory stays flat
whatever the selection weighs. Names are plain and sort by date in any file browser:

    2026-11-20_1015_山田太郎_00123/
        manifest.json, manifest.csv
        2026-11-01_0930_REC_0001.mp4
        2026-11-01_0931_IMG_2041.heic

`prepare` is the one entry point: it loads what the principal may export, plans the names and
manifests (`plan_entries`, `manifest`: pure), and records each item's export in the audit trail;
`Export.chunks` (`stream_zip`) then yields the zip's bytes. Nothing here knows HTTP.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import select

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.blobs import BlobStore
from chairside.context import Context
from chairside.db.models import Media, Patient, utcnow
from chairside.domain.calendar import CLINIC_TZ
from chairside.domain.spreadsheet import safe_cell
from chairside.errors import Problem
from chairside.media.items import not_found as media_not_found
from chairside.patients.service import not_found as patient_not_found
from chairside.tenancy import visibility

MAX_ITEMS = 1000
MAX_PATIENT_ITEMS = 20_000
_EXT = {"video/mp4": ".mp4", "video/quicktime": ".mov", "image/jpeg": ".jpg", "image/png": ".png",
        "image/heic": ".heic", "image/heif": ".heif"}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f\\/:*?"<>|]')
CSV_COLUMNS = ("file", "patient_chart_no", "patient_name", "patient_name_kana", "kind", "captured_at", "size",
               "sha256", "media_id", "original_filename")


def safe_name(text: str, limit: int = 80) -> str:
    """A file or folder name that Windows, macOS and Linux all accept, readable Japanese kept."""
    text = unicodedata.normalize("NFC", text)
    text = _UNSAFE.sub("_", "".join(text.split())).strip(". ")
    return text[:limit] or "_"


def _local(when: datetime) -> datetime:
    return when.astimezone(CLINIC_TZ)


@dataclass(frozen=True)
class Entry:
    path: str  # inside the zip, under the root folder
    item: Media
    patient: Patient


def plan_entries(items: Sequence[Media], patients: dict[uuid.UUID, Patient], now: datetime) -> tuple[str, list[Entry]]:
    """The root folder and each item's path: by patient (when several), named by capture time."""
    patient_ids = {m.patient_id for m in items}
    stamp = _local(now).strftime("%Y-%m-%d_%H%M")
    if len(patient_ids) == 1:
        only = patients[next(iter(patient_ids))]
        root = f"{stamp}_{safe_name(only.name)}_{safe_name(only.chart_no, 40)}"
    else:
        root = f"{stamp}_chairside"
    taken: set[str] = set()
    entries = []
    for m in sorted(items, key=lambda m: (patients[m.patient_id].chart_no, str(m.patient_id), m.captured_at,
                                           str(m.id))):
        p = patients[m.patient_id]
        folder = "" if len(patient_ids) == 1 else f"{safe_name(p.name)}_{safe_name(p.chart_no, 40)}/"
        original = PurePosixPath(m.filename or "item")
        ext = _EXT.get(m.mime) or original.suffix.lower()[:8] or ".bin"
        stem = safe_name(original.stem if original.suffix else original.name, 60)
        base = f"{folder}{_local(m.captured_at).strftime('%Y-%m-%d_%H%M')}_{stem}"
        path, n = f"{base}{ext}", 1
        while path.lower() in taken:
            n += 1
            path = f"{base}_{n}{ext}"
        taken.add(path.lower())
        entries.append(Entry(path, m, p))
    return root, entries


def manifest(entries: list[Entry], principal: Principal, now: datetime) -> tuple[bytes, bytes]:
    """manifest.json and manifest.csv (UTF-8 with a BOM, so spreadsheet programs read the Japanese)."""
    items: list[dict[str, Any]] = []
    for e in entries:
        m, p = e.item, e.patient
        items.append({
            "file": e.path, "media_id": str(m.id), "kind": m.kind, "mime": m.mime, "size": m.size,
            "sha256": m.sha256, "captured_at": _local(m.captured_at).isoformat(), "original_filename": m.filename,
            "duration_s": m.duration_s, "width": m.width, "height": m.height, "clinic_id": str(m.clinic_id),
            "patient": {"id": str(p.id), "chart_no": p.chart_no, "name": p.name, "name_kana": p.name_kana,
                        "birth_date": p.birth_date.isoformat() if p.birth_date else None},
        })
    doc = {"format": "chairside-export/1", "exported_at": _local(now).isoformat(), "exported_by": principal.name,
           "device": principal.device, "count": len(items), "total_bytes": sum(e.item.size for e in entries),
           "items": items}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in items:
        writer.writerow([safe_cell(cell) for cell in (  # no formula runs from a name or file name (OWASP)
            row["file"], row["patient"]["chart_no"], row["patient"]["name"], row["patient"]["name_kana"],
            row["kind"], row["captured_at"], row["size"], row["sha256"], row["media_id"], row["original_filename"])])
    return (json.dumps(doc, ensure_ascii=False, indent=2).encode() + b"\n",
            b"\xef\xbb\xbf" + text.getvalue().encode())


class _Sink:
    """A write-only, unseekable file for zipfile: what is written waits here until drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _info(path: str, when: datetime, size: int) -> zipfile.ZipInfo:
    local = _local(when)
    info = zipfile.ZipInfo(path, date_time=(max(1980, local.year), *local.timetuple()[1:6]))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    info.external_attr = 0o644 << 16
    return info


def stream_zip(blobs: BlobStore, root: str, entries: list[Entry], manifests: tuple[bytes, bytes], now: datetime,
               chunk_size: int = 1 << 20) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in zip(("manifest.json", "manifest.csv"), manifests, strict=True):
            zf.writestr(_info(f"{root}/{name}", now, len(data)), data)
        yield sink.drain()
        for e in entries:
            with zf.open(_info(f"{root}/{e.path}", e.item.captured_at, e.item.size), "w") as out, \
                    blobs.open_range(e.item.sha256, chunk_size=chunk_size) as chunks:
                for chunk in chunks:
                    out.write(chunk)
                    yield sink.drain()
            yield sink.drain()
    yield sink.drain()


def _load(ctx: Context, principal: Principal, media_ids: Sequence[uuid.UUID] | None,
          patient_id: uuid.UUID | None) -> tuple[list[Media], dict[uuid.UUID, Patient]]:
    with ctx.db.read() as s:
        if patient_id is not None:
            if visibility.patient(s, principal, patient_id) is None:
                raise patient_not_found()
            items = list(s.scalars(visibility.media(principal).where(Media.patient_id == patient_id)
                                   .order_by(Media.captured_at).limit(MAX_PATIENT_ITEMS + 1)))
            if len(items) > MAX_PATIENT_ITEMS:
                raise Problem(413, f"This patient has more than {MAX_PATIENT_ITEMS} items; export a selection.",
                              code="export-too-large")
            if not items:
                raise Problem(404, "This patient has no photos or videos to download.", code="nothing-to-export")
        else:
            wanted = set(media_ids or [])
            items = list(s.scalars(visibility.media(principal).where(Media.id.in_(wanted))))
            if len(items) != len(wanted):
                raise media_not_found()
        patients = {p.id: p for p in s.scalars(select(Patient).where(Patient.id.in_({m.patient_id for m in items})))}
    return items, patients


@dataclass(frozen=True)
class Export:
    """A planned zip: its root folder (also the download's name), its entries and manifests, as of `at`."""

    root: str
    entries: list[Entry]
    manifests: tuple[bytes, bytes]
    at: datetime

    def chunks(self, blobs: BlobStore, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The zip's bytes, as they are written (blocking reads of the blob store: iterate off the event loop)."""
        return stream_zip(blobs, self.root, self.entries, self.manifests, self.at, chunk_size)


def prepare(ctx: Context, principal: Principal, *, media_ids: Sequence[uuid.UUID] | None = None,
            patient_id: uuid.UUID | None = None) -> Export:
    """Plan the zip of the given visible items (1 to MAX_ITEMS), or of all of a visible patient's (up to
    MAX_PATIENT_ITEMS), and record each item's export in the audit trail. Give exactly one of the two."""
    if (media_ids is None) == (patient_id is None):
        raise ValueError("give either media_ids or patient_id")
    if media_ids is not None and not 1 <= len(media_ids) <= MAX_ITEMS:
        raise Problem(422, f"Choose between 1 and {MAX_ITEMS} items to download.", code="bad-export")
    items, patients = _load(ctx, principal, media_ids, patient_id)
    now = utcnow()
    root, entries = plan_entries(items, patients, now)
    manifests = manifest(entries, principal, now)
    with ctx.db.session() as s:
        for e in entries:
            audit.add(s, principal, "media.export", patient_id=e.item.patient_id, media_id=e.item.id)
    return Export(root, entries, manifests, now)
