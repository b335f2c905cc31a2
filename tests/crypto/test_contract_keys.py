"""Each contract's blobs are encrypted under its own data key, chosen where the bytes are written.

Two contracts store real media (tus uploads through the HTTP API, and the ingest path the SSD import and the
demo use); the headers of the stored files name different data keys, each the key of its contract's scope in
`data_keys`, for the originals, the thumbnails and the display copies alike. Removing one contract's data key
(what a crypto-shredding of that contract would do) leaves its media unreadable and the other's intact. A blob
shared by two contracts stays under the key of the first that stored it (docs/security.md says why).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from chairside.blobs.crypt import HEADER_SIZE, EncryptedBlobStore, parse_header
from chairside.client import Client
from chairside.context import Context, build_context
from chairside.db.models import DataKey, Media
from chairside.keys.keyring import SITE, UnknownDataKey, scope_of
from chairside.media.derivatives import display_copy
from chairside.media.ingest import IngestRequest, file_sha256, ingest
from tests.conftest import LiveServer
from tests.factories import Tenant, make_patient, make_tenant


def key_of(ctx: Context, sha256: str) -> str:
    """The data key id in the header of the stored (encrypted) file of a blob."""
    assert isinstance(ctx.blobs, EncryptedBlobStore)
    path = ctx.blobs.backend.local_path(sha256)
    assert path is not None, sha256
    with path.open("rb") as f:
        return parse_header(f.read(HEADER_SIZE))[0]


def scope_keys(ctx: Context) -> dict[str, set[str]]:
    with ctx.db.read() as s:
        found: dict[str, set[str]] = {}
        for key_id, scope in s.execute(select(DataKey.id, DataKey.scope)):
            found.setdefault(scope, set()).add(key_id)
        return found


def store(ctx: Context, tenant: Tenant, source: Path, tmp_path: Path, chart_no: str) -> Media:
    """One item through the ingest path (a copy of `source`: ingest moves the file into the store)."""
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], chart_no)
    path = tmp_path / f"{uuid.uuid4().hex}{source.suffix}"
    path.write_bytes(source.read_bytes())
    return ingest(ctx.db, ctx.blobs, IngestRequest(
        path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=uuid.uuid4(),
        contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0], patient_id=patient.id,
        filename=source.name, captured_at=None, source="migration",
    ))


def test_two_contracts_uploads_carry_their_own_key_ids(ctx: Context, server: LiveServer, tenant: Tenant,
                                                       media_dir: Path) -> None:
    other = make_tenant(ctx, "別の歯科")
    items = {}
    for who, clip in ((tenant, "clip.mp4"), (other, "clip2.mp4")):
        with Client(server.url, who.token) as client:
            patient = client.create_patient(who.clinic_ids[0], "00001", "鍵 確認", "カギ カクニン")
            item = client.upload(media_dir / clip, patient["id"])
            assert b"".join(client.iter_content(item["id"])) == (media_dir / clip).read_bytes()
            items[who.contract_id] = item

    scopes = scope_keys(ctx)
    a, b = (items[t.contract_id] for t in (tenant, other))
    (key_a,) = scopes[scope_of(tenant.contract_id)]
    (key_b,) = scopes[scope_of(other.contract_id)]
    assert key_a != key_b
    assert key_of(ctx, a["sha256"]) == key_a
    assert key_of(ctx, b["sha256"]) == key_b
    assert key_a not in scopes[SITE] and key_b not in scopes[SITE]
    with ctx.db.read() as s:
        thumbs = {m.contract_id: m.thumb_sha256 or "" for m in s.scalars(select(Media))}
    assert key_of(ctx, thumbs[tenant.contract_id]) == key_a  # the thumbnail: the same contract's key
    assert key_of(ctx, thumbs[other.contract_id]) == key_b


def test_a_display_copy_is_under_its_contracts_key(ctx: Context, tenant: Tenant, media_dir: Path,
                                                   tmp_path: Path) -> None:
    item = store(ctx, tenant, media_dir / "photo.heic", tmp_path, "00002")
    shown = display_copy(ctx, item)
    (key,) = scope_keys(ctx)[scope_of(tenant.contract_id)]
    assert key_of(ctx, shown.sha256) == key == key_of(ctx, item.sha256)


def test_removing_one_contracts_key_makes_only_its_media_unreadable(ctx: Context, tenant: Tenant,
                                                                    media_dir: Path, tmp_path: Path) -> None:
    other = make_tenant(ctx, "別の歯科")
    gone = store(ctx, tenant, media_dir / "clip.mp4", tmp_path, "00003")
    kept = store(ctx, other, media_dir / "clip2.mp4", tmp_path, "00004")
    with ctx.db.session() as s:
        s.execute(delete(DataKey).where(DataKey.scope == scope_of(tenant.contract_id)))

    fresh = build_context(ctx.settings)  # a new process: no key of the removed scope left in memory
    try:
        for sha in (gone.sha256, gone.thumb_sha256):
            assert sha is not None
            with pytest.raises(UnknownDataKey, match=key_of(fresh, sha)):
                b"".join(fresh.blobs.open_range(sha))
        clip2 = (media_dir / "clip2.mp4").read_bytes()
        assert b"".join(fresh.blobs.open_range(kept.sha256)) == clip2
        assert kept.thumb_sha256 is not None
        thumb = b"".join(fresh.blobs.open_range(kept.thumb_sha256))
        assert hashlib.sha256(thumb).hexdigest() == kept.thumb_sha256
        # The stored files are untouched: a key put back (from a backup of the database) opens them again.
    finally:
        fresh.db.dispose()


def test_a_blob_shared_by_two_contracts_stays_under_the_first_key(ctx: Context, tenant: Tenant, media_dir: Path,
                                                                  tmp_path: Path) -> None:
    other = make_tenant(ctx, "別の歯科")
    first = store(ctx, tenant, media_dir / "clip.mp4", tmp_path, "00005")
    second = store(ctx, other, media_dir / "clip.mp4", tmp_path, "00006")
    assert first.sha256 == second.sha256 and first.id != second.id
    scopes = scope_keys(ctx)
    (key_a,) = scopes[scope_of(tenant.contract_id)]
    assert key_of(ctx, second.sha256) == key_a  # stored once: the second contract's ingest wrote nothing
    assert b"".join(ctx.blobs.open_range(second.sha256)) == (media_dir / "clip.mp4").read_bytes()
