"""What an export reads: a data folder through the visibility rules (`--data`), or a server through the SDK."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import httpx
from sqlalchemy import select

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.client import ChairsideError, Client
from chairside.context import Context
from chairside.db.models import Annotation, Clinic, Contract, Media, MediaTag, Note, Patient
from chairside.media import teeth as media_teeth
from chairside.transfer.progress import TransferError


@dataclass(frozen=True)
class ExportPatient:
    id: str
    clinic_name: str
    chart_no: str
    name: str
    name_kana: str
    birth_date: date | None
    sex: str


@dataclass(frozen=True)
class ExportItem:
    id: str
    kind: str
    mime: str
    size: int
    sha256: str
    captured_at: datetime
    filename: str
    duration_s: float | None
    width: int | None
    height: int | None
    teeth: tuple[int, ...] = ()  # RemoteSource only: the listing carries them


@dataclass(frozen=True)
class Details:
    """What the dentist wrote about a patient and their items: the patient's note; by item id, the teeth (FDI),
    the tags and the note. Exported as columns of patients.csv and media.csv, imported back (importer.py)."""

    note: str = ""
    teeth: dict[str, list[int]] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportDrawing:
    id: str
    version: int
    media_time_s: float | None
    shapes: list[dict[str, Any]]
    author_name: str
    updated_at: datetime


class Source(Protocol):
    def patients(self) -> list[ExportPatient]: ...

    def media(self, patient: ExportPatient) -> list[ExportItem]: ...

    def content(self, item: ExportItem) -> Iterator[bytes]: ...

    def drawings(self, item: ExportItem) -> list[ExportDrawing]: ...

    def details(self, patient: ExportPatient, items: Sequence[ExportItem]) -> Details: ...

    def exported(self, patient: ExportPatient, items: Sequence[ExportItem]) -> None:
        """Record in the audit trail that these items were written out."""


def no_such_patient(pid: str) -> TransferError:
    return TransferError(f"患者 {pid} が見つかりません（ID を確認してください）。 / "
                         f"There is no patient {pid} you may see: check the id.", "patient-not-found")


class LocalSource:
    """A data folder: the contract's patients and items not in the trash, as the operator sees them."""

    def __init__(self, ctx: Context, contract_id: uuid.UUID | None, patient_ids: Sequence[uuid.UUID]) -> None:
        self.ctx = ctx
        with ctx.db.read() as s:
            if contract_id is None:
                first = s.get(Patient, patient_ids[0]) if patient_ids else None
                if first is None:
                    raise no_such_patient(str(patient_ids[0]) if patient_ids else "-")
                contract_id = first.contract_id
            contract = s.get(Contract, contract_id)
            if contract is None:
                raise TransferError(f"契約 {contract_id} が見つかりません。 / There is no contract {contract_id}.",
                                    "contract-not-found")
            self.contract_name = contract.name
            self.clinics = {c.id: c.name for c in s.scalars(select(Clinic).where(Clinic.contract_id == contract_id))}
        self.contract_id = contract_id
        self.patient_ids = list(patient_ids)
        self.principal = Principal("operator", contract_id, None, name="chairside export", device="export")

    def patients(self) -> list[ExportPatient]:
        query = select(Patient).where(Patient.contract_id == self.contract_id)
        if self.patient_ids:
            query = query.where(Patient.id.in_(self.patient_ids))
        with self.ctx.db.read() as s:
            rows = list(s.scalars(query.order_by(Patient.clinic_id, Patient.chart_no, Patient.id)))
        found = {p.id for p in rows}
        for pid in self.patient_ids:
            if pid not in found:
                raise no_such_patient(str(pid))
        return [ExportPatient(str(p.id), self.clinics.get(p.clinic_id, "clinic"), p.chart_no, p.name, p.name_kana,
                              p.birth_date, p.sex) for p in rows]

    def media(self, patient: ExportPatient) -> list[ExportItem]:
        with self.ctx.db.read() as s:
            rows = s.scalars(select(Media).where(Media.patient_id == uuid.UUID(patient.id), Media.deleted_at.is_(None))
                             .order_by(Media.captured_at, Media.id))
            return [ExportItem(str(m.id), m.kind, m.mime, m.size, m.sha256, m.captured_at, m.filename, m.duration_s,
                               m.width, m.height) for m in rows]

    def content(self, item: ExportItem) -> Iterator[bytes]:
        with self.ctx.blobs.open_range(item.sha256, chunk_size=1 << 20) as reader:
            yield from reader

    def drawings(self, item: ExportItem) -> list[ExportDrawing]:
        with self.ctx.db.read() as s:
            rows = s.scalars(select(Annotation).where(Annotation.media_id == uuid.UUID(item.id))
                             .order_by(Annotation.created_at, Annotation.id))
            return [ExportDrawing(str(a.id), a.version, a.media_time_s, list(a.shapes), a.author_name, a.updated_at)
                    for a in rows]

    def details(self, patient: ExportPatient, items: Sequence[ExportItem]) -> Details:
        ids = [uuid.UUID(i.id) for i in items]
        pid = uuid.UUID(patient.id)
        with self.ctx.db.read() as s:
            teeth = media_teeth.of_items(s, ids) if ids else {}
            tags: dict[str, list[str]] = {}
            tagged = (select(MediaTag.media_id, MediaTag.tag).join(Media, Media.id == MediaTag.media_id)
                      .where(Media.patient_id == pid).order_by(MediaTag.media_id, MediaTag.tag))
            for media_id, tag in s.execute(tagged):
                tags.setdefault(str(media_id), []).append(tag)
            notes = {str(n.entity_id): n.text for n in s.scalars(select(Note).where(
                Note.contract_id == self.contract_id, Note.text != "",
                (Note.patient_id == pid) | Note.media_id.in_(select(Media.id).where(Media.patient_id == pid))))}
        return Details(notes.pop(patient.id, ""), {str(k): v for k, v in teeth.items()}, tags, notes)

    def exported(self, patient: ExportPatient, items: Sequence[ExportItem]) -> None:
        with self.ctx.db.session() as s:
            for item in items:
                audit.add(s, self.principal, "media.export", patient_id=uuid.UUID(patient.id),
                          media_id=uuid.UUID(item.id))


class RemoteSource:
    """A server through the SDK (and its plain JSON routes for clinics and drawings), as the token may see."""

    LIST_LIMIT = 200

    def __init__(self, client: Client, server: str, token: str, patient_ids: Sequence[uuid.UUID]) -> None:
        self.client = client
        self.http = httpx.Client(base_url=server.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                 timeout=60.0)
        self.patient_ids = list(patient_ids)
        self.clinics = {c["id"]: c["name"] for c in self._get("/api/v1/clinics")["items"]}

    def _get(self, url: str) -> Any:
        response = self.http.get(url)
        if response.status_code in (401, 403):
            raise TransferError("トークンが使えません。 / The server refused the token.", "unauthorized")
        response.raise_for_status()
        return response.json()

    def patients(self) -> list[ExportPatient]:
        if self.patient_ids:
            rows: list[dict[str, Any]] = []
            for pid in self.patient_ids:
                try:
                    rows.append(self.client.get_patient(pid))
                except ChairsideError as e:
                    if e.status == 404:
                        raise no_such_patient(str(pid)) from None
                    raise
        else:
            rows = self.client.search_patients(limit=self.LIST_LIMIT)
            if len(rows) >= self.LIST_LIMIT:
                raise TransferError(
                    f"サーバー経由では {self.LIST_LIMIT} 人までしか一覧できません。サーバー上で --data を使うか、"
                    "--patient で患者を指定してください。 / Through --server the API lists at most "
                    f"{self.LIST_LIMIT} patients: run the export on the server with --data, or name patients "
                    "with --patient.", "too-many-patients")
        rows.sort(key=lambda p: (self.clinics.get(p["clinic_id"], ""), p["chart_no"], p["id"]))
        return [ExportPatient(p["id"], self.clinics.get(p["clinic_id"], "clinic"), p["chart_no"], p["name"],
                              p["name_kana"], date.fromisoformat(p["birth_date"]) if p.get("birth_date") else None,
                              p.get("sex", "unknown")) for p in rows]

    def media(self, patient: ExportPatient) -> list[ExportItem]:
        rows = [m for m in self.client.list_media(patient.id) if not m.get("deleted_at")]
        rows.sort(key=lambda m: (m["captured_at"], m["id"]))
        return [ExportItem(m["id"], m["kind"], m["mime"], int(m["size"]), m["sha256"],
                           datetime.fromisoformat(m["captured_at"]), m["filename"], m.get("duration_s"),
                           m.get("width"), m.get("height"), tuple(m.get("teeth") or ())) for m in rows]

    def content(self, item: ExportItem) -> Iterator[bytes]:
        yield from self.client.iter_content(item.id, chunk_size=1 << 20)

    def drawings(self, item: ExportItem) -> list[ExportDrawing]:
        rows = self._get(f"/api/v1/media/{item.id}/annotations")["items"]
        return [ExportDrawing(a["id"], int(a["version"]), a.get("media_time_s"), list(a["shapes"]),
                              a.get("author_name", ""), datetime.fromisoformat(a["updated_at"])) for a in rows]

    def details(self, patient: ExportPatient, items: Sequence[ExportItem]) -> Details:
        notes = {i.id: self.client.get_note("media", i.id) for i in items}
        return Details(self.client.get_note("patient", patient.id), {i.id: list(i.teeth) for i in items if i.teeth},
                       self.client.patient_tags(patient.id), {k: v for k, v in notes.items() if v})

    def exported(self, patient: ExportPatient, items: Sequence[ExportItem]) -> None:
        pass  # the server records each read of the content itself

    def close(self) -> None:
        self.http.close()
        self.client.close()
