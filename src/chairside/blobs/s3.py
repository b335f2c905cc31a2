"""Blobs as objects in any S3-compatible bucket (AWS S3, MinIO, Ceph RGW).

Objects are named ``<prefix><sha256>`` and carry the hash as ``x-amz-meta-sha256``.
Uploads stream: a blob smaller than one part goes up with one PutObject after its
hash is checked; a larger one goes up as a multipart upload whose parts are sent
as they fill, completed only once the hash matches and aborted otherwise, so a
failed upload leaves neither an object nor an unfinished upload behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import (
    DEFAULT_CHUNK_SIZE,
    BlobHashMismatch,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    check_range,
    iter_file,
    validate_key,
)

__all__ = ["ACCEL_S3_RANGE", "ACCEL_S3_WHOLE", "MIN_PART_SIZE", "PART_SIZE", "S3BlobStore"]

# nginx's internal locations that proxy to a presigned URL (deploy/nginx.py; CHAIRSIDE_OFFLOAD=nginx):
# `ACCEL_S3_RANGE/<bucket>/<key>?<signature>` with the client's one Range, `ACCEL_S3_WHOLE/…` always whole.
ACCEL_S3_RANGE = "/_chairside_s3/range"
ACCEL_S3_WHOLE = "/_chairside_s3/whole"

PART_SIZE = 8 << 20
MIN_PART_SIZE = 5 << 20  # S3's lower bound for every part but the last
_MAX_PARTS = 10_000  # S3's upper bound: 8 MiB parts allow blobs up to ~78 GiB

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


class S3BlobStore(BlobStore):
    """Blobs in ``bucket`` under ``prefix``.

    Credentials not given here come from boto3's usual chain (environment,
    shared config, instance role). Pass ``client`` to share a configured boto3
    S3 client; the store then leaves closing it to the caller.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "blobs/",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        client: Any | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        prefix = prefix.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self._bucket = bucket
        self._prefix = prefix
        self._part_size = part_size
        self._owns_client = client is None
        if client is None:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=Config(
                    # Self-hosted endpoints (MinIO, RGW, an IP address) rarely have
                    # wildcard DNS for virtual-hosted buckets.
                    s3={"addressing_style": "path" if endpoint_url else "auto"},
                    retries={"mode": "standard"},
                    signature_version="s3v4",  # presigned URLs too (presigned_path): SigV2 is retired on AWS
                ),
            )
        self._client: Any = client

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self._bucket!r}, prefix={self._prefix!r})"

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def client(self) -> Any:
        """The boto3 S3 client (blobs/s3parts.py writes tus uploads through it)."""
        return self._client

    @property
    def part_size(self) -> int:
        return self._part_size

    def presigned_path(self, sha256: str, expires_s: int = 300) -> str:
        """The path and query of a presigned GET of the blob (path-style: ``/bucket/key?X-Amz-…``), for nginx to
        fetch from the endpoint after the app authorised a read. Only the Host header is signed, so nginx may
        forward the client's Range."""
        validate_key(sha256)
        url = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": self._key(sha256)}, ExpiresIn=expires_s
        )
        parts = urlsplit(str(url))
        return f"{parts.path}?{parts.query}"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _key(self, sha256: str) -> str:
        return f"{self._prefix}{sha256}"

    # -- writing -------------------------------------------------------------

    def put_stream(self, sha256: str, chunks: Iterable[bytes]) -> BlobInfo:
        validate_key(sha256)
        existing = self.stat(sha256)
        if existing is not None:
            return existing
        upload = _Upload(self._client, self._bucket, self._key(sha256), sha256, self._part_size)
        try:
            hasher = hashlib.sha256()
            size = 0
            for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                upload.write(chunk)
            actual = hasher.hexdigest()
            if actual != sha256:
                raise BlobHashMismatch(sha256, actual, size)
            upload.complete()
        except BaseException:
            upload.abort()
            raise
        return BlobInfo(sha256, size)

    def put_file(self, sha256: str, path: Path, *, verified: bool = False) -> BlobInfo:
        # The bytes travel through this process either way, and hashing them is
        # cheap next to the upload, so a verified file is checked all the same.
        validate_key(sha256)
        existing = self.stat(sha256)
        if existing is not None:
            return existing
        return self.put_stream(sha256, iter_file(Path(path)))

    def delete(self, sha256: str) -> None:
        validate_key(sha256)
        self._client.delete_object(Bucket=self._bucket, Key=self._key(sha256))

    # -- reading -------------------------------------------------------------

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        length: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> BlobReader:
        validate_key(sha256)
        check_range(start, length, chunk_size)
        if length == 0:
            if self.stat(sha256) is None:
                raise BlobNotFound(sha256)
            return BlobReader.empty()
        end = "" if length is None else str(start + length - 1)
        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=self._key(sha256), Range=f"bytes={start}-{end}"
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND:
                raise BlobNotFound(sha256) from None
            if code == "InvalidRange":  # the object exists; start is at or past its end
                return BlobReader.empty()
            raise
        body = response["Body"]
        return BlobReader(body.iter_chunks(chunk_size), on_close=body.close)

    def stat(self, sha256: str) -> BlobInfo | None:
        validate_key(sha256)
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=self._key(sha256))
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return None
            raise
        return BlobInfo(sha256, int(response["ContentLength"]))

    def local_path(self, sha256: str) -> Path | None:
        validate_key(sha256)
        return None

    def iter_hashes(self) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        start = len(self._prefix)
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
            for item in page.get("Contents", ()):
                name = item["Key"][start:]
                try:
                    yield validate_key(name)
                except ValueError:
                    continue  # not one of ours


class _Upload:
    """One object being written: a single PutObject, or multipart once data exceeds a part.

    Holds at most one part in memory. A part is sent only when more data follows
    it, so the last part is never empty and a blob of exactly one part size is a
    plain PutObject.
    """

    def __init__(self, client: Any, bucket: str, key: str, sha256: str, part_size: int):
        self._client = client
        self._bucket = bucket
        self._key = key
        self._sha256 = sha256
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk).cast("B")
        while view:
            if len(self._buffer) == self._part_size:
                self._send_part()
            take = self._part_size - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]

    def _send_part(self) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, Metadata={"sha256": self._sha256}
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        if number > _MAX_PARTS:
            raise ValueError(f"blob exceeds {_MAX_PARTS} parts of {self._part_size} bytes")
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=self._buffer,  # handed over, not copied: a fresh buffer follows
        )
        part: dict[str, Any] = {"PartNumber": number, "ETag": response["ETag"]}
        # botocore adds a CRC checksum to each part by default; S3 then wants it back.
        part.update({k: v for k, v in response.items() if k.startswith("Checksum")})
        self._parts.append(part)
        self._buffer = bytearray()

    def complete(self) -> None:
        if self._upload_id is None:
            self._client.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=self._buffer,
                Metadata={"sha256": self._sha256},
            )
            return
        self._send_part()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        """Abort the multipart upload, if one was started. Best effort: never raises."""
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        # Keep the original error; a bucket lifecycle rule reaps what an abort missed.
        with suppress(Exception):
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
