"""Reading a generation back and checking every SHA-256 (and size) against its manifest."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from . import signature
from .manifest import BlobEntry, Manifest, blob_key, metadata_key
from .run import _parallel
from .seal import Sealer
from .signature import ManifestSignatureError
from .targets import Target, TargetError

__all__ = ["VerifyReport", "check_object", "verify"]


@dataclass
class VerifyReport:
    generation: str
    checked_blobs: int = 0
    total_blobs: int = 0
    checked_bytes: int = 0
    metadata_ok: bool = False
    signature_ok: bool = False  # signed and the signature checks (False for an unsigned, unencrypted generation)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.metadata_ok and not self.mismatches

    def as_dict(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "ok": self.ok,
            "metadata_ok": self.metadata_ok,
            "signature_ok": self.signature_ok,
            "checked_blobs": self.checked_blobs,
            "total_blobs": self.total_blobs,
            "checked_bytes": self.checked_bytes,
            "mismatches": self.mismatches,
        }


def check_object(target: Target, sealer: Sealer, key: str, sha256: str, size: int) -> str | None:
    """None when the object at ``key`` opens to ``size`` bytes hashing to ``sha256``; else what is wrong."""
    hasher = hashlib.sha256()
    seen = 0
    try:
        head, piece = sealer.layout
        for chunk in sealer.unseal(target.read(key, head=head, piece=piece), key):
            hasher.update(chunk)
            seen += len(chunk)
    except TargetError as exc:
        return f"{key}: unreadable ({exc})"
    except Exception as exc:  # BlobDecryptError, SealError: tampered, truncated, wrong key
        return f"{key}: {type(exc).__name__}: {exc}"
    if seen != size or hasher.hexdigest() != sha256:
        return f"{key}: expected sha256 {sha256} ({size} bytes), read {hasher.hexdigest()} ({seen} bytes)"
    return None


def verify(
    target: Target,
    sealer: Sealer,
    manifest: Manifest,
    *,
    sample: float = 1.0,
    workers: int = 4,
    on_progress: Callable[[str, int, int], None] | None = None,
    rng: random.Random | None = None,
) -> VerifyReport:
    """Check the metadata and all blobs (``sample`` = 1) or a random fraction of them (at least one)."""
    if not 0 < sample <= 1:
        raise ValueError("sample must be a fraction in (0, 1]")
    report = VerifyReport(manifest.generation, total_blobs=len(manifest.blobs))
    try:
        signature.check(manifest, sealer)
    except ManifestSignatureError as exc:  # its list of blobs cannot be believed: nothing is read
        report.mismatches.append(str(exc))
        return report
    report.signature_ok = manifest.signature is not None
    problem = check_object(target, sealer, metadata_key(manifest.generation), manifest.metadata_sha256,
                           manifest.metadata_size)
    report.metadata_ok = problem is None
    if problem is not None:
        report.mismatches.append(problem)
    chosen: list[BlobEntry] = list(manifest.blobs)
    if sample < 1 and chosen:
        chosen = (rng or random.Random()).sample(chosen, max(1, round(len(chosen) * sample)))
    total = sum(b.size for b in chosen)
    lock = threading.Lock()

    def check(entry: BlobEntry) -> None:
        wrong = check_object(target, sealer, blob_key(entry.sha256), entry.sha256, entry.size)
        with lock:
            report.checked_blobs += 1
            report.checked_bytes += entry.size
            if wrong is not None:
                report.mismatches.append(wrong)
            done = report.checked_bytes
        if on_progress is not None:
            on_progress("verify", done, total)

    _parallel(check, chosen, workers)
    report.mismatches.sort()
    return report
