"""Helpers for the S3 tests: a fresh bucket's blob URL, and real MP4 clips made large with a `free` box."""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path

from tests.seaweed import SeaweedS3


def fresh_bucket(s3: SeaweedS3) -> str:
    return s3.make_bucket(f"t{secrets.token_hex(6)}")


def blob_url(s3: SeaweedS3, bucket: str) -> str:
    return f"s3://{bucket}/blobs?endpoint_url={s3.endpoint_url}"


def padded_clip(clip: Path, out: Path, extra: int) -> Path:
    """The real clip followed by a top-level `free` box of `extra` random bytes: still a valid MP4 (the probe
    checks every top-level box fits), as large as asked, and unique (no two tests share a blob)."""
    with out.open("wb") as f:
        f.write(clip.read_bytes())
        f.write(struct.pack(">I4s", extra + 8, b"free"))
        left = extra
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n
    return out


def staged_objects(s3: SeaweedS3, bucket: str) -> list[str]:
    """Objects of partial uploads still in the bucket (`blobs.uploads/…`)."""
    client = s3.client()
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="blobs.uploads/")
        return [str(o["Key"]) for o in listed.get("Contents", ())]
    finally:
        client.close()


def unfinished_multipart(s3: SeaweedS3, bucket: str) -> list[str]:
    client = s3.client()
    try:
        listed = client.list_multipart_uploads(Bucket=bucket)
        return [str(u["Key"]) for u in listed.get("Uploads", ())]
    finally:
        client.close()
