"""The relay's tus sender (relay/sender.py), request by request: what it asks the cloud and in what order,
what it commits to the op's row before and after each request, where it resumes after a cut, and how each of
the cloud's answers ends the transfer (done, retried later, refused for good, or a `Cut`).

Written for a mutmut run over relay/sender.py (docs/testing.md, "Mutation testing"): the relay tests carry
files through a real relay, a WAN emulator and a real cloud, and look at the outcome, rarely at the requests.

The WAN and the cloud's tus side are played here by an `httpx` transport with the cloud's semantics
(uploads/tus.py, uploads/service.py): an upload made by POST (Location), its offset by HEAD, bytes appended by
PATCH at the right offset (409 `offset-mismatch` otherwise), a per-request `Upload-Checksum` checked (460 and
nothing kept), the bytes that arrived before a cut kept (without that checksum), the whole file checked
against its `sha256` metadata at the last byte (460 and the upload dropped), and the item shown by
`GET /api/v1/media/{id}` once stored. Scripted answers (423, 503, …) and cuts replace the next request of a
method. The relay side is real: a relay database, its blob store, `media.ingest.queue_upload`'s op and pins.
The sender's pauses (`asyncio.sleep`) and its clock for the 10-minute busy limit are replaced, so nothing
here waits.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import shutil
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from chairside.blobs import BlobReader
from chairside.context import Context, build_context
from chairside.db.models import CachedBlob, Media, OutboxOp, utcnow
from chairside.keys import MasterKey
from chairside.media.ingest import queue_upload
from chairside.relay import queue
from chairside.relay import sender as sender_module
from chairside.relay.bandwidth import Throttle
from chairside.relay.meter import RateMeter
from chairside.relay.retry import Refused, Retry
from chairside.relay.sender import PIECE, Cut, Sender
from chairside.relay.upstream import Upstream
from chairside.settings import Settings
from tests.factories import make_patient, make_tenant

BASE = "http://cloud.test"
TUS = {"Tus-Resumable": "1.0.0"}
SIZE = 3 * PIECE + 1234  # four requests of a PIECE each (the smallest chunk), the last of 1234 bytes


def _problem(status: int, detail: str, code: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"title": "refused", "detail": detail}
    if code is not None:
        body["code"] = code
    return httpx.Response(status, json=body, headers={**TUS, "Content-Type": "application/problem+json"})


Answer = httpx.Response | Exception | int | tuple[str, httpx.Response | None] | None


@dataclass
class Upload:
    length: int
    meta: dict[str, str]
    data: bytearray = field(default_factory=bytearray)


class Cloud(httpx.AsyncBaseTransport):
    """The cloud's tus side and the WAN to it (see the module's docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.uploads: dict[str, Upload] = {}
        self.media: dict[str, str] = {}  # media id → the SHA-256 the cloud stored
        self.mirrored: str | None = None  # the chairside-mirrored header of GET /api/v1/media/{id}
        self.script: dict[str, list[Answer]] = {}  # method → how its next requests are answered
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path and query, headers
        self.rows_at_patch: list[tuple[str | None, int]] = []  # the op's (upstream_url, sent_bytes) at each PATCH

    def then(self, method: str, *answers: Answer) -> None:
        """The next requests of `method` are answered so: None as the cloud would, a response or an exception
        instead of the cloud, an int: cut after that many body bytes (at least the first piece read), ("after",
        response): handled by the cloud but its answer replaced (lost), ("corrupt", None): handled with the
        first byte altered on the way."""
        self.script.setdefault(method, []).extend(answers)

    def made(self, method: str) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if r[0] == method]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.requests.append((method, request.url.raw_path.decode(), dict(request.headers)))
        scripted = self.script.get(method)
        cut: int | None = None
        instead: httpx.Response | None = None
        corrupt = False
        if scripted:
            answer = scripted.pop(0)
            if isinstance(answer, Exception):
                raise answer
            if isinstance(answer, httpx.Response):
                return answer
            if isinstance(answer, int):
                cut = answer
            elif isinstance(answer, tuple):
                instead, corrupt = answer[1], answer[0] == "corrupt"
        if method == "GET" and path.startswith("/api/v1/media/"):
            media_id = path.rsplit("/", 1)[1]
            if media_id not in self.media:
                return _problem(404, "No such media item.", "not-found")
            headers = {"chairside-mirrored": self.mirrored} if self.mirrored else {}
            return httpx.Response(200, json={"id": media_id, "sha256": self.media[media_id]}, headers=headers)
        if method == "POST" and path == "/api/v1/uploads/":
            meta = {}
            for pair in request.headers["Upload-Metadata"].split(","):
                key, value = pair.split(" ")
                meta[key] = base64.b64decode(value, validate=True).decode()
            uid = uuid.uuid4().hex
            self.uploads[uid] = Upload(int(request.headers["Upload-Length"]), meta)
            return httpx.Response(201, headers={**TUS, "Location": f"/api/v1/uploads/{uid}?at=edge"})
        uid = path.removeprefix("/api/v1/uploads/")
        upload = self.uploads.get(uid)
        if upload is None:
            return _problem(404, "No such upload.", "not-found")
        if method == "HEAD":
            return httpx.Response(200, headers={**TUS, "Upload-Offset": str(len(upload.data)),
                                                "Upload-Length": str(upload.length)})
        assert method == "PATCH"
        with self.ctx.db.read() as s:
            row = s.scalars(select(OutboxOp).where(OutboxOp.kind == "media.upload",
                                                   OutboxOp.entity_id == uuid.UUID(upload.meta["media_id"]))).one()
            self.rows_at_patch.append((row.upstream_url, row.sent_bytes))
        if int(request.headers["Upload-Offset"]) != len(upload.data):
            return _problem(409, "The offset is not the server's offset (ask with HEAD).", "offset-mismatch")
        body = bytearray()
        async for piece in request.stream:  # type: ignore[union-attr]
            body += piece
            if cut is not None and len(body) >= cut:
                if "Upload-Checksum" not in request.headers:  # the bytes that arrived are kept
                    upload.data += body[:cut]
                raise httpx.WriteError("the line broke")
        assert len(body) == int(request.headers["Content-Length"])
        if corrupt:
            body[0] ^= 0xFF
        if "Upload-Checksum" in request.headers:
            algorithm, value = request.headers["Upload-Checksum"].split(" ")
            if algorithm != "sha256" or hashlib.sha256(body).digest() != base64.b64decode(value):
                return _problem(460, "The request's checksum differs.", "checksum-mismatch")
        upload.data += body
        if len(upload.data) == upload.length:
            if hashlib.sha256(upload.data).hexdigest() != upload.meta["sha256"]:
                del self.uploads[uid]
                return _problem(460, "The file that arrived is not the file that was sent.", "checksum-mismatch")
            self.media[upload.meta["media_id"]] = upload.meta["sha256"]
        return instead or httpx.Response(204, headers={**TUS, "Upload-Offset": str(len(upload.data))})


@dataclass
class Relay:
    ctx: Context
    contract_id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    station_id: uuid.UUID
    cloud: Cloud
    up: Seen
    slept: list[float]
    clock: list[float]  # the sender's monotonic clock: each pause moves it by the next of `ticks` (or not)
    ticks: list[float]

    def recording(self, data: bytes, *, store: bool = True, thumb: bool = True) -> int:
        """A recording acknowledged here: its row, its media.upload op and pins, its bytes in the blob store."""
        sha = hashlib.sha256(data).hexdigest()
        if store:
            self.ctx.blobs.put_stream(sha, [data])
        with self.ctx.db.session() as s:
            item = Media(id=uuid.uuid4(), contract_id=self.contract_id, clinic_id=self.clinic_id,
                         patient_id=self.patient_id, kind="video", mime="video/mp4", sha256=sha, size=len(data),
                         filename="右上6番.mp4", captured_at=utcnow(), duration_s=2.0, station_id=self.station_id,
                         thumb_sha256=hashlib.sha256(b"thumb" + data[:8]).hexdigest() if thumb else None,
                         source="station")
            s.add(item)
            queue_upload(s, item, thumb_size=5)
            s.flush()
            op_id = s.scalar(select(OutboxOp.id).where(OutboxOp.entity_id == item.id))
        assert op_id is not None
        return op_id

    def op(self, op_id: int) -> queue.Op:
        op = queue.load(self.ctx, op_id)
        assert op is not None
        return op

    def row(self, op_id: int) -> OutboxOp:
        with self.ctx.db.read() as s:
            row = s.get(OutboxOp, op_id)
            assert row is not None
            s.expunge(row)
            return row

    def pins(self) -> set[bool]:
        with self.ctx.db.read() as s:
            return set(s.scalars(select(CachedBlob.pinned)))

    def send(self, sender: Sender, op: queue.Op) -> None:
        async def go() -> None:
            async with httpx.AsyncClient(base_url=BASE, transport=self.cloud, headers=self.up.headers) as client:
                await sender.send(client, op)

        asyncio.run(go())

    def sender(self, *, chunk: int = PIECE, checksums: bool = False) -> Sender:
        return Sender(self.ctx, self.up, Bucket("unlimited"), RateMeter(clock=lambda: 0.0), chunk=chunk,
                      chunk_checksums=checksums)


@dataclass
class Seen(Upstream):
    """The relay's link to the cloud, counting the answers it is told of (its online state rests on them)."""

    contacts: int = 0

    def contact(self) -> None:
        self.contacts += 1
        super().contact()


class Bucket(Throttle):
    """The shared bucket, counting the bytes taken from it."""

    taken = 0

    async def take(self, n: int) -> None:
        self.taken += n
        await super().take(n)


def _bytes(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


@dataclass
class Seeded:
    data_dir: Path
    contract_id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    station_id: uuid.UUID


def _seed(settings: Settings) -> Seeded:
    """A relay's database with a contract, its clinic, station and a patient (and no outbox op)."""
    ctx = build_context(settings, role="relay")
    try:
        tenant = make_tenant(ctx, clinics=1)
        patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
        with ctx.db.session() as s:
            s.execute(delete(OutboxOp))  # the patient's own op: not this file's subject
    finally:
        ctx.db.dispose()
    return Seeded(settings.data_dir, tenant.contract_id, tenant.clinic_ids[0], patient.id, tenant.station_ids[0])


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Made once for the module, copied for each test (a relay database made and seeded takes a second)."""
    return _seed(Settings.load(environ={}, data_dir=tmp_path_factory.mktemp("seeded") / "relay"))


def _relay(settings: Settings, seed: Seeded, monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    ctx = build_context(settings, role="relay", upgrade=False)
    slept: list[float] = []
    clock: list[float] = [1000.0]
    ticks: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += ticks.pop(0) if ticks else 0.0

    monkeypatch.setattr(sender_module, "asyncio", types.SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(sender_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    try:
        yield Relay(ctx, seed.contract_id, seed.clinic_id, seed.patient_id, seed.station_id, Cloud(ctx),
                    Seen(BASE, "cs_rl_test"), slept, clock, ticks)
    finally:
        ctx.db.dispose()


@pytest.fixture
def relay(seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    shutil.copytree(seeded.data_dir, tmp_path / "relay")
    yield from _relay(Settings.load(environ={}, data_dir=tmp_path / "relay"), seeded, monkeypatch)


@pytest.fixture(scope="module")
def encrypted_seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Seeded, Path]:
    keys = tmp_path_factory.mktemp("keys")
    keys.chmod(0o700)
    key = keys / "master.key"
    MasterKey.create(key)
    data_dir = tmp_path_factory.mktemp("encrypted") / "relay"
    return _seed(Settings.load(environ={}, data_dir=data_dir, master_key_file=key)), key


@pytest.fixture
def encrypted_relay(encrypted_seeded: tuple[Seeded, Path], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    """A relay whose blobs are encrypted at rest: no plain file to read, the bytes come through `open_range`."""
    seed, key = encrypted_seeded
    shutil.copytree(seed.data_dir, tmp_path / "relay")
    settings = Settings.load(environ={}, data_dir=tmp_path / "relay", master_key_file=key)
    yield from _relay(settings, seed, monkeypatch)


def _raises(exc: type[BaseException], call: Callable[[], Any]) -> Any:
    with pytest.raises(exc) as caught:
        call()
    return caught.value


# --- a whole transfer -----------------------------------------------------------------------------------------

def test_a_new_recording_is_created_sent_chunk_by_chunk_confirmed_and_unpinned(relay: Relay) -> None:
    data = _bytes(SIZE)
    op_id = relay.recording(data)
    op = relay.op(op_id)
    sender = relay.sender(chunk=1000)  # below a PIECE: a PIECE per request
    relay.send(sender, op)

    cloud = relay.cloud
    assert [m for m, _, _ in cloud.requests] == ["GET", "POST", "PATCH", "PATCH", "PATCH", "PATCH", "GET"]
    get = cloud.requests[0]
    assert get[1] == f"/api/v1/media/{op.entity_id}" and get[2]["authorization"] == "Bearer cs_rl_test"
    (upload,) = cloud.uploads.values()
    assert bytes(upload.data) == data
    assert upload.meta == {"patient_id": str(relay.patient_id), "media_id": str(op.entity_id),
                           "filename": "右上6番.mp4", "captured_at": op.body["captured_at"],
                           "sha256": hashlib.sha256(data).hexdigest(), "station_id": str(relay.station_id)}
    post = cloud.made("POST")[0][2]
    assert (post["tus-resumable"], post["upload-length"]) == ("1.0.0", str(SIZE))
    patches = cloud.made("PATCH")
    uid = next(iter(cloud.uploads))
    assert {p[1] for p in patches} == {f"/api/v1/uploads/{uid}?at=edge"}
    assert [(p[2]["upload-offset"], p[2]["content-length"]) for p in patches] == [
        ("0", str(PIECE)), (str(PIECE), str(PIECE)), (str(2 * PIECE), str(PIECE)), (str(3 * PIECE), "1234")]
    for _, _, headers in patches:
        assert headers["tus-resumable"] == "1.0.0"
        assert headers["content-type"] == "application/offset+octet-stream"
        assert "upload-checksum" not in headers
    # The upload's URL is committed before its first byte, the offset after each request.
    url = f"{BASE}/api/v1/uploads/{uid}?at=edge"
    assert cloud.rows_at_patch == [(url, 0), (url, PIECE), (url, 2 * PIECE), (url, 3 * PIECE)]

    row = relay.row(op_id)
    assert row.done_at is not None and row.sent_bytes == SIZE and row.upstream_url == url
    assert relay.pins() == {False}
    assert sender.sent_bytes == SIZE
    assert isinstance(sender.throttle, Bucket) and sender.throttle.taken == SIZE
    assert sender.meter.rate() == SIZE / 0.5  # every byte through the meter (its clock stands still here)
    assert relay.up.contacts == 7 and relay.up.last_error is None  # each answer counts as contact
    assert relay.slept == []


def test_a_chunk_larger_than_a_piece_goes_in_one_request(relay: Relay) -> None:
    data = _bytes(SIZE)
    relay.send(relay.sender(chunk=2 * PIECE), relay.op(relay.recording(data)))
    assert [p[2]["content-length"] for p in relay.cloud.made("PATCH")] == [str(2 * PIECE), str(PIECE + 1234)]
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data


def test_empty_metadata_values_are_left_out_and_a_missing_size_is_the_bodys(relay: Relay) -> None:
    data = _bytes(PIECE + 1)
    op = relay.op(relay.recording(data))
    op.body["filename"], op.body["station_id"], op.body["captured_at"] = "", None, None
    op.size = 0  # an op row without its size: the body's is used
    relay.send(relay.sender(), op)
    (upload,) = relay.cloud.uploads.values()
    assert set(upload.meta) == {"patient_id", "media_id", "sha256"}
    assert relay.cloud.made("POST")[0][2]["upload-length"] == str(PIECE + 1)
    assert bytes(upload.data) == data


def test_per_request_checksums_when_asked(relay: Relay) -> None:
    assert Sender(relay.ctx, relay.up, Throttle("unlimited"), RateMeter(), chunk=PIECE).chunk_checksums is False
    data = _bytes(SIZE)
    relay.send(relay.sender(checksums=True), relay.op(relay.recording(data)))
    sums = [p[2]["upload-checksum"] for p in relay.cloud.made("PATCH")]
    parts = [data[i:i + PIECE] for i in range(0, SIZE, PIECE)]
    assert sums == ["sha256 " + base64.b64encode(hashlib.sha256(p).digest()).decode() for p in parts]


def test_an_encrypted_blob_is_read_through_the_store(encrypted_relay: Relay) -> None:
    relay = encrypted_relay
    data = _bytes(SIZE, seed=7)
    op_id = relay.recording(data)
    op = relay.op(op_id)
    assert relay.ctx.blobs.local_path(op.body["sha256"]) is None
    relay.send(relay.sender(chunk=4 * PIECE, checksums=True), op)  # one request: several of the store's blocks
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data
    assert relay.row(op_id).done_at is not None


def test_a_store_that_answers_a_range_in_small_pieces(relay: Relay, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob store without local files may answer a range in pieces of any size (the BlobStore contract)."""
    store = relay.ctx.blobs
    whole = store.open_range

    def small(sha256: str, start: int = 0, length: int | None = None, **kwargs: Any) -> BlobReader:
        def pieces() -> Iterator[bytes]:
            with whole(sha256, start, length) as chunks:
                for chunk in chunks:
                    for at in range(0, len(chunk), 1000):
                        yield bytes(chunk[at:at + 1000])
        return BlobReader(pieces())

    monkeypatch.setattr(store, "open_range", small)
    monkeypatch.setattr(store, "local_path", lambda sha256: None)
    data = _bytes(SIZE, seed=9)
    op_id = relay.recording(data)
    relay.send(relay.sender(chunk=4 * PIECE, checksums=True), relay.op(op_id))
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data
    assert relay.row(op_id).done_at is not None


def test_no_file_descriptor_is_left_open(relay: Relay) -> None:
    ops = [relay.op(relay.recording(_bytes(PIECE + 5, seed=i))) for i in range(3)]
    sender = relay.sender()
    relay.cloud.then("PATCH", _problem(403, "no"))
    _raises(Refused, lambda: relay.send(sender, ops[0]))
    before = len(os.listdir("/proc/self/fd"))
    relay.send(sender, ops[1])
    relay.cloud.then("PATCH", _problem(403, "no"))
    _raises(Refused, lambda: relay.send(sender, ops[2]))
    assert len(os.listdir("/proc/self/fd")) == before
    assert len(sender._buffers) == 1  # one buffer, given back after each transfer and reused


# --- the cloud has it already ---------------------------------------------------------------------------------

def test_an_item_the_cloud_holds_with_the_same_bytes_is_done_without_an_upload(relay: Relay) -> None:
    data = _bytes(100)
    op_id = relay.recording(data)
    op = relay.op(op_id)
    relay.cloud.media[str(op.entity_id)] = op.body["sha256"]
    relay.send(relay.sender(), op)
    assert [m for m, _, _ in relay.cloud.requests] == ["GET"]
    assert relay.row(op_id).done_at is not None and relay.pins() == {False}
    assert relay.up.contacts == 1


def test_other_bytes_under_the_same_media_id_are_refused_for_good(relay: Relay) -> None:
    op_id = relay.recording(_bytes(100))
    op = relay.op(op_id)
    relay.cloud.media[str(op.entity_id)] = "f" * 64
    refused = _raises(Refused, lambda: relay.send(relay.sender(), op))
    assert str(refused) == (f"the cloud holds other bytes under the media id {op.entity_id} (SHA-256 "
                            f"ffffffffffff…, the relay's {op.body['sha256'][:12]}…)")
    assert relay.row(op_id).done_at is None and relay.pins() == {True}


def test_a_cloud_with_a_mirror_confirms_only_once_both_sites_hold_it(relay: Relay) -> None:
    op_id = relay.recording(_bytes(100))
    relay.cloud.mirrored = "no"
    op = relay.op(op_id)
    retry = _raises(Retry, lambda: relay.send(relay.sender(), op))
    assert str(retry) == "stored at the cloud; waiting until its mirror site has verified it too"
    row = relay.row(op_id)
    assert row.done_at is None and row.upstream_url is None and relay.pins() == {True}
    assert len(relay.cloud.media) == 1
    relay.cloud.mirrored = "yes"
    relay.send(relay.sender(), relay.op(op_id))
    assert relay.row(op_id).done_at is not None and relay.pins() == {False}
    assert len(relay.cloud.made("POST")) == 1  # the second try only asked


def test_every_byte_in_but_no_item_yet_is_retried(relay: Relay) -> None:
    op_id = relay.recording(_bytes(100))
    relay.cloud.then("GET", _problem(404, "no"), _problem(404, "not yet"))
    retry = _raises(Retry, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(retry) == "the cloud has every byte but does not show the item yet"
    assert relay.row(op_id).done_at is None


def test_the_items_answer_is_judged(relay: Relay) -> None:
    op_id = relay.recording(_bytes(100))
    relay.cloud.then("GET", _problem(503, "later", "busy"))
    retry = _raises(Retry, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(retry) == "the cloud answered 503: later (busy)"
    relay.cloud.then("GET", _problem(403, "not yours"))
    _raises(Refused, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert relay.cloud.made("POST") == []


def test_a_refused_creation_is_judged(relay: Relay) -> None:
    op_id = relay.recording(_bytes(100))
    relay.cloud.then("POST", _problem(413, "too big", "too-large"))
    refused = _raises(Refused, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(refused) == "the cloud answered 413: too big (too-large)"
    assert relay.row(op_id).upstream_url is None and relay.cloud.made("PATCH") == []
    assert relay.up.contacts == 2  # the item's answer and the creation's


def test_a_file_missing_from_the_relay_is_refused_for_good(relay: Relay) -> None:
    op_id = relay.recording(_bytes(100), store=False)
    refused = _raises(Refused, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(refused) == ("the file is missing from the relay's storage, so it cannot be sent; it is still on "
                            "the station if it was not deleted there — upload it again")
    assert relay.cloud.made("PATCH") == []


# --- resuming -------------------------------------------------------------------------------------------------

def _half_sent(relay: Relay, data: bytes, have: int) -> tuple[int, str]:
    """An op whose upload the cloud made earlier and holds `have` bytes of."""
    op_id = relay.recording(data)
    uid = uuid.uuid4().hex
    relay.cloud.uploads[uid] = Upload(len(data), {"media_id": str(relay.op(op_id).entity_id),
                                                   "sha256": hashlib.sha256(data).hexdigest()},
                                      bytearray(data[:have]))
    url = f"{BASE}/api/v1/uploads/{uid}"
    queue.save_url(relay.ctx, relay.op(op_id), url)
    return op_id, url


def test_a_known_upload_resumes_at_the_clouds_offset(relay: Relay) -> None:
    data = _bytes(SIZE)
    op_id, _ = _half_sent(relay, data, PIECE + 10)
    relay.send(relay.sender(), relay.op(op_id))
    methods = [m for m, _, _ in relay.cloud.requests]
    assert methods == ["HEAD", "PATCH", "PATCH", "PATCH", "GET"]
    head = relay.cloud.requests[0][2]
    assert head["tus-resumable"] == "1.0.0"
    assert [p[2]["upload-offset"] for p in relay.cloud.made("PATCH")] == [
        str(PIECE + 10), str(2 * PIECE + 10), str(3 * PIECE + 10)]
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data
    assert relay.row(op_id).done_at is not None


@pytest.mark.parametrize("status", [404, 410])
def test_an_upload_the_cloud_dropped_is_made_again(relay: Relay, status: int) -> None:
    data = _bytes(PIECE + 3)
    op_id, url = _half_sent(relay, data, 100)
    relay.cloud.then("HEAD", _problem(status, "gone"))
    relay.send(relay.sender(), relay.op(op_id))
    assert [m for m, _, _ in relay.cloud.requests] == ["HEAD", "POST", "PATCH", "PATCH", "GET"]
    assert relay.cloud.made("PATCH")[0][2]["upload-offset"] == "0"
    assert relay.cloud.rows_at_patch[0][0] != url and relay.cloud.rows_at_patch[0][1] == 0
    assert relay.row(op_id).done_at is not None


def test_a_head_answered_otherwise_is_judged(relay: Relay) -> None:
    op_id, url = _half_sent(relay, _bytes(100), 10)
    relay.cloud.then("HEAD", _problem(403, "not yours"))
    _raises(Refused, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert relay.row(op_id).upstream_url == url
    assert relay.up.contacts == 1


# --- cuts -----------------------------------------------------------------------------------------------------

def test_a_cut_after_which_the_cloud_holds_more_resumes_at_once(relay: Relay) -> None:
    data = _bytes(SIZE)
    op_id = relay.recording(data)
    relay.cloud.then("PATCH", 1, 1000)  # the first request cut after one byte arrived, the second after 1000
    relay.send(relay.sender(), relay.op(op_id))
    assert [p[2]["upload-offset"] for p in relay.cloud.made("PATCH")][:3] == ["0", "1", "1001"]
    assert [m for m, _, _ in relay.cloud.requests][:6] == ["GET", "POST", "PATCH", "HEAD", "PATCH", "HEAD"]
    assert relay.cloud.rows_at_patch[1][1] == 1 and relay.cloud.rows_at_patch[2][1] == 1001
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data
    assert relay.row(op_id).done_at is not None
    assert relay.slept == []

def test_a_cut_that_moved_nothing_is_a_cut_of_the_line(relay: Relay) -> None:
    data = _bytes(SIZE)
    op_id = relay.recording(data)
    op = relay.op(op_id)
    relay.cloud.then("PATCH", PIECE)  # the first request whole (its answer lost), then nothing moves
    relay.cloud.then("PATCH", 0)
    sender = relay.sender()
    cut = _raises(Cut, lambda: relay.send(sender, op))
    assert isinstance(cut.error, httpx.WriteError) and str(cut) == "the line broke"
    assert cut.progressed is True  # the first request's bytes went through
    assert relay.row(op_id).sent_bytes == PIECE

    op = relay.op(op_id)
    relay.cloud.then("PATCH", 0)
    cut = _raises(Cut, lambda: relay.send(sender, op))
    assert cut.progressed is False
    assert relay.row(op_id).sent_bytes == PIECE and relay.row(op_id).done_at is None


def test_a_cut_and_no_answer_to_the_head_is_a_cut_of_the_line(relay: Relay) -> None:
    op_id = relay.recording(_bytes(SIZE))
    relay.cloud.then("PATCH", 10)
    relay.cloud.then("HEAD", httpx.ConnectError("refused"))
    cut = _raises(Cut, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert isinstance(cut.error, httpx.ConnectError) and str(cut) == "refused" and cut.progressed is False
    assert relay.row(op_id).sent_bytes == 0
    assert relay.up.contacts == 2  # the item's answer and the creation's; the PATCH and the HEAD got none
    assert relay.up.last_error == "the connection to the cloud broke (WriteError); resuming"

def test_a_cut_after_which_the_cloud_dropped_the_upload_starts_it_again(relay: Relay) -> None:
    op_id = relay.recording(_bytes(SIZE))
    relay.cloud.then("PATCH", 10)
    relay.cloud.then("HEAD", _problem(410, "gone"))
    retry = _raises(Retry, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(retry) == "the cloud dropped the unfinished upload; it starts again"
    assert relay.row(op_id).upstream_url is None


def test_a_timeout_is_treated_as_a_cut(relay: Relay) -> None:
    op_id = relay.recording(_bytes(SIZE))
    relay.cloud.then("PATCH", httpx.ReadTimeout("slow"))
    cut = _raises(Cut, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert isinstance(cut.error, httpx.ReadTimeout)
    relay.cloud.then("PATCH", httpx.WriteTimeout("slow"))
    relay.cloud.then("HEAD", None, httpx.ConnectTimeout("slower"))  # the try's own HEAD answered, then none
    cut = _raises(Cut, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert isinstance(cut.error, httpx.ConnectTimeout)
    assert relay.up.last_error == "the connection to the cloud broke (WriteTimeout); resuming"


def test_a_retry_after_bytes_went_through_starts_the_backoff_over(relay: Relay) -> None:
    op_id = relay.recording(_bytes(SIZE))
    op = relay.op(op_id)
    op.attempts = 5
    relay.cloud.then("PATCH", _problem(503, "later"))
    _raises(Retry, lambda: relay.send(relay.sender(), op))
    assert op.attempts == 5  # nothing went through: the backoff goes on
    op = relay.op(op_id)
    op.attempts = 5
    relay.cloud.then("PATCH", None, _problem(503, "later"))  # the first request went through
    _raises(Retry, lambda: relay.send(relay.sender(), op))
    assert op.attempts == 0

# --- the cloud's other answers to a PATCH ---------------------------------------------------------------------

@pytest.mark.parametrize("status", [404, 410])
def test_a_patch_to_a_dropped_upload_starts_it_again(relay: Relay, status: int) -> None:
    op_id = relay.recording(_bytes(SIZE))
    relay.cloud.then("PATCH", _problem(status, "gone", "expired"))
    retry = _raises(Retry, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(retry) == f"the cloud answered {status}: gone (expired); the upload starts again"
    assert relay.row(op_id).upstream_url is None


def test_a_whole_file_mismatch_sends_the_file_again_from_the_start(relay: Relay,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    op_id = relay.recording(_bytes(PIECE + 10))
    relay.cloud.then("PATCH", ("corrupt", None))  # a byte altered on the way: the cloud's whole-file check fails
    retry = _raises(Retry, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(retry) == ("the cloud answered 460: The file that arrived is not the file that was sent. "
                          "(checksum-mismatch); the file is sent again from the start")
    assert relay.row(op_id).upstream_url is None
    assert relay.cloud.uploads == {} and relay.slept == []
    assert [r.getMessage() for r in caplog.records if r.name == "chairside.relay.uploader"] == [
        f"outbox op {op_id}: the file that reached the cloud differs from the relay's (SHA-256); "
        "sending it again from the start"]  # for the relay's operator
    relay.send(relay.sender(), relay.op(op_id))  # the next try: a new upload, from byte 0
    assert relay.row(op_id).done_at is not None

def test_a_request_checksum_mismatch_asks_the_offset_and_sends_it_again(relay: Relay) -> None:
    data = _bytes(SIZE)
    op_id = relay.recording(data)
    relay.cloud.then("PATCH", _problem(460, "differs", "checksum-mismatch"))
    relay.send(relay.sender(checksums=True), relay.op(op_id))
    assert [p[2]["upload-offset"] for p in relay.cloud.made("PATCH")][:2] == ["0", "0"]
    assert relay.slept == pytest.approx([0.2])
    assert relay.row(op_id).done_at is not None


@pytest.mark.parametrize("answer", [
    _problem(409, "The offset is not the server's offset.", "offset-mismatch"),
    _problem(408, "The request took too long.", "timeout"),
    _problem(423, "This upload is being stored.", "upload-locked"),
])
def test_a_busy_or_confused_cloud_is_asked_again_after_a_pause(relay: Relay, answer: httpx.Response) -> None:
    data = _bytes(SIZE)
    op_id = relay.recording(data)
    op = relay.op(op_id)
    op.attempts = 4
    # The first request's bytes are stored but its answer is this one; then twice more, not stored.
    relay.cloud.then("PATCH", ("after", answer), answer, answer)
    relay.send(relay.sender(), op)
    assert relay.slept == pytest.approx([0.2, 0.4, 0.6])
    assert [m for m, _, _ in relay.cloud.requests][:9] == [
        "GET", "POST", "PATCH", "HEAD", "PATCH", "HEAD", "PATCH", "HEAD", "PATCH"]
    assert [p[2]["upload-offset"] for p in relay.cloud.made("PATCH")] == [
        "0", str(PIECE), str(PIECE), str(PIECE), str(2 * PIECE), str(3 * PIECE)]
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data
    assert relay.row(op_id).done_at is not None


def test_the_fifth_busy_answer_in_a_row_is_retried_later(relay: Relay) -> None:
    busy = _problem(423, "busy", "upload-locked")
    op_id = relay.recording(_bytes(SIZE))
    op = relay.op(op_id)
    op.attempts = 4
    relay.cloud.then("PATCH", busy, busy, busy, busy, busy)
    retry = _raises(Retry, lambda: relay.send(relay.sender(), op))
    assert str(retry) == "the cloud answered 423: busy (upload-locked)"
    assert relay.slept == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert op.attempts == 4 and len(relay.cloud.made("HEAD")) == 4
    # The same, after the first request's bytes were stored (its answer lost): the backoff starts over.
    relay.slept.clear()
    op = relay.op(op_id)
    op.attempts = 4
    relay.cloud.then("PATCH", ("after", busy), busy, busy, busy, busy)
    _raises(Retry, lambda: relay.send(relay.sender(), op))
    assert op.attempts == 0


def test_busy_answers_separated_by_progress_do_not_add_up(relay: Relay) -> None:
    data = _bytes(SIZE)
    op_id = relay.recording(data)
    busy = _problem(423, "busy", "upload-locked")
    relay.ticks[:] = [200.0] * 8  # each pause, 200 s pass: four in a row make 600 s, not more
    sender = relay.sender()
    relay.cloud.then("PATCH", busy, busy, busy, busy, None, busy, busy, busy, busy)
    relay.send(sender, relay.op(op_id))
    assert relay.slept == pytest.approx([0.2, 0.4, 0.6, 0.8] * 2)
    assert len(relay.cloud.made("POST")) == 1  # the same upload throughout
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data
    assert relay.row(op_id).done_at is not None
    assert sender._busy_since == {}


def test_a_dropped_upload_found_after_a_pause_starts_again(relay: Relay) -> None:
    op_id = relay.recording(_bytes(SIZE))
    relay.cloud.then("PATCH", _problem(423, "busy"))
    relay.cloud.then("HEAD", _problem(404, "gone"))
    retry = _raises(Retry, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(retry) == "the cloud dropped the unfinished upload; it starts again"
    assert relay.row(op_id).upstream_url is None


def test_an_upload_busy_for_ten_minutes_is_replaced_by_a_new_one(relay: Relay,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    data = _bytes(SIZE)
    op_id = relay.recording(data)
    sender = relay.sender()
    busy = _problem(423, "busy", "upload-locked")
    relay.ticks[:] = [300.5, 300.5]  # two pauses of five minutes (a cloud without an idle timeout holds it)
    # The first request in, then busy past ten minutes; the new upload is busy four times more, then free.
    relay.cloud.then("PATCH", None, busy, busy, busy, busy, busy, busy, busy)
    relay.send(sender, relay.op(op_id))
    assert len(relay.cloud.made("POST")) == 2  # a new upload once 423 lasted past 600 s
    assert [r.getMessage() for r in caplog.records if r.name == "chairside.relay.uploader"] == [
        f"outbox op {op_id}: the cloud's upload stays busy; starting a new one"]
    assert relay.slept == pytest.approx([0.2, 0.4, 0.2, 0.4, 0.6, 0.8])  # the count of busy answers starts over
    assert [p[2]["upload-offset"] for p in relay.cloud.made("PATCH")] == [
        "0", str(PIECE), str(PIECE), str(PIECE), "0", "0", "0", "0", "0", str(PIECE), str(2 * PIECE), str(3 * PIECE)]
    new = list(relay.cloud.uploads)[-1]
    assert relay.cloud.rows_at_patch[1] == (f"{BASE}/api/v1/uploads/{new}?at=edge", 0)  # [0]: the first upload's
    assert bytes(relay.cloud.uploads[new].data) == data
    assert relay.row(op_id).done_at is not None
    assert sender._busy_since == {}

def test_a_busy_upload_is_remembered_across_tries(relay: Relay) -> None:
    op_id = relay.recording(_bytes(SIZE))
    sender = relay.sender()
    busy = _problem(423, "busy", "upload-locked")
    relay.ticks[:] = [100.0] * 4
    relay.cloud.then("PATCH", *[busy] * 5)
    _raises(Retry, lambda: relay.send(sender, relay.op(op_id)))
    assert sender._busy_since == {op_id: 1000.0}
    relay.cloud.then("PATCH", busy)  # 400 s later: still within ten minutes... then past them
    relay.clock[0] += 250.0
    relay.send(sender, relay.op(op_id))
    assert len(relay.cloud.made("POST")) == 2
    assert sender._busy_since == {}


def test_other_refusals_of_a_patch_are_judged(relay: Relay) -> None:
    op_id = relay.recording(_bytes(SIZE))
    relay.cloud.then("PATCH", _problem(409, "conflict", "media-id-conflict"))
    refused = _raises(Refused, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(refused) == "the cloud answered 409: conflict (media-id-conflict)"
    relay.cloud.then("PATCH", _problem(413, "too big", "too-large"))
    _raises(Refused, lambda: relay.send(relay.sender(), relay.op(op_id)))
    relay.cloud.then("PATCH", _problem(503, "later", "busy"))
    retry = _raises(Retry, lambda: relay.send(relay.sender(), relay.op(op_id)))
    assert str(retry) == "the cloud answered 503: later (busy)"
    assert relay.slept == []


def test_a_busy_answer_to_a_last_request_that_was_stored_ends_the_transfer(relay: Relay) -> None:
    data = _bytes(PIECE + 10)
    op_id = relay.recording(data)
    sender = relay.sender()
    relay.cloud.then("PATCH", None, ("after", _problem(423, "busy", "upload-locked")))  # stored, answered 423
    relay.send(sender, relay.op(op_id))
    assert relay.slept == pytest.approx([0.2])
    assert [m for m, _, _ in relay.cloud.requests][-2:] == ["HEAD", "GET"]  # every byte is in: no more PATCH
    assert relay.row(op_id).done_at is not None
    assert sender._busy_since == {}  # no busy streak left behind for the op


# --- requests larger than the read buffer, and a stored file shorter than its op says ---------------------------

@pytest.mark.parametrize("checksums", [False, True])
def test_a_request_larger_than_the_read_buffer_is_read_in_parts(relay: Relay, checksums: bool) -> None:
    read = sender_module.READ
    data = _bytes(2 * read + 100, seed=3)
    op_id = relay.recording(data)
    relay.send(relay.sender(chunk=read + PIECE, checksums=checksums), relay.op(op_id))
    patches = relay.cloud.made("PATCH")
    assert [p[2]["content-length"] for p in patches] == [str(read + PIECE), str(read - PIECE + 100)]
    if checksums:
        first = hashlib.sha256(data[:read + PIECE]).digest()
        assert patches[0][2]["upload-checksum"] == "sha256 " + base64.b64encode(first).decode()
    assert bytes(next(iter(relay.cloud.uploads.values())).data) == data
    assert relay.row(op_id).done_at is not None


def _short_file(relay: Relay, data: bytes) -> queue.Op:
    op = relay.op(relay.recording(data))
    op.size = len(data) + 50  # the op says more bytes than the store holds
    return op


@pytest.mark.parametrize("checksums", [False, True])
def test_a_stored_file_shorter_than_its_op_is_an_error_not_a_short_upload(relay: Relay, checksums: bool) -> None:
    data = _bytes(PIECE + 10)
    op = _short_file(relay, data)
    error = _raises(OSError, lambda: relay.send(relay.sender(checksums=checksums), op))
    assert str(error) == f"the stored file {op.body['sha256'][:12]}… ended at byte {PIECE + 10}"


def test_an_encrypted_stored_file_shorter_than_its_op_is_an_error(encrypted_relay: Relay) -> None:
    data = _bytes(PIECE + 10)
    op = _short_file(encrypted_relay, data)
    error = _raises(OSError, lambda: encrypted_relay.send(encrypted_relay.sender(), op))
    assert str(error) == f"the stored file {op.body['sha256'][:12]}… ended at byte {PIECE + 10}"
