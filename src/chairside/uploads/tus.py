"""tus 1.0 wire details: versions, extensions, Upload-Metadata and Upload-Checksum parsing."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from chairside.db.models import Upload
from chairside.errors import Problem

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHECKSUM_ALGORITHMS = ("sha1", "sha256")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
MAX_METADATA_CHARS = 4000  # the column uploads.upload_metadata


def base_headers() -> dict[str, str]:
    return {"Tus-Resumable": VERSION}


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


def require_version(value: str | None) -> None:
    if value != VERSION:
        raise Problem(
            412,
            f"This server speaks tus {VERSION}; send the header 'Tus-Resumable: {VERSION}'.",
            code="tus-version",
            headers={"Tus-Version": VERSION, **base_headers()},
        )


def parse_metadata(header: str | None) -> dict[str, str]:
    """`key base64,key base64,…` → {key: text}. Keys without a value map to ''."""
    result: dict[str, str] = {}
    if not header:
        return result
    if len(header) > MAX_METADATA_CHARS:  # kept whole with the upload (HEAD answers it), so refused, never cut
        raise Problem(400, f"The upload's metadata is longer than {MAX_METADATA_CHARS} characters. Send only the "
                      "ids, the file's name and its capture time.", code="metadata-too-long", headers=base_headers())
    for pair in header.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        if not key or key in result:
            raise Problem(400, "The upload's metadata is malformed (an empty or repeated key).",
                          code="bad-metadata", headers=base_headers())
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Problem(400, f"The upload's metadata value for '{key}' is not valid base64 UTF-8 text.",
                          code="bad-metadata", headers=base_headers()) from None
    return result


def encode_metadata(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes

    def new(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_checksum(header: str | None) -> Checksum | None:
    if not header:
        return None
    algorithm, _, value = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise Problem(400, f"Checksum algorithm '{algorithm}' is not supported; use sha1 or sha256.",
                      code="checksum-algorithm", headers=base_headers())
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise Problem(400, "The Upload-Checksum value is not valid base64.",
                      code="bad-checksum", headers=base_headers()) from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise Problem(400, f"The Upload-Checksum value has the wrong length for {algorithm}.",
                      code="bad-checksum", headers=base_headers())
    return Checksum(algorithm, digest)


def parse_offset(value: str | None, name: str) -> int:
    # ASCII digits only (str.isdigit admits '²' and other scripts' digits) and at most 18 of them: any real
    # size fits, and int() is never asked to convert thousands of digits (a ValueError past 4300).
    if value is None or not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise Problem(400, f"The {name} header must be a whole number of bytes.", code="bad-header",
                      headers=base_headers())
    return int(value)


def tus_headers(upload: Upload | None = None, **extra: str) -> dict[str, str]:
    """The headers of every answer about an upload: the protocol's, its offset and expiry, and `extra`."""
    headers = base_headers()
    if upload is not None:
        headers["Upload-Offset"] = str(upload.offset)
        headers["Upload-Expires"] = http_date(upload.expires_at)
    headers.update(extra)
    return headers


def checksum_mismatch(upload: Upload, idle: bool) -> Problem:
    """460: the request's bytes do not match its `Upload-Checksum`; nothing of it was kept."""
    return Problem(460, "The data arrived damaged (its checksum does not match). Nothing "
                   "was kept from this request; send it again.", code="checksum-mismatch",
                   headers=tus_headers(upload, **({"Connection": "close"} if idle else {})))


def bad(detail: str, code: str = "bad-upload", status: int = 400) -> Problem:
    """A refused request, with the protocol's headers (tus clients read Tus-Resumable on errors too)."""
    return Problem(status, detail, code=code, headers=base_headers())
