"""Running `chairside backup …` in-process, and a small site seeded through the real API."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner

from chairside.cli import app
from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Annotation, AuditEvent, Patient
from chairside.media import annotations as drawings
from tests.factories import Tenant, operator


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def backup(*args: str, env: dict[str, str] | None = None) -> Run:
    result = CliRunner().invoke(app, ["backup", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass
class Site:
    """What the primary acknowledged: media (id → SHA-256), patients, drawings and audit rows."""

    media: dict[str, str] = field(default_factory=dict)
    patients: dict[str, str] = field(default_factory=dict)  # id → name
    annotations: set[str] = field(default_factory=set)
    audit: list[tuple[int, str]] = field(default_factory=list)


FULL = ("clip.mp4", "photo.jpg", "clip2.mp4", "photo.png")
SMALL = ("clip.mp4", "photo.jpg")


def seed_site(ctx: Context, api: Client, tenant: Tenant, media_dir: Path, names: tuple[str, ...] = FULL) -> Site:
    """Two patients, media uploaded over tus (alternately theirs), a drawing on the photo: all through the API."""
    site = Site()
    clinic = tenant.clinic_ids[0]
    first = api.create_patient(clinic, "00101", "山田 太郎", "ヤマダ タロウ", birth_date="1980-04-01", sex="male")
    second = api.create_patient(clinic, "00102", "佐藤 花子", "サトウ ハナコ", birth_date="1975-09-30", sex="female")
    for i, name in enumerate(names):
        patient = (first, second)[i // 2 % 2]
        item = api.upload(media_dir / name, str(patient["id"]))
        site.media[str(item["id"])] = sha256_file(media_dir / name)
    photo = next(m for m in site.media if site.media[m] == sha256_file(media_dir / "photo.jpg"))
    shape = drawings.Arrow(type="arrow", color="#ff0000", start=(0.1, 0.1), end=(0.5, 0.5))
    drawings.create(ctx, operator(tenant.contract_id), uuid.UUID(photo), [shape])
    with ctx.db.read() as s:
        site.patients = {str(p.id): p.name for p in s.scalars(select(Patient))}
        site.annotations = {str(a.id) for a in s.scalars(select(Annotation))}
        site.audit = [(e.id, e.action) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    return site
