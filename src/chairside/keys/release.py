"""The relay box's master key is not on the box in the clear: it is *sealed* by a release key that the
box does not keep, and released at boot (docs/security.md, "The relay box's key").

- **Sealed file** (`relay_key_file`, default ``DATA_DIR/relay-key.sealed``): the relay's master key wrapped
  (AES-256-GCM, :class:`~chairside.keys.master.MasterKey`'s wrap format) by a 256-bit *release key*, with the
  relay's id and both key ids in the clear. Alone it opens nothing.
- **The cloud** keeps each relay's release key as a data key of scope ``relay-release:<relay id>``, wrapped by
  the cloud's own master key (so the cloud's key rotation and start-up check cover it), and hands it to the
  relay's token (`POST /api/v1/relay/key`). The operator revokes it at once (`chairside admin relay revoke-key`):
  the row is deleted, so nobody can ever release it again, and the revocation is in the audit trail.
- **Stations** hold a *share*: a copy of the release key wrapped by a key derived from that station's own token
  (HKDF-SHA256), handed out by the unlocked relay (`GET /api/v1/relay/key-share`). When the cloud cannot be
  reached at boot, the locked relay takes a station's share with the station's token
  (`POST /api/v1/relay/unlock`) and opens its sealed key with it. A copy, not a threshold scheme: see
  docs/security.md for why.

Nothing here keeps a key on disk in the clear; every failure is a :class:`MasterKeyError` (ja + en).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import delete, select

from chairside.db.engine import Database
from chairside.db.models import AuditEvent, DataKey, Relay
from chairside.settings import Settings

from .keyring import Keyring
from .master import KEY_BYTES, MasterKey, MasterKeyError, WrongMasterKey, key_id_of

__all__ = [
    "REVOKED_ACTION",
    "CloudUnreachable",
    "ReleaseRefused",
    "Released",
    "Sealed",
    "ask_cloud",
    "cert_fingerprint",
    "cloud_release_key",
    "open_share",
    "release_scope",
    "revoke",
    "revoked_at",
    "sealed_path",
    "share_for",
]

FORMAT = "chairside-relay-sealed-v1"
REVOKED_ACTION = "relay.key_revoked"
_SHARE_INFO = b"chairside relay key share v1 "


class ReleaseRefused(MasterKeyError):
    """The cloud refused to release the key (revoked key or relay token): the relay must not start."""


class CloudUnreachable(MasterKeyError):
    """The cloud did not answer (offline at boot): the stations on the LAN may release the key instead."""


# -- the sealed file (on the relay box) ----------------------------------------------------------------

def sealed_path(settings: Settings) -> Path:
    """Where the relay's sealed master key lives: `relay_key_file`, else DATA_DIR/relay-key.sealed."""
    return settings.relay_key_file or settings.data_dir / "relay-key.sealed"


@dataclass(frozen=True)
class Sealed:
    """The relay's master key sealed by its release key: what the box keeps (the file's content)."""

    relay_id: str
    release_key_id: str
    master_key_id: str
    sealed: bytes

    @classmethod
    def seal(cls, master: MasterKey, release_key: bytes, relay_id: str) -> Sealed:
        return cls(relay_id=relay_id, release_key_id=key_id_of(release_key), master_key_id=master.key_id,
                   sealed=MasterKey(release_key).wrap(master._export()))

    def open(self, release_key: bytes) -> MasterKey:
        """The master key; WrongMasterKey (nothing opened) when ``release_key`` is not this file's."""
        if len(release_key) != KEY_BYTES or key_id_of(release_key) != self.release_key_id:
            raise WrongMasterKey(
                f"この鍵では中継機のマスターキーを開けません（解放鍵 {self.release_key_id} が必要です） / "
                f"this key does not open the relay's master key (release key {self.release_key_id} is needed)"
            )
        master = MasterKey(MasterKey(release_key).unwrap(self.sealed))
        if master.key_id != self.master_key_id:
            raise WrongMasterKey("封印されたマスターキーが壊れています / the sealed master key is damaged")
        return master

    def dumps(self) -> bytes:
        return (json.dumps({"format": FORMAT, "relay_id": self.relay_id, "release_key_id": self.release_key_id,
                            "master_key_id": self.master_key_id,
                            "sealed": base64.b64encode(self.sealed).decode("ascii")}) + "\n").encode("ascii")

    def write(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename, fsync the folder), mode 0600; never over another file."""
        if path.exists():
            raise MasterKeyError(f"封印された鍵のファイルが既にあります（上書きしません）: {path} / "
                                 f"a sealed key file already exists and is never overwritten: {path}")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, self.dumps())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite a sealed key
        os.unlink(tmp)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: Path) -> Sealed:
        try:
            data = json.loads(path.read_text("ascii"))
            if data.get("format") != FORMAT:
                raise ValueError
            return cls(relay_id=str(data["relay_id"]), release_key_id=str(data["release_key_id"]),
                       master_key_id=str(data["master_key_id"]),
                       sealed=base64.b64decode(data["sealed"], validate=True))
        except FileNotFoundError:
            raise MasterKeyError(f"封印された鍵のファイルがありません: {path} / no sealed key file at {path}") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise MasterKeyError(f"封印された鍵のファイルが壊れているか、別の形式です: {path} / "
                                 f"the sealed key file is damaged or not a Chairside relay key: {path}") from None


@dataclass(frozen=True)
class Released:
    """What boot obtained: the master key, and the release key (kept in memory to hand shares to stations)."""

    master: MasterKey
    release_key: bytes
    relay_id: str
    source: str  # "cloud" or "station <name>"


# -- the stations' shares ------------------------------------------------------------------------------

def _share_key(station_token: str, relay_id: str) -> MasterKey:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_SHARE_INFO + relay_id.encode())
    return MasterKey(hkdf.derive(station_token.encode("utf-8")))


def share_for(release_key: bytes, station_token: str, relay_id: str) -> str:
    """The share a station keeps: the release key wrapped by a key only that station's token derives."""
    return base64.b64encode(_share_key(station_token, relay_id).wrap(release_key)).decode("ascii")


def open_share(share: str, station_token: str, relay_id: str) -> bytes:
    """The release key inside a station's share; WrongMasterKey when the share or the token is not right."""
    try:
        wrapped = base64.b64decode(share, validate=True)
    except ValueError:
        raise WrongMasterKey("鍵の分担データの形式が違います / the key share is not valid base64") from None
    try:
        return _share_key(station_token, relay_id).unwrap(wrapped)
    except WrongMasterKey:
        raise WrongMasterKey("この端末の鍵の分担データでは中継機を開けません / this station's key share does not "
                             "open this relay") from None


# -- the cloud's side ----------------------------------------------------------------------------------

def release_scope(relay_id: uuid.UUID | str) -> str:
    return f"relay-release:{relay_id}"


def cloud_release_key(db: Database, keyring: Keyring | None, relay_id: uuid.UUID, *, create: bool) -> bytes | None:
    """The relay's release key as the cloud keeps it (made when ``create`` and there is none), or None."""
    if keyring is None:
        raise MasterKeyError(
            "クラウドにマスターキーが設定されていないため、中継機の鍵を預かれません（CHAIRSIDE_MASTER_KEY_FILE を"
            "設定してください） / the cloud has no master key, so it cannot keep relays' release keys: set "
            "CHAIRSIDE_MASTER_KEY_FILE on the cloud"
        )
    scope = release_scope(relay_id)
    with db.session() as s:
        row = s.execute(select(DataKey.id, DataKey.wrapped).where(DataKey.scope == scope)
                        .order_by(DataKey.created_at.desc(), DataKey.id.desc()).limit(1)).first()
        if row is not None:
            return keyring.wrapper.unwrap(row.wrapped)
        if not create:
            return None
        key = secrets.token_bytes(KEY_BYTES)
        s.add(DataKey(id=uuid.uuid4().hex, scope=scope, wrapped=keyring.wrapper.wrap(key),
                      master_key_id=keyring.master_key_id))
        return key


def revoke(db: Database, relay_id: uuid.UUID) -> bool:
    """Destroy the relay's release key on the cloud (for good) and record it; False if it held none."""
    with db.session() as s:
        relay = s.get(Relay, relay_id)
        if relay is None:
            raise LookupError(f"no relay {relay_id}")
        gone = len(s.scalars(select(DataKey.id).where(DataKey.scope == release_scope(relay_id))).all())
        s.execute(delete(DataKey).where(DataKey.scope == release_scope(relay_id)))
        s.add(AuditEvent(contract_id=relay.contract_id, actor_kind="operator", actor_name="operator",
                         action=REVOKED_ACTION, detail={"relay_id": str(relay_id), "keys_destroyed": gone}))
        return bool(gone)


def revoked_at(db: Database, relay_id: uuid.UUID) -> datetime | None:
    """When the relay's release key was last revoked (from the audit trail), or None."""
    with db.read() as s:
        relay = s.get(Relay, relay_id)
        if relay is None:
            return None
        rows = s.execute(select(AuditEvent.at, AuditEvent.detail)
                         .where(AuditEvent.contract_id == relay.contract_id, AuditEvent.action == REVOKED_ACTION)
                         .order_by(AuditEvent.id.desc())).all()
    for at, detail in rows:
        if (detail or {}).get("relay_id") == str(relay_id):
            when: datetime = at
            return when
    return None


# -- the relay asks the cloud --------------------------------------------------------------------------

def ask_cloud(upstream_url: str, token: str, verify: ssl.SSLContext | bool, *, create: bool = False,
              timeout: float = 15.0) -> tuple[bytes, str]:
    """(release key, relay id) from the cloud (`POST`, or `PUT` to make it the first time).

    ReleaseRefused when the cloud says no (revoked key or relay token, no key kept), CloudUnreachable when
    it cannot be asked (no network, no answer, a server error).
    """
    errors: list[str] = []
    for base in [u.strip().rstrip("/") for u in upstream_url.split(",") if u.strip()]:
        try:
            with httpx.Client(base_url=base, verify=verify, timeout=httpx.Timeout(timeout, connect=10.0),
                              headers={"Authorization": f"Bearer {token}"}) as client:
                answer = client.request("PUT" if create else "POST", "/api/v1/relay/key", json={})
        except httpx.HTTPError as exc:
            errors.append(f"{base}: {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}")
            continue
        if answer.status_code == 200:
            body = answer.json()
            return base64.b64decode(body["release_key"], validate=True), str(body["relay_id"])
        detail = _detail(answer)
        if answer.status_code in (401, 403, 404, 410):
            raise ReleaseRefused(
                f"クラウドが中継機の鍵の解放を拒否しました（{answer.status_code}）。盗難の届け出で取り消された可能性があります。"
                f"中継機は起動しません（データは読めません） / the cloud refused to release the relay's key "
                f"({answer.status_code}: {detail}); the relay does not start and its data stays unreadable"
            )
        errors.append(f"{base}: {answer.status_code} {detail}")
    raise CloudUnreachable("クラウドに接続できません / cannot reach the cloud: " + "; ".join(errors))


def _detail(answer: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(answer.json().get("detail") or answer.text[:200])
    return answer.text[:200]


# -- the relay's TLS certificate, for the stations to pin ----------------------------------------------

def cert_fingerprint(cert: Path | bytes) -> str:
    """SHA-256 of the (first) certificate's DER, as `openssl x509 -fingerprint -sha256` prints it."""
    pem = cert if isinstance(cert, bytes) else Path(cert).read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
