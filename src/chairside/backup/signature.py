"""Signed manifests: a generation's manifest carries an HMAC-SHA256 that only the master key's holder can make.

The MAC key is derived (HKDF) from the generation's backup data key, which is stored on the target wrapped by
the master key (``keys/<id>``, see seal.py): whoever can write to the target but does not hold the master key
cannot make a manifest that checks, so a changed SHA-256, a dropped or added blob line, other row counts or
another metadata file are refused by ``verify``, ``restore`` and ``drill`` before anything is read or written.
Why a MAC and not an Ed25519 signature: docs/backups.md ("Signed manifests").

A generation made without a master key (``"encryption": "none"``) has no key to sign with and is unsigned;
a reader refuses an unsigned manifest whenever the manifest says it is encrypted.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from .manifest import Manifest, manifest_key
from .seal import SCHEME_NONE, Sealer, SealError

__all__ = ["ManifestSignatureError", "check", "sign"]


class ManifestSignatureError(Exception):
    """A manifest is unsigned, or its signature does not match (message names it, ja + en)."""


def _mac(key: bytes, manifest: Manifest) -> str:
    return hmac.new(key, manifest.signed_bytes(), sha256).hexdigest()


def sign(manifest: Manifest, sealer: Sealer) -> None:
    """Set the manifest's signature (nothing when ``sealer`` has no key: an unencrypted generation)."""
    manifest.signature = None
    found = sealer.manifest_key()
    if found is None:
        manifest.signing_key_id = None
        return
    manifest.signing_key_id, key = found
    manifest.signature = _mac(key, manifest)


def _refuse(manifest: Manifest, why_ja: str, why_en: str) -> ManifestSignatureError:
    name = manifest_key(manifest.generation)
    return ManifestSignatureError(
        f"世代 {manifest.generation} のマニフェスト（{name}）は{why_ja}。このバックアップ先への書き込みで改ざんされた"
        f"可能性があります。この世代は使わず、別の世代を指定してください / the manifest of generation "
        f"{manifest.generation} ({name}) {why_en}: it may have been altered by someone who can write to the "
        f"backup target; do not use this generation, choose another"
    )


def check(manifest: Manifest, sealer: Sealer) -> None:
    """Raise :class:`ManifestSignatureError` unless the manifest is signed by a key this sealer can open.

    An unencrypted generation (no master key when it was made) is unsigned and passes only as such.
    """
    if manifest.signature is None:
        if manifest.encryption == SCHEME_NONE and manifest.signing_key_id is None:
            return
        raise _refuse(manifest, "署名されていません", "is not signed")
    if manifest.signing_key_id is None or not manifest.signing_key_id.isalnum():
        raise _refuse(manifest, "署名の鍵を示していません", "names no valid signing key")
    try:
        found = sealer.manifest_key(manifest.signing_key_id)
    except SealError as exc:
        raise _refuse(manifest, f"の署名を確かめられません（{exc}）", f"cannot be checked ({exc})") from exc
    if found is None:
        raise _refuse(manifest, "の署名を確かめるにはマスターキーが必要です",
                      "is signed, and checking it needs the master key (--master-key)")
    if not hmac.compare_digest(_mac(found[1], manifest), manifest.signature):
        raise _refuse(manifest, "の署名が一致しません", "does not match its signature")
