"""Keys for encryption at rest: the master key (a file outside the data folder, or later a KMS) and the
data keys it wraps, one per contract plus one for the site, kept wrapped in the database.

The stable interface (backups import it): :class:`MasterKey` (``create(path)``, ``load(path)``,
``.key_id``, ``.wrap(bytes)``, ``.unwrap(bytes)``) and :class:`KeyWrapper`, the protocol a KMS
implements; the stream format is in :mod:`chairside.blobs.crypt`.
"""

from __future__ import annotations

from .master import KEY_BYTES, KeyWrapper, MasterKey, MasterKeyError, WrongMasterKey, key_id_of, wrapped_key_id

__all__ = ["KEY_BYTES", "KeyWrapper", "MasterKey", "MasterKeyError", "WrongMasterKey", "key_id_of", "wrapped_key_id"]
