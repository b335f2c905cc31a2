"""A generation's manifest: what it holds and how to check it, written last (its presence means complete)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["FORMAT", "BlobEntry", "Manifest", "blob_key", "manifest_key", "metadata_key"]

FORMAT = "chairside-backup-1"


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


def manifest_key(generation: str) -> str:
    return f"generations/{generation}/manifest.json"


def metadata_key(generation: str) -> str:
    return f"generations/{generation}/metadata"


@dataclass(frozen=True)
class BlobEntry:
    sha256: str
    size: int


@dataclass
class Manifest:
    generation: str
    created_at: datetime
    finished_at: datetime
    database: str  # "sqlite" or "pg_dump"
    schema_revision: str | None
    tables: dict[str, int]
    metadata_sha256: str
    metadata_size: int
    encryption: str  # seal.SCHEME_*
    master_key_id: str | None
    blobs: list[BlobEntry]
    new_blobs: int = 0
    new_bytes: int = 0
    locked_days: int | None = None
    missing_blobs: list[str] = field(default_factory=list)
    # HMAC-SHA256 of :meth:`signed_bytes` under a key derived from the backup data key ``signing_key_id``
    # (wrapped by the master key on the target): backup/signature.py. None: made without a master key.
    signing_key_id: str | None = None
    signature: str | None = None

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    def summary(self) -> dict[str, Any]:
        """What `backup list` shows of a generation."""
        return {
            "generation": self.generation,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "database": self.database,
            "schema_revision": self.schema_revision,
            "rows": sum(self.tables.values()),
            "blobs": len(self.blobs),
            "blob_bytes": self.blob_bytes,
            "new_blobs": self.new_blobs,
            "new_bytes": self.new_bytes,
            "encryption": self.encryption,
            "locked_days": self.locked_days,
            "missing_blobs": len(self.missing_blobs),
            "signed": self.signature is not None,
        }

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but the signature itself, as canonical JSON (sorted keys).

        Computed from the parsed fields, so the signer and a reader agree whatever whitespace or key order
        the stored file has; a changed, added or dropped value (a SHA-256, a size, a blob line) changes it.
        """
        data = json.loads(self.to_json())
        data.pop("signature", None)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()

    def to_json(self) -> bytes:
        data = asdict(self)
        data["format"] = FORMAT
        data["created_at"] = self.created_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        data["blobs"] = [[b.sha256, b.size] for b in self.blobs]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if data.pop("format", None) != FORMAT:
            raise ValueError("not a Chairside backup manifest")
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["finished_at"] = datetime.fromisoformat(data["finished_at"])
        data["blobs"] = [BlobEntry(str(sha), int(size)) for sha, size in data["blobs"]]
        return cls(**data)
