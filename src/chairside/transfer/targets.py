"""Where an import writes: the services of a local data folder (`--data`), or a server through the SDK (`--server`)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from chairside.auth.principal import Principal
from chairside.client import ChairsideError, Client
from chairside.context import Context
from chairside.db.models import Clinic, MediaTag, Note, Patient
from chairside.errors import Problem
from chairside.media import annotations as drawings
from chairside.media import notes, tags, teeth
from chairside.media.ingest import IngestRequest, ingest
from chairside.patients import service as patients
from chairside.quota import plan_changes
from chairside.transfer.importer import (
    Candidate,
    PatientInfo,
    Skip,
    Staged,
    Stored,
    Unverified,
    additions,
    copy_hashing,
)
from chairside.transfer.progress import Progress, TransferError

_SHAPES: TypeAdapter[list[drawings.Shape]] = TypeAdapter(list[drawings.Shape])


def unknown_clinic(clinic_id: uuid.UUID) -> TransferError:
    return TransferError(f"クリニック {clinic_id} が見つかりません。`chairside admin clinic create` で作った "
                         f"ID を指定してください。 / There is no clinic {clinic_id}: give the id that "
                         "`chairside admin clinic create` printed.", "unknown-clinic")


class LocalTarget:
    """The one write paths of a data folder: patients.service.create and media.ingest (source "migration")."""

    def __init__(self, ctx: Context, clinic_id: uuid.UUID, staging: Path) -> None:
        with ctx.db.read() as s:
            clinic = s.get(Clinic, clinic_id)
            if clinic is None:
                raise unknown_clinic(clinic_id)
            self.contract_id = clinic.contract_id
        self.ctx, self.clinic_id, self.staging = ctx, clinic_id, staging
        self.principal = Principal("operator", self.contract_id, None, name="chairside import", device="import")
        self._patients: dict[str, uuid.UUID] = {}
        staging.mkdir(parents=True, exist_ok=True)

    def _find(self, chart_no: str) -> uuid.UUID | None:
        with self.ctx.db.read() as s:
            found: uuid.UUID | None = s.scalar(select(Patient.id).where(
                Patient.clinic_id == self.clinic_id, Patient.chart_no == chart_no, Patient.merge_with.is_(None)))
            return found

    def patient(self, info: PatientInfo) -> tuple[uuid.UUID, bool]:
        if info.chart_no in self._patients:
            return self._patients[info.chart_no], False
        found, created = self._find(info.chart_no), False
        if found is None:
            try:
                found = patients.create(self.ctx, self.principal, self.clinic_id, info.chart_no, info.name,
                                        info.name_kana, info.birth_date, info.sex).id
                created = True
            except Problem:
                found = self._find(info.chart_no)  # registered by someone else meanwhile
                if found is None:
                    raise
        self._patients[info.chart_no] = found
        return found, created

    def stage(self, c: Candidate, progress: Progress) -> Staged:
        tmp = self.staging / f"{uuid.uuid4().hex}.part"
        try:
            sha = copy_hashing(c.path, tmp, progress)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Staged(tmp, sha, True)

    def store(self, staged: Staged, c: Candidate, media_id: uuid.UUID, patient_id: uuid.UUID,
              captured_at: datetime | None) -> Stored:
        ctx = self.ctx
        req = IngestRequest(path=staged.path, sha256=staged.sha256, size=c.size, media_id=media_id,
                            contract_id=self.contract_id, clinic_id=self.clinic_id, patient_id=patient_id,
                            filename=c.filename[:255], captured_at=captured_at, source="migration",
                            notice_percents=ctx.settings.quota_notice_percents if ctx.role.sends_notices else (),
                            queue_upstream=ctx.role.queues_writes_upstream)
        try:
            item = ingest(ctx.db, ctx.blobs, req, thumbnail_max_side=ctx.settings.thumbnail_max_side,
                          max_pixels=ctx.settings.max_photo_pixels)
        except Problem as e:
            if e.status in (415, 422):
                raise Skip(e.detail) from None
            raise Unverified(e.detail) from None
        if item.patient_id != patient_id:
            raise Unverified("この ID の項目は別の患者に登録済みです / an item with this id belongs to another patient")
        blobs, sha = ctx.blobs, item.sha256

        def read_back() -> tuple[str, int]:  # "as stored": the blob read back from the store and hashed
            h = hashlib.sha256()
            size = 0
            with blobs.open_range(sha, chunk_size=1 << 20) as reader:
                for chunk in reader:
                    h.update(chunk)
                    size += len(chunk)
            return h.hexdigest(), size

        return Stored(item.kind, item.sha256, item.size, float(item.duration_s or 0.0), read_back)

    def drawing(self, media_id: uuid.UUID, shapes: Any, media_time_s: float | None) -> bool:
        """An exported drawing over its item again, unless the item already has one with these very shapes."""
        try:
            parsed = _SHAPES.validate_python(shapes)
            dumped = [shape.model_dump(mode="json") for shape in parsed]
            existing = drawings.list_for(self.ctx, self.principal, media_id)
            if any(a.shapes == dumped and a.media_time_s == media_time_s for a in existing):
                return False
            drawings.create(self.ctx, self.principal, media_id, parsed, media_time_s)
        except ValidationError as e:
            raise Skip(f"描画の形式が正しくありません / not a valid drawing ({e.error_count()} errors)") from None
        except Problem as e:
            raise Skip(e.detail) from None
        return True

    def details(self, media_id: uuid.UUID, item_teeth: Sequence[int], item_tags: Sequence[str], note: str) -> None:
        """An exported item's teeth, tags and note onto it (importer.additions), through the one write paths:
        audited, fed to relays."""
        try:
            with self.ctx.db.read() as s:
                have_teeth = teeth.of_items(s, [media_id]).get(media_id, [])
                have_tags = list(s.scalars(select(MediaTag.tag).where(MediaTag.media_id == media_id)))
                have_note = s.get(Note, media_id)
            add = additions(have_teeth, have_tags, have_note.text if have_note else "", item_teeth, item_tags, note)
            if add.teeth is not None:
                teeth.set_teeth(self.ctx, self.principal, media_id, add.teeth)
            if add.tags is not None:
                tags.set_tags(self.ctx, self.principal, media_id, add.tags)
            if add.note is not None:
                notes.set_note(self.ctx, self.principal, "media", media_id, add.note)
        except ValueError as e:
            raise Skip(str(e)) from None
        except Problem as e:
            raise Skip(e.detail) from None

    def patient_note(self, info: PatientInfo) -> None:
        """A patients.csv note onto the patient, unless the patient has a note already."""
        patient_id, _ = self.patient(info)
        with self.ctx.db.read() as s:
            have = s.get(Note, patient_id)
        note = additions((), (), have.text if have else "", (), (), info.note).note
        try:
            if note is not None:
                notes.set_note(self.ctx, self.principal, "patient", patient_id, note)
        except Problem as e:
            raise Skip(e.detail) from None

    def discard(self, staged: Staged) -> None:
        if staged.temporary:
            staged.path.unlink(missing_ok=True)  # left when the same bytes were already stored

    def finish(self) -> dict[str, Any]:
        try:
            previous, new = plan_changes.onboard_plan(self.ctx.db, self.contract_id, actor="chairside import",
                                                      percents=self.ctx.settings.quota_notice_percents)
        except Problem as e:
            return {"error": e.detail}
        return {"previous_plan_hours": previous, "plan_hours": new}


class RemoteTarget:
    """A server (cloud or the clinic's relay) through the SDK: patients by chart number, uploads with tus."""

    def __init__(self, client: Client, clinic_id: uuid.UUID) -> None:
        self.client, self.clinic_id = client, clinic_id
        self._patients: dict[str, uuid.UUID] = {}
        self._progress: Progress | None = None

    def _find(self, chart_no: str) -> uuid.UUID | None:
        for p in self.client.search_patients(chart_no, limit=200):
            if p["chart_no"] == chart_no and p["clinic_id"] == str(self.clinic_id) and not p.get("merge_with"):
                return uuid.UUID(p["id"])
        return None

    def patient(self, info: PatientInfo) -> tuple[uuid.UUID, bool]:
        if info.chart_no in self._patients:
            return self._patients[info.chart_no], False
        found, created = self._find(info.chart_no), False
        if found is None:
            try:
                made = self.client.create_patient(self.clinic_id, info.chart_no, info.name, info.name_kana,
                                                  birth_date=info.birth_date.isoformat() if info.birth_date else None,
                                                  sex=info.sex)
                found, created = uuid.UUID(made["id"]), True
            except ChairsideError as e:
                if e.status == 422 and e.problem.get("code") == "unknown-clinic":
                    raise unknown_clinic(self.clinic_id) from None
                found = self._find(info.chart_no) if e.status == 409 else None
                if found is None:
                    raise Unverified(f"患者 {info.chart_no} を登録できません / cannot register the patient: "
                                     f"{e.detail}") from None
        self._patients[info.chart_no] = found
        return found, created

    def stage(self, c: Candidate, progress: Progress) -> Staged:
        self._progress = progress  # the bytes count as they are uploaded (store)
        return Staged(c.path, hash_only(c.path), False)

    def store(self, staged: Staged, c: Candidate, media_id: uuid.UUID, patient_id: uuid.UUID,
              captured_at: datetime | None) -> Stored:
        sent = 0

        def moved(offset: int, size: int) -> None:
            nonlocal sent
            if self._progress is not None and offset > sent:
                self._progress.advance(offset - sent)
                sent = offset

        try:
            item = self.client.upload(staged.path, patient_id, media_id=media_id, captured_at=captured_at,
                                      filename=c.filename[:255], progress=moved)
        except ChairsideError as e:
            if e.status in (415, 422):
                raise Skip(e.detail) from None
            raise Unverified(e.detail) from None
        return Stored(str(item["kind"]), str(item["sha256"]), int(item["size"]), float(item.get("duration_s") or 0.0))

    def details(self, media_id: uuid.UUID, item_teeth: Sequence[int], item_tags: Sequence[str], note: str) -> None:
        """As LocalTarget.details, through the API (a station token may set teeth, tags and notes)."""
        try:
            item = self.client.get_media(media_id)
            have_tags = self.client.patient_tags(item["patient_id"]).get(str(media_id), [])
            add = additions(item.get("teeth") or (), have_tags, self.client.get_note("media", media_id),
                            item_teeth, item_tags, note)
            if add.teeth is not None:
                self.client.set_teeth(media_id, add.teeth)
            if add.tags is not None:
                self.client.set_tags(media_id, add.tags)
            if add.note is not None:
                self.client.set_note("media", media_id, add.note)
        except ValueError as e:
            raise Skip(str(e)) from None
        except ChairsideError as e:
            raise Skip(e.detail) from None

    def patient_note(self, info: PatientInfo) -> None:
        patient_id, _ = self.patient(info)
        try:
            note = additions((), (), self.client.get_note("patient", patient_id), (), (), info.note).note
            if note is not None:
                self.client.set_note("patient", patient_id, note)
        except ChairsideError as e:
            raise Skip(e.detail) from None

    def discard(self, staged: Staged) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        return {"plan_hours": None,
                "note": "サーバーで `chairside admin contract onboard-plan --contract ID` を実行して"
                        "プランを設定してください。"
                        " / Run `chairside admin contract onboard-plan --contract ID` on the server to set the plan "
                        "(a station token cannot change plans)."}


def hash_only(path: Path) -> str:
    from chairside.transfer.progress import NoProgress
    return copy_hashing(path, None, NoProgress())
