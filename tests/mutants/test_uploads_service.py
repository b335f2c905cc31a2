"""The tus upload state machine (uploads/service.py) driven directly: a real database and blob store, real
partial files, a real station's or relay's Principal and an async body made of byte chunks.

Written for the mutmut run over uploads/service.py (docs/testing.md, "Mutation testing"): the upload tests go
through a real server and check what a client sees. These pin, call by call: the row's offset and the partial
file's length after each PATCH, after a cut and after a failure mid-body; a body longer than the upload refused
with nothing past the length written; a wrong offset refused with the server's offset; the last byte storing
the item once (a retried last PATCH answers done), a SHA-256 that differs dropping the upload; the recovery of
a finished upload's bytes after a crash; the relay's disk check; another contract's upload answering like an
unknown one; a relay's forward attributed to its station, and the quota's refusals and their exceptions.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from sqlalchemy import func, select, update
from starlette.requests import ClientDisconnect

from chairside.auth.principal import Principal, station_principal
from chairside.context import Context, build_context
from chairside.db.models import AuditEvent, Contract, Media, Notice, OutboxOp, RelayState, Upload, utcnow
from chairside.errors import Problem
from chairside.media import heavy
from chairside.media.ingest import ingest as real_ingest
from chairside.mediafile import generate
from chairside.relay.runner import OVER_QUOTA_KEY
from chairside.relay.runtime import attach
from chairside.roles import RELAY
from chairside.settings import Settings
from chairside.uploads import clusterlock, service, tus
from tests.conftest import DATABASES, empty_pg_database
from tests.factories import Tenant, make_patient, make_tenant, operator

TUS = {"Tus-Resumable": "1.0.0"}


# --- helpers ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real PNG: ingest sniffs, decodes and thumbnails it in a few milliseconds."""
    return generate.make_png(tmp_path_factory.mktemp("photo") / "p.png", width=64, height=48).read_bytes()


@pytest.fixture(scope="module", params=DATABASES)
def shared_ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    """One data folder per database for the whole file (each test makes a tenant of its own and looks only at
    its rows): building and migrating a database for each test would take most of the file's time."""
    folder = tmp_path_factory.mktemp("service")
    url = f"sqlite:///{folder / 'chairside.db'}" if request.param == "sqlite" else empty_pg_database(request)
    context = build_context(Settings.load(environ={}, data_dir=folder / "data", database_url=url))
    yield context
    context.db.dispose()


@pytest.fixture
def ctx(shared_ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The shared context; settings a test changes (`ctx.settings = ...`) are put back after it."""
    monkeypatch.setattr(shared_ctx, "settings", shared_ctx.settings)
    return shared_ctx


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real H.264 clip of a fifth of a second."""
    return generate.make_video(tmp_path_factory.mktemp("clip") / "c.mp4", seconds=0.2, width=64, height=64,
                               fps=10).read_bytes()


@pytest.fixture
def relay_ctx(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The same data folder opened as a relay (no link upstream: it counts as cut off from the cloud)."""
    context = Context(settings=ctx.settings, db=ctx.db, blobs=ctx.blobs, role=RELAY, keys=ctx.keys)
    monkeypatch.setattr(context, "settings", context.settings)
    return context


def _station(ctx: Context, tenant: Tenant, i: int = 0) -> Principal:
    return station_principal(ctx, tenant.station_tokens[i], "192.0.2.7")


def _relay(tenant: Tenant) -> Principal:
    return Principal("relay", tenant.contract_id, None, name="Relay", relay_id=uuid.uuid4())


def _meta(patient_id: uuid.UUID, media_id: uuid.UUID | None = None, filename: str = "p.png",
          **extra: str) -> dict[str, str]:
    return {"patient_id": str(patient_id), "media_id": str(media_id or uuid.uuid4()), "filename": filename, **extra}


def _create(ctx: Context, principal: Principal, length: int, meta: dict[str, str],
            raw: str | None = "raw-header") -> Upload:
    return service.create(ctx, principal, secrets.token_hex(16), length, meta, raw)


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _cut(*chunks: bytes, error: BaseException) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    raise error


def _receive(ctx: Context, principal: Principal, upload: Upload, body: AsyncIterator[bytes], offset: int,
             declared: str | None = None, checksum: tus.Checksum | None = None) -> Upload:
    return anyio.run(service.receive, ctx, principal, upload, body, declared, checksum, offset)


def _refused(call: Any, *args: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args)
    return caught.value


def _row(ctx: Context, upload_id: str) -> Upload | None:
    with ctx.db.read() as s:
        return s.get(Upload, upload_id)


def _part(ctx: Context, upload_id: str) -> bytes | None:
    path = ctx.parts.path(upload_id)
    return path.read_bytes() if path.exists() else None


def _media(ctx: Context, contract_id: uuid.UUID) -> list[Media]:
    with ctx.db.read() as s:
        return list(s.scalars(select(Media).where(Media.contract_id == contract_id)))


def _uploads_audited(ctx: Context, contract_id: uuid.UUID) -> list[AuditEvent]:
    with ctx.db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.contract_id == contract_id,
                                                       AuditEvent.action == "media.upload")))


def _uploads(ctx: Context, contract_id: uuid.UUID) -> int:
    with ctx.db.read() as s:
        return s.scalar(select(func.count()).select_from(Upload).where(Upload.contract_id == contract_id)) or 0


# --- create, load, drop ----------------------------------------------------------------------------------------

def test_create_records_the_upload_and_an_empty_partial_file(ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    media_id = uuid.uuid4()
    before = utcnow()
    digest = "AB" * 32
    upload = _create(ctx, station, 1234, _meta(patient.id, media_id, "写真 1.png", sha256=digest,
                                                captured_at="2026-11-24T10:30:00"), raw="the raw header")
    row = _row(ctx, upload.id)
    assert row is not None
    for made in (upload, row):
        assert (made.contract_id, made.patient_id, made.media_id, made.station_id) == (
            tenant.contract_id, patient.id, media_id, tenant.station_ids[0])
        assert (made.filename, made.length, made.offset, made.upload_metadata) == ("写真 1.png", 1234, 0,
                                                                                   "the raw header")
        assert made.expected_sha256 == "ab" * 32
        assert made.captured_at is not None
        assert made.captured_at.replace(tzinfo=made.captured_at.tzinfo or UTC) == datetime(2026, 11, 24, 1, 30,
                                                                                          tzinfo=UTC)
        assert made.completed_at is None and made.created_over_limit is False
    expiry = timedelta(seconds=ctx.settings.upload_expiry_s)
    assert before + expiry <= upload.expires_at <= utcnow() + expiry
    assert _part(ctx, upload.id) == b""

    # The name falls back to `name`, then to "upload"; no header stored as ""; no sha256 is None.
    unnamed = {k: v for k, v in _meta(patient.id).items() if k != "filename"}
    named = _create(ctx, station, 5, {**unnamed, "name": "n.jpg"}, raw=None)
    assert (named.filename, named.upload_metadata, named.expected_sha256, named.captured_at) == ("n.jpg", "", None,
                                                                                                None)
    assert _create(ctx, station, 5, {**unnamed, "filename": "", "name": "m.jpg"}).filename == "m.jpg"
    assert _create(ctx, station, 5, unnamed).filename == "upload"
    assert _create(ctx, station, 5, {**unnamed, "filename": ""}).filename == "upload"


def test_create_refuses_a_bad_sha256_an_unknown_patient_and_a_reused_media_id(
    ctx: Context, tenant: Tenant, photo: bytes
) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    parts_before = sorted(ctx.parts.root.iterdir())
    for wrong in ("ab" * 31, "ab" * 32 + "0", "g" * 64, "ab" * 31 + " a"):
        problem = _refused(_create, ctx, station, 5, _meta(patient.id, sha256=wrong))
        assert (problem.status, problem.code, problem.headers) == (400, "bad-metadata", TUS)
        assert problem.detail == "'sha256' in the upload's metadata must be 64 hexadecimal digits."

    unknown = _refused(_create, ctx, station, 5, _meta(uuid.uuid4()))
    assert (unknown.status, unknown.code, unknown.headers) == (422, "unknown-patient", TUS)
    assert unknown.detail == ("The patient this file is for was not found. Check the patient, or refresh the "
                              "patient list and try again.")
    other = make_tenant(ctx, name="よその歯科", clinics=1)
    theirs = make_patient(ctx, other.contract_id, other.clinic_ids[0])
    assert _refused(_create, ctx, station, 5, _meta(theirs.id)).code == "unknown-patient"
    assert _uploads(ctx, tenant.contract_id) == 0 and sorted(ctx.parts.root.iterdir()) == parts_before

    media_id = uuid.uuid4()
    stored = _create(ctx, station, len(photo), _meta(patient.id, media_id))
    _receive(ctx, station, stored, _chunks(photo), 0)
    for length in (len(photo) + 1, len(photo) - 1):
        conflict = _refused(_create, ctx, station, length, _meta(patient.id, media_id))
        assert (conflict.status, conflict.code, conflict.headers) == (409, "media-id-conflict", TUS)
        assert conflict.detail == (f"The media id {media_id} is already used for a different file. The capture "
                                   "software must make a new id for each new recording or photo.")
    # The same file again (a retry after a lost answer) may be uploaded; another contract may not reuse the id.
    assert _create(ctx, station, len(photo), _meta(patient.id, media_id)).length == len(photo)
    other_station = _station(ctx, other)
    assert _refused(_create, ctx, other_station, len(photo), _meta(theirs.id, media_id)).code == "media-id-conflict"


def test_load_answers_another_contracts_or_a_malformed_upload_id_like_an_unknown_one(
    ctx: Context, tenant: Tenant
) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 10, _meta(patient.id))
    assert service.load(ctx, station, upload.id).id == upload.id
    other = make_tenant(ctx, name="よその歯科", clinics=1)
    answers = [_refused(service.load, ctx, _station(ctx, other), upload.id),
               _refused(service.load, ctx, station, secrets.token_hex(16)),
               _refused(service.load, ctx, station, "../" + upload.id)]
    for problem in answers:
        assert (problem.status, problem.code, problem.headers) == (404, "upload-not-found", TUS)
        assert problem.detail == "This upload does not exist (or was cancelled). Start the upload again."
    assert _row(ctx, upload.id) is not None and _part(ctx, upload.id) == b""


def test_an_unfinished_upload_past_its_expiry_is_removed_and_answers_410(ctx: Context, tenant: Tenant,
                                                                         photo: bytes) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 10, _meta(patient.id))
    done = _create(ctx, station, len(photo), _meta(patient.id))
    _receive(ctx, station, done, _chunks(photo), 0)
    with ctx.db.session() as s:
        s.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    problem = _refused(service.load, ctx, station, upload.id)
    assert (problem.status, problem.code, problem.headers) == (410, "upload-expired", TUS)
    assert problem.detail == "This upload expired because it was left unfinished too long. Start it again."
    assert _row(ctx, upload.id) is None and _part(ctx, upload.id) is None
    assert service.load(ctx, station, done.id).completed_at is not None  # a finished one is never expired

    # Expiry is "at or before now": an upload expiring this very moment is gone too.
    edge = _create(ctx, station, 10, _meta(patient.id))
    with ctx.db.session() as s:
        s.execute(update(Upload).where(Upload.id == edge.id).values(expires_at=utcnow()))
    assert _refused(service.load, ctx, station, edge.id).status == 410


def test_drop_removes_the_row_and_every_file_of_the_upload(ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload, kept = (_create(ctx, station, 10, _meta(patient.id)) for _ in range(2))
    staged = ctx.parts.path(upload.id).with_suffix(".ingest")
    staged.write_bytes(b"x")
    service.drop(ctx, upload.id)
    assert _row(ctx, upload.id) is None and _part(ctx, upload.id) is None and not staged.exists()
    assert _row(ctx, kept.id) is not None and _part(ctx, kept.id) == b""


# --- receive: offsets, cuts, refusals ------------------------------------------------------------------------

def test_offset_and_partial_file_agree_after_each_patch_and_after_a_cut(ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    data = bytes(range(256)) * 4
    upload = _create(ctx, station, len(data), _meta(patient.id))
    first_expiry = upload.expires_at

    # A creation-with-upload names no offset: its body starts at byte 0.
    upload = anyio.run(service.receive, ctx, station, upload, _chunks(data[:100], data[100:300]), "300", None)
    assert upload.offset == 300 and _part(ctx, upload.id) == data[:300]
    assert upload.expires_at >= first_expiry and upload.completed_at is None
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == 300

    # The line dies mid-body: what arrived is kept and acknowledged by the row.
    upload = _receive(ctx, station, upload, _cut(data[300:350], data[350:400], error=ClientDisconnect()), 300,
                      declared="700")
    assert upload.offset == 400 and _part(ctx, upload.id) == data[:400]
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == 400

    # A cut before any byte changes nothing.
    upload = _receive(ctx, station, upload, _cut(error=ClientDisconnect()), 400)
    assert upload.offset == 400 and _part(ctx, upload.id) == data[:400]
    assert ctx.parts.hasher_at(upload.id, 400).digest() == hashlib.sha256(data[:400]).digest()


def test_a_failure_mid_body_keeps_nothing_of_that_request(ctx: Context, tenant: Tenant,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "BATCH", 8)  # batches are written while the body still streams
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    data = os.urandom(200)
    upload = _create(ctx, station, len(data), _meta(patient.id))
    upload = _receive(ctx, station, upload, _chunks(data[:50]), 0)
    ctx.parts.forget(upload.id)  # a restart: the running hash is rebuilt from the file, then remembered
    with pytest.raises(RuntimeError, match="broken"):
        _receive(ctx, station, upload, _cut(data[50:70], data[70:90], error=RuntimeError("broken")), 50)
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == 50 and _part(ctx, upload.id) == data[:50]
    # The running hash is back at the last acknowledged offset (in memory, not re-read from the file).
    assert _cached_digest(ctx, upload.id, 50) == hashlib.sha256(data[:50]).digest()
    upload = _receive(ctx, station, row, _chunks(data[50:150]), 50)
    assert upload.offset == 150 and _part(ctx, upload.id) == data[:150]
    assert _cached_digest(ctx, upload.id, 150) == hashlib.sha256(data[:150]).digest()

    # Cutting the file back fails too (a dying disk): the request's own error is the one raised.
    truncated: list[int] = []

    def failing_ftruncate(fd: int, length: int) -> None:
        truncated.append(length)
        if len(truncated) > 1:
            raise OSError(5, "Input/output error")
        real_ftruncate(fd, length)

    real_ftruncate = os.ftruncate
    monkeypatch.setattr(os, "ftruncate", failing_ftruncate)
    with pytest.raises(RuntimeError, match="broken"):
        _receive(ctx, station, upload, _cut(data[150:170], error=RuntimeError("broken")), 150)
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    assert truncated == [150, 150]
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == 150  # the bytes past it are cut by the next PATCH
    upload = _receive(ctx, station, row, _chunks(data[150:190]), 150)
    assert upload.offset == 190 and _part(ctx, upload.id) == data[:190]


def _cached_digest(ctx: Context, upload_id: str, offset: int) -> bytes:
    """The running SHA-256 at `offset` as the part store remembers it: asked with the file moved away, so an
    answer can only come from memory (a PATCH must not re-read the whole file before it appends)."""
    path = ctx.parts.path(upload_id)
    away = path.with_suffix(".away")
    os.replace(path, away)
    try:
        return ctx.parts.hasher_at(upload_id, offset).digest()
    finally:
        os.replace(away, path)


def test_each_batch_is_on_disk_before_the_next_chunk_is_read(ctx: Context, tenant: Tenant,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "BATCH", 10)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 100, _meta(patient.id))
    path = ctx.parts.path(upload.id)
    sizes: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in (b"a" * 9, b"b", b"c" * 4, b"d" * 7, b"e" * 25, b"f"):
            yield chunk
            sizes.append(path.stat().st_size)

    upload = _receive(ctx, station, upload, body(), 0)
    # Memory holds less than a batch: at 10 bytes gathered they are written, not before.
    assert sizes == [0, 10, 10, 21, 46, 46]
    assert upload.offset == 47 and _part(ctx, upload.id) == b"a" * 9 + b"b" + b"c" * 4 + b"d" * 7 + b"e" * 25 + b"f"


def test_a_body_longer_than_the_upload_is_refused_and_nothing_past_the_length_is_written(
    ctx: Context, tenant: Tenant
) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 100, _meta(patient.id))
    upload = _receive(ctx, station, upload, _chunks(b"a" * 40), 0)

    # Declared too long: refused before a byte is read.
    read: list[bytes] = []

    async def watched() -> AsyncIterator[bytes]:
        read.append(b"x")
        yield b"x"

    problem = _refused(_receive, ctx, station, upload, watched(), 40, "61")
    assert (problem.status, problem.code, problem.headers) == (400, "too-long", TUS)
    assert problem.detail == "The request sends more bytes than the upload's declared length."
    assert read == []
    # Declared at most what is left, or not a number (chunked): read, and refused at the byte past the length.
    for declared in ("60", None, "sixty"):
        problem = _refused(_receive, ctx, station, upload, _chunks(b"b" * 30, b"c" * 31), 40, declared)
        assert (problem.status, problem.code, problem.headers) == (400, "too-long", TUS)
        assert problem.detail == "The request sends more bytes than the upload's declared length."
        row = _row(ctx, upload.id)
        assert row is not None and row.offset == 40 and _part(ctx, upload.id) == b"a" * 40
    # Exactly the rest is taken (the end is not "past the length").
    upload = _receive(ctx, station, upload, _chunks(b"b" * 30, b"c" * 29), 40, "60")
    assert upload.offset == 99 and _part(ctx, upload.id) == b"a" * 40 + b"b" * 30 + b"c" * 29


def test_a_wrong_offset_is_refused_with_the_servers_offset(ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 100, _meta(patient.id))
    upload = _receive(ctx, station, upload, _chunks(b"a" * 30), 0)
    for wrong in (0, 29, 31, 100):
        problem = _refused(_receive, ctx, station, upload, _chunks(b"b"), wrong)
        assert (problem.status, problem.code) == (409, "offset-mismatch")
        assert problem.detail == (f"The upload is at byte 30, not {wrong}. Resume from the server's offset "
                                  "(ask with HEAD).")
        assert problem.headers == {**TUS, "Upload-Offset": "30", "Upload-Expires": tus.http_date(upload.expires_at),
                                   "Connection": "close"}
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == 30 and _part(ctx, upload.id) == b"a" * 30


def test_the_offset_commit_refuses_an_offset_that_moved(ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 100, _meta(patient.id))
    with ctx.db.session() as s:
        s.execute(update(Upload).where(Upload.id == upload.id).values(expires_at=utcnow() + timedelta(seconds=5)))
    before = utcnow()
    moved = service._commit_offset(ctx, upload, 20)
    # Each acknowledged PATCH gives the upload its whole expiry again.
    assert moved.offset == 20 and moved.expires_at >= before + timedelta(seconds=ctx.settings.upload_expiry_s)
    problem = _refused(service._commit_offset, ctx, upload, 40)  # still believes the offset is 0
    assert (problem.status, problem.code, problem.headers) == (409, "offset-mismatch", TUS)
    assert problem.detail == "The upload changed while this request ran. Resume from the server's offset."
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == 20


def test_bytes_past_the_committed_offset_are_cut_before_writing(ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 100, _meta(patient.id))
    upload = _receive(ctx, station, upload, _chunks(b"a" * 30), 0)
    with ctx.parts.path(upload.id).open("ab") as f:  # a crash after the write, before the row moved
        f.write(b"z" * 50)
    ctx.parts.forget(upload.id)  # and a restart: the running hash is rebuilt from the file
    upload = _receive(ctx, station, upload, _chunks(b"b" * 10), 30)
    assert upload.offset == 40 and _part(ctx, upload.id) == b"a" * 30 + b"b" * 10
    assert ctx.parts.hasher_at(upload.id, 40).digest() == hashlib.sha256(b"a" * 30 + b"b" * 10).digest()


def test_a_chunk_checksum_that_does_not_match_keeps_nothing(ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 100, _meta(patient.id))
    upload = _receive(ctx, station, upload, _chunks(b"a" * 30), 0)
    good = tus.Checksum("sha256", hashlib.sha256(b"b" * 20).digest())
    for body in (_chunks(b"b" * 19, b"c"), _cut(b"b" * 20, error=ClientDisconnect())):
        problem = _refused(_receive, ctx, station, upload, body, 30, None, good)
        assert (problem.status, problem.code) == (460, "checksum-mismatch")
        assert problem.headers == {**TUS, "Upload-Offset": "30", "Upload-Expires": tus.http_date(upload.expires_at)}
        row = _row(ctx, upload.id)
        assert row is not None and row.offset == 30 and _part(ctx, upload.id) == b"a" * 30
    sha1 = tus.Checksum("sha1", hashlib.sha1(b"b" * 20, usedforsecurity=False).digest())
    upload = _receive(ctx, station, upload, _chunks(b"b" * 5, b"b" * 15), 30, "20", sha1)
    assert upload.offset == 50 and _part(ctx, upload.id) == b"a" * 30 + b"b" * 20


def test_a_stalled_body_ends_with_408_and_keeps_what_arrived(ctx: Context, tenant: Tenant, photo: bytes) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, upload_idle_timeout_s=0.2)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, 100, _meta(patient.id))

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 30
        await anyio.sleep_forever()
        yield b"never"

    problem = _refused(_receive, ctx, station, upload, stalls(), 0)
    assert (problem.status, problem.code) == (408, "upload-idle")
    assert problem.detail == ("No bytes arrived for 0.2 s, so this request was ended; the upload is at byte 30. "
                              "Resume from there.")
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == 30 and _part(ctx, upload.id) == b"a" * 30
    assert problem.headers == {**TUS, "Upload-Offset": "30", "Upload-Expires": tus.http_date(row.expires_at),
                               "Connection": "close"}

    # With a checksum, a stalled body is damaged: nothing kept, and the client is told to stop sending.
    check = tus.Checksum("sha256", hashlib.sha256(b"b" * 70).digest())
    problem = _refused(_receive, ctx, station, row, stalls(), 30, None, check)
    assert (problem.status, problem.code) == (460, "checksum-mismatch")
    assert problem.headers["Connection"] == "close" and problem.headers["Upload-Offset"] == "30"
    again = _row(ctx, upload.id)
    assert again is not None and again.offset == 30 and _part(ctx, upload.id) == b"a" * 30

    # A body that stalls after its last byte is whole: stored, no 408.
    async def whole_then_stalls() -> AsyncIterator[bytes]:
        yield photo
        await anyio.sleep_forever()
        yield b""

    ctx.settings = dataclasses.replace(ctx.settings, upload_idle_timeout_s=0.05)
    whole = _create(ctx, station, len(photo), _meta(patient.id))
    assert _receive(ctx, station, whole, whole_then_stalls(), 0).completed_at is not None
    assert len(_media(ctx, tenant.contract_id)) == 1


# --- complete: stored once, checked, cleaned up ---------------------------------------------------------------

def test_the_last_byte_stores_the_item_once_and_a_retried_last_patch_answers_done(
    ctx: Context, tenant: Tenant, photo: bytes
) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant, 1)  # the second clinic's chair, for a patient registered at the first
    media_id = uuid.uuid4()
    digest = hashlib.sha256(photo).hexdigest()
    upload = _create(ctx, station, len(photo), _meta(patient.id, media_id, "IMG_1.png"))
    half = len(photo) // 2
    upload = _receive(ctx, station, upload, _chunks(photo[:half]), 0)
    assert _media(ctx, tenant.contract_id) == [] and upload.completed_at is None
    done = _receive(ctx, station, upload, _chunks(photo[half:]), half)
    assert done.completed_at is not None and done.offset == len(photo) and done.expected_sha256 == digest
    row = _row(ctx, upload.id)
    assert row is not None and row.completed_at is not None and row.expected_sha256 == digest
    [item] = _media(ctx, tenant.contract_id)
    assert (item.id, item.contract_id, item.patient_id, item.sha256, item.size, item.filename) == (
        media_id, tenant.contract_id, patient.id, digest, len(photo), "IMG_1.png")
    # Taken at the uploading station's clinic; sent by a station.
    assert (item.clinic_id, item.source, item.station_id) == (tenant.clinic_ids[1], "station",
                                                               tenant.station_ids[1])
    assert ctx.blobs.stat(digest) is not None
    path = ctx.parts.path(upload.id)
    assert not path.exists() and not path.with_suffix(".ingest").exists()
    [entry] = _uploads_audited(ctx, tenant.contract_id)
    assert (entry.actor_id, entry.patient_id, entry.media_id, entry.detail) == (
        tenant.station_ids[1], patient.id, media_id, {"filename": "IMG_1.png", "size": len(photo)})

    # The last PATCH again (its answer was lost), with or without its body: done, nothing stored twice.
    for body in (_chunks(photo[half:]), _chunks()):
        again = _receive(ctx, station, done, body, len(photo))
        assert again.completed_at is not None and again.id == upload.id
    fresh = service.load(ctx, station, upload.id)
    assert _receive(ctx, station, fresh, _chunks(b"x"), len(photo)).completed_at == fresh.completed_at
    assert len(_media(ctx, tenant.contract_id)) == 1 and len(_uploads_audited(ctx, tenant.contract_id)) == 1


def test_a_patch_that_waited_behind_the_one_that_finished_the_upload_answers_done(ctx: Context, tenant: Tenant,
                                                                                    photo: bytes) -> None:
    """The end-of-upload race: a second PATCH read the row before the first one finished (its copy is stale)."""
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    half = len(photo) // 2

    # The other request wrote every byte, and its storing was cut before it ended: this one stores the file
    # and ignores its own body (the bytes are all in).
    upload = _create(ctx, station, len(photo), _meta(patient.id))
    stale = _receive(ctx, station, upload, _chunks(photo[:half]), 0)
    ctx.parts.path(stale.id).write_bytes(photo)
    with ctx.db.session() as s:
        s.execute(update(Upload).where(Upload.id == stale.id).values(offset=len(photo)))
    done = _receive(ctx, station, stale, _chunks(b"late bytes"), len(photo))
    assert done.completed_at is not None and len(_media(ctx, tenant.contract_id)) == 1

    # The other request stored it while this one waited for the lock: answered as stored.
    other = _create(ctx, station, len(photo), _meta(patient.id))
    stale = _receive(ctx, station, other, _chunks(photo[:half]), 0)
    with ctx.db.session() as s:
        s.execute(update(Upload).where(Upload.id == stale.id).values(offset=len(photo), completed_at=utcnow()))
    assert _receive(ctx, station, stale, _chunks(photo[half:]), len(photo)).completed_at is not None
    problem = _refused(_receive, ctx, station, stale, _chunks(photo[half:]), half)
    assert (problem.status, problem.code) == (409, "offset-mismatch")
    assert _part(ctx, stale.id) == photo[:half]  # untouched


def test_an_upload_without_a_station_is_the_patients_clinics_and_a_viewers(ctx: Context, tenant: Tenant,
                                                                           photo: bytes) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[1])
    who = operator(tenant.contract_id)
    upload = _create(ctx, who, len(photo), _meta(patient.id))
    assert upload.station_id is None
    _receive(ctx, who, upload, _chunks(photo), 0)
    [item] = _media(ctx, tenant.contract_id)
    assert (item.clinic_id, item.source, item.station_id) == (tenant.clinic_ids[1], "viewer", None)


def test_the_item_gets_the_uploads_capture_time_and_the_servers_photo_settings(ctx: Context, tenant: Tenant,
                                                                                 photo: bytes) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    ctx.settings = dataclasses.replace(ctx.settings, thumbnail_max_side=16, heavy_work_parallel=3)
    upload = _create(ctx, station, len(photo), _meta(patient.id, captured_at="2026-11-24T10:30:00+09:00"))
    _receive(ctx, station, upload, _chunks(photo), 0)
    [item] = _media(ctx, tenant.contract_id)
    assert item.captured_at.replace(tzinfo=item.captured_at.tzinfo or UTC) == datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
    assert item.thumb_sha256 is not None
    thumb = ctx.blobs.local_path(item.thumb_sha256)
    assert thumb is not None
    with Image.open(thumb) as image:
        assert max(image.size) == 16
    assert heavy._size == 3  # the decode slots are sized by the server's setting (media/heavy.py)

    ctx.settings = dataclasses.replace(ctx.settings, max_photo_pixels=64 * 48 - 1)  # one pixel short
    big = _create(ctx, station, len(photo), _meta(patient.id))
    problem = _refused(_receive, ctx, station, big, _chunks(photo), 0)
    assert (problem.status, problem.code) == (422, "photo-too-large")
    assert _row(ctx, big.id) is None and len(_media(ctx, tenant.contract_id)) == 1


def test_a_video_at_the_limit_under_a_photos_name_is_refused_and_notices_are_the_clouds(
    ctx: Context, relay_ctx: Context, clip: bytes
) -> None:
    tenant = make_tenant(ctx, plan_hours=0)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, len(clip), _meta(patient.id, filename="p.jpg"))
    assert upload.created_over_limit is True
    problem = _refused(_receive, ctx, station, upload, _chunks(clip), 0)
    assert (problem.status, problem.code) == (403, "video-quota-full")
    assert _row(ctx, upload.id) is None and _media(ctx, tenant.contract_id) == []

    # Just under half of a one-hour plan, with notices at 50 %: the cloud records the crossing, a relay never.
    for context in (ctx, relay_ctx):
        context.settings = dataclasses.replace(context.settings, quota_notice_percents=(50,))
    for context, expected in ((ctx, [50]), (relay_ctx, [])):
        owner = make_tenant(ctx, plan_hours=1)
        with ctx.db.session() as s:
            s.execute(update(Contract).where(Contract.id == owner.contract_id).values(stored_video_ms=1_800_000 - 50))
        who = _station(context, owner)
        video = _create(context, who, len(clip), _meta(make_patient(ctx, owner.contract_id, owner.clinic_ids[0]).id,
                                                       filename="rec.mp4"))
        assert _receive(context, who, video, _chunks(clip), 0).completed_at is not None
        with ctx.db.read() as s:
            assert list(s.scalars(select(Notice.threshold_percent).where(Notice.contract_id == owner.contract_id))) \
                == expected


def test_a_sha256_that_differs_from_the_metadata_drops_the_upload(ctx: Context, tenant: Tenant,
                                                                  photo: bytes) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    wrong = hashlib.sha256(photo + b"x").hexdigest()
    upload = _create(ctx, station, len(photo), _meta(patient.id, sha256=wrong))
    problem = _refused(_receive, ctx, station, upload, _chunks(photo), 0)
    assert (problem.status, problem.code, problem.headers) == (460, "checksum-mismatch", TUS)
    assert problem.detail == ("The file that arrived is not the file that was sent (its SHA-256 differs). "
                              "Upload it again.")
    assert _row(ctx, upload.id) is None and _part(ctx, upload.id) is None and _media(ctx, tenant.contract_id) == []

    right = _create(ctx, station, len(photo), _meta(patient.id, sha256=hashlib.sha256(photo).hexdigest().upper()))
    assert _receive(ctx, station, right, _chunks(photo), 0).completed_at is not None
    assert len(_media(ctx, tenant.contract_id)) == 1


def test_a_file_that_can_never_be_an_item_is_dropped_with_the_protocols_headers(ctx: Context,
                                                                                tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    text = "歯科メモ: これは写真ではありません\n".encode() * 20
    upload = _create(ctx, station, len(text), _meta(patient.id, filename="notes.png"))
    problem = _refused(_receive, ctx, station, upload, _chunks(text), 0)
    assert (problem.status, problem.code) == (415, "unsupported-media")
    assert problem.headers["Tus-Resumable"] == "1.0.0"
    assert _row(ctx, upload.id) is None and _part(ctx, upload.id) is None
    assert not ctx.parts.path(upload.id).with_suffix(".ingest").exists()


def test_a_patient_out_of_the_callers_sight_at_completion_is_refused(ctx: Context, tenant: Tenant,
                                                                    photo: bytes) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, len(photo), _meta(patient.id))
    # The station was re-scoped to the other clinic while the file was on its way.
    scoped = dataclasses.replace(station, clinic_ids=frozenset({tenant.clinic_ids[1]}))
    problem = _refused(_receive, ctx, scoped, upload, _chunks(photo), 0)
    assert (problem.status, problem.code, problem.headers) == (422, "unknown-patient", TUS)
    assert problem.detail == "The patient this file is for no longer exists."
    assert _row(ctx, upload.id) is None and _media(ctx, tenant.contract_id) == []


def test_a_crash_inside_the_ingest_puts_the_bytes_back_for_a_retry(ctx: Context, tenant: Tenant, photo: bytes,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, len(photo), _meta(patient.id))
    seen: list[bytes] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        req = args[2]
        seen.append(req.path.read_bytes())
        assert req.path == ctx.parts.path(upload.id).with_suffix(".ingest") and not ctx.parts.path(upload.id).exists()
        raise OSError("disk went away")

    monkeypatch.setattr("chairside.uploads.service.ingest", broken)
    with pytest.raises(OSError, match="disk went away"):
        _receive(ctx, station, upload, _chunks(photo), 0)
    assert seen == [photo]
    row = _row(ctx, upload.id)
    assert row is not None and row.offset == len(photo) and row.completed_at is None
    assert row.expected_sha256 == hashlib.sha256(photo).hexdigest()  # the key a later recovery finds it by
    assert _part(ctx, upload.id) == photo and not ctx.parts.path(upload.id).with_suffix(".ingest").exists()

    # The client resumes (HEAD says all bytes are in): the next request stores it.
    monkeypatch.setattr("chairside.uploads.service.ingest", real_ingest)
    done = _receive(ctx, station, row, _chunks(), len(photo))
    assert done.completed_at is not None and len(_media(ctx, tenant.contract_id)) == 1


def test_a_server_stopped_while_storing_is_taken_up_again_from_the_staged_file(ctx: Context, tenant: Tenant,
                                                                              photo: bytes) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _create(ctx, station, len(photo), _meta(patient.id))
    part = ctx.parts.path(upload.id)
    part.write_bytes(photo)
    upload = service._commit_offset(ctx, upload, len(photo))
    os.replace(part, part.with_suffix(".ingest"))  # killed after the rename, before the blob store adopted it
    ctx.parts.forget(upload.id)
    done = anyio.run(service.complete, ctx, station, upload)
    [item] = _media(ctx, tenant.contract_id)
    assert done.completed_at is not None and item.sha256 == hashlib.sha256(photo).hexdigest()
    assert not part.exists() and not part.with_suffix(".ingest").exists()

    # Both files there (a stale staged file): the partial file is the one stored.
    other = _all_in(ctx, station, patient.id, photo)
    ctx.parts.path(other.id).with_suffix(".ingest").write_bytes(b"stale")
    assert anyio.run(service.complete, ctx, station, other).completed_at is not None
    assert len(_media(ctx, tenant.contract_id)) == 2


# --- finish_stored and recover_part -------------------------------------------------------------------------

def _all_in(ctx: Context, station: Principal, patient_id: uuid.UUID, data: bytes,
            media_id: uuid.UUID | None = None) -> Upload:
    """An upload whose bytes are all in and acknowledged, not stored yet (the server stopped while storing)."""
    upload = _create(ctx, station, len(data), _meta(patient_id, media_id))
    ctx.parts.path(upload.id).write_bytes(data)
    with ctx.db.session() as s:
        s.execute(update(Upload).where(Upload.id == upload.id).values(
            offset=len(data), expected_sha256=hashlib.sha256(data).hexdigest()))
    row = _row(ctx, upload.id)
    assert row is not None
    return row


def test_recover_part_puts_a_finished_uploads_bytes_back_where_the_lock_expects_them(
    ctx: Context, tenant: Tenant
) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    data = os.urandom(64)  # bytes no blob holds
    upload = _all_in(ctx, station, patient.id, data)
    part = ctx.parts.path(upload.id)
    staged = part.with_suffix(".ingest")
    assert service.recover_part(ctx, upload) is False and part.read_bytes() == data  # in place: nothing to do
    staged.write_bytes(b"other")
    assert service.recover_part(ctx, upload) is False and part.read_bytes() == data and staged.exists()
    part.unlink()

    # Staged and held by the request storing it: busy, untouched.
    fd = os.open(staged, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert service.recover_part(ctx, upload) is True
        assert not part.exists() and staged.read_bytes() == b"other"
    finally:
        os.close(fd)
    # Staged and not held (its request died): renamed back.
    assert service.recover_part(ctx, upload) is False
    assert part.read_bytes() == b"other" and not staged.exists()
    part.unlink()

    # Neither file and no blob of that hash: nothing to recover.
    assert service.recover_part(ctx, upload) is False and not part.exists()
    with ctx.db.session() as s:
        s.execute(update(Upload).where(Upload.id == upload.id).values(expected_sha256=None))
    bare = _row(ctx, upload.id)
    assert bare is not None and service.recover_part(ctx, bare) is False and not part.exists()


def test_recover_part_copies_the_bytes_back_from_a_blob_already_adopted(ctx: Context, tenant: Tenant,
                                                                       photo: bytes) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    media_id = uuid.uuid4()
    stored = _create(ctx, station, len(photo), _meta(patient.id, media_id))
    _receive(ctx, station, stored, _chunks(photo), 0)
    digest = hashlib.sha256(photo).hexdigest()
    blob = ctx.blobs.local_path(digest)
    if blob is None:
        pytest.skip("this blob store keeps no clear local file")
    # The same item's upload, killed after the blob store adopted its file and the item was written.
    upload = _all_in(ctx, station, patient.id, photo, media_id)
    part = ctx.parts.path(upload.id)
    part.unlink()

    fd = os.open(blob, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert service.recover_part(ctx, upload) is True and not part.exists()
    finally:
        os.close(fd)
    assert service.recover_part(ctx, upload) is False
    assert part.read_bytes() == photo and (part.stat().st_mode & 0o777) == 0o600
    assert not part.with_suffix(".copy").exists() and Path(blob).read_bytes() == photo

    part.unlink()
    done = anyio.run(service.finish_stored, ctx, station, upload)
    assert done.completed_at is not None and done.id == upload.id
    assert len(_media(ctx, tenant.contract_id)) == 1 and Path(blob).exists()


def test_finish_stored_stores_an_upload_left_whole_or_answers_423_while_another_stores_it(
    ctx: Context, tenant: Tenant, photo: bytes
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, upload_lock_wait_s=0.1)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    upload = _all_in(ctx, station, patient.id, photo)
    staged = ctx.parts.path(upload.id).with_suffix(".ingest")
    os.replace(ctx.parts.path(upload.id), staged)
    fd = os.open(staged, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another request is storing it
        problem = _refused(anyio.run, service.finish_stored, ctx, station, upload)
        assert (problem.status, problem.code) == (423, "upload-locked")
        assert problem.headers == {"Retry-After": "1", **TUS}
        assert problem.detail == "This upload is being stored. Wait a moment and ask again."
        # The same through a PATCH that comes after the last byte.
        assert _refused(_receive, ctx, station, upload, _chunks(), len(photo)).code == "upload-locked"
    finally:
        os.close(fd)
    assert _media(ctx, tenant.contract_id) == []
    assert service._held(staged) is False and service._held(staged.with_suffix(".gone")) is False
    done = anyio.run(service.finish_stored, ctx, station, upload)
    assert done.completed_at is not None and len(_media(ctx, tenant.contract_id)) == 1
    # Finished already: answered as it is.
    assert anyio.run(service.finish_stored, ctx, station, done) is done

    # Its bytes are nowhere (renamed away by a request storing it, never seen stored): waited for, then 423.
    lost = _all_in(ctx, station, patient.id, os.urandom(64))
    ctx.parts.path(lost.id).unlink()
    problem = _refused(anyio.run, service.finish_stored, ctx, station, lost)
    assert (problem.status, problem.code) == (423, "upload-locked")


def test_finish_stored_waits_for_the_request_storing_it_and_for_the_files_lock(ctx: Context, tenant: Tenant,
                                                                               photo: bytes) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, upload_lock_wait_s=0.2)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)

    # A PATCH holds the whole file's lock (it is about to store it): 423 once the wait is over.
    upload = _all_in(ctx, station, patient.id, photo)
    fd = os.open(ctx.parts.path(upload.id), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        problem = _refused(anyio.run, service.finish_stored, ctx, station, upload)
        assert (problem.status, problem.code) == (423, "upload-locked")
    finally:
        os.close(fd)

    # Behind a load balancer (PostgreSQL): a request on another server holds the upload's lock: 423 as well.
    if ctx.db.engine.dialect.name == "postgresql":
        async def held_elsewhere() -> Problem:
            async with clusterlock.held(ctx, upload.id, 0):
                with pytest.raises(Problem) as caught:
                    await service.finish_stored(ctx, station, upload)
            return caught.value

        assert anyio.run(held_elsewhere).code == "upload-locked"

    # The request storing it ends within the wait: this one then finds it stored, or stores it.
    ctx.settings = dataclasses.replace(ctx.settings, upload_lock_wait_s=30.0)
    staged = ctx.parts.path(upload.id).with_suffix(".ingest")
    os.replace(ctx.parts.path(upload.id), staged)
    fd = os.open(staged, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)

    async def storer_ends_then_finish() -> Upload:
        async def release() -> None:
            await anyio.sleep(0.1)
            os.close(fd)

        async with anyio.create_task_group() as tg:
            tg.start_soon(release)
            stored = await service.finish_stored(ctx, station, upload)
        return stored

    done = anyio.run(storer_ends_then_finish)
    assert done.completed_at is not None and len(_media(ctx, tenant.contract_id)) == 1


# --- the relay: disk, quota, forwarded stations ---------------------------------------------------------------

def _disk(free: int) -> Any:
    return shutil._ntuple_diskusage(10 * free, 9 * free, free)


def test_check_disk_keeps_the_relays_minimum_free(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, relay_min_free_bytes=1000)
    asked: list[Path] = []

    def usage(path: Path) -> Any:
        asked.append(Path(path))
        return _disk(5000)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    service.check_disk(ctx, 4000)  # exactly the minimum left
    assert asked == [ctx.settings.uploads_dir]
    problem = _refused(service.check_disk, ctx, 4001)
    assert (problem.status, problem.code) == (507, "relay-disk-full")
    assert problem.headers == {**TUS, "Retry-After": "600"}
    assert problem.extra == {"free_bytes": 5000, "upload_bytes": 4001}
    assert problem.detail == ("The clinic's relay is almost out of disk space, so this recording cannot be taken "
                              "now. The recording is still on this station; ask the clinic's administrator or "
                              "support to free space.")


def test_only_a_relay_checks_its_disk_at_creation(ctx: Context, relay_ctx: Context, tenant: Tenant) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    free = shutil.disk_usage(ctx.settings.uploads_dir).free
    for context in (ctx, relay_ctx):
        context.settings = dataclasses.replace(context.settings, relay_min_free_bytes=free * 4)
    assert _create(ctx, _station(ctx, tenant), 10, _meta(patient.id)).length == 10  # the cloud: not checked
    problem = _refused(_create, relay_ctx, _station(relay_ctx, tenant), 10, _meta(patient.id))
    assert (problem.status, problem.code) == (507, "relay-disk-full")
    assert _uploads(ctx, tenant.contract_id) == 1


def test_a_relays_forward_is_the_stations_and_never_refused_for_the_quota(ctx: Context, photo: bytes) -> None:
    tenant = make_tenant(ctx, plan_hours=0)  # at its video limit from the start
    other = make_tenant(ctx, name="よその歯科", clinics=1)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    relay = _relay(tenant)
    forwarded = _create(ctx, relay, 10, _meta(patient.id, filename="rec.mp4",
                                              station_id=str(tenant.station_ids[1])))
    assert forwarded.station_id == tenant.station_ids[1] and forwarded.created_over_limit is False
    assert _create(ctx, relay, 10, _meta(patient.id, filename="rec.mp4")).station_id is None
    assert _create(ctx, relay, 10, _meta(patient.id, filename="rec.mp4", station_id="")).station_id is None
    problem = _refused(_create, ctx, relay, 10, _meta(patient.id, station_id=str(other.station_ids[0])))
    assert (problem.status, problem.code, problem.headers) == (422, "unknown-station", TUS)
    assert problem.detail == ("The station this recording came from is not registered to this contract. Check the "
                              "relay's settings, or register the station again.")
    assert _refused(_create, ctx, relay, 10, _meta(patient.id, station_id=str(uuid.uuid4()))).code == "unknown-station"
    assert _refused(_create, ctx, relay, 10, _meta(patient.id, station_id="chair-2")).code == "bad-metadata"

    # The forwarded photo is stored as the station's, at the station's clinic, sent by a station.
    item_upload = _create(ctx, relay, len(photo), _meta(patient.id, station_id=str(tenant.station_ids[1])))
    _receive(ctx, relay, item_upload, _chunks(photo), 0)
    [item] = _media(ctx, tenant.contract_id)
    assert (item.station_id, item.clinic_id, item.source) == (tenant.station_ids[1], tenant.clinic_ids[1], "station")


def test_an_item_stored_at_a_relay_is_queued_for_the_cloud_and_one_at_the_cloud_is_not(
    ctx: Context, relay_ctx: Context, tenant: Tenant, photo: bytes
) -> None:
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    at_cloud, at_relay = uuid.uuid4(), uuid.uuid4()
    for context, media_id in ((ctx, at_cloud), (relay_ctx, at_relay)):
        station = _station(context, tenant)
        upload = _create(context, station, len(photo), _meta(patient.id, media_id))
        assert _receive(context, station, upload, _chunks(photo), 0).completed_at is not None
    with ctx.db.read() as s:
        queued = [(op.kind, op.entity_id) for op in s.scalars(
            select(OutboxOp).where(OutboxOp.entity_id.in_([at_cloud, at_relay])))]
    assert queued == [("media.upload", at_relay)]


def _accepted_over_quota(ctx: Context) -> int:
    with ctx.db.read() as s:
        row = s.get(RelayState, OVER_QUOTA_KEY)
        return int(row.value["count"]) if row is not None else 0


def test_a_video_over_the_limit_is_refused_at_the_cloud_and_taken_by_a_relay_cut_off_from_it(
    ctx: Context, relay_ctx: Context, photo: bytes
) -> None:
    tenant = make_tenant(ctx, plan_hours=0)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    station = _station(ctx, tenant)
    problem = _refused(_create, ctx, station, 10, _meta(patient.id, filename="rec.mp4"))
    assert (problem.status, problem.code, problem.headers) == (403, "video-quota-full", TUS)
    photo_upload = _create(ctx, station, 10, _meta(patient.id, filename="p.jpg"))
    assert photo_upload.created_over_limit is True  # a photo passes, marked: a video under its name is refused later
    # A retry of an item already stored adds nothing: never refused, whatever its name announces.
    media_id = uuid.uuid4()
    stored = _create(ctx, station, len(photo), _meta(patient.id, media_id))
    _receive(ctx, station, stored, _chunks(photo), 0)
    replay = _create(ctx, station, len(photo), _meta(patient.id, media_id, filename="rec.mp4"))
    assert replay.media_id == media_id and replay.created_over_limit is True

    counted = _accepted_over_quota(relay_ctx)
    for n in (1, 2):
        taken = _create(relay_ctx, _station(relay_ctx, tenant), 10, _meta(patient.id, filename="rec.mp4"))
        assert taken.created_over_limit is False
        assert _accepted_over_quota(relay_ctx) == counted + n
    assert service._takes_over_quota_now(ctx) is False and service._takes_over_quota_now(relay_ctx) is True

    # A relay that heard from its cloud lately refuses like the cloud (which knows the hours).
    upstream = attach(relay_ctx, "http://127.0.0.1:9", "relay-token").upstream
    assert service._takes_over_quota_now(relay_ctx) is True  # attached, never heard from: offline
    upstream.contact()
    problem = _refused(_create, relay_ctx, _station(relay_ctx, tenant), 10, _meta(patient.id, filename="rec.mp4"))
    assert (problem.status, problem.code) == (403, "video-quota-full")
    assert _accepted_over_quota(relay_ctx) == counted + 2
