"""A tus upload's bytes kept in the S3 bucket while they arrive: multipart parts, then a short tail object.

Bytes ``[0, parts_bytes)`` are parts of one multipart upload (each exactly ``part_size``, S3's rule
being >= 5 MiB for every part but the last); bytes ``[parts_bytes, offset)`` are one small object, the
*tail*, named by the offset it ends at so that a request that dies never overwrites the tail another
committed. The caller (uploads/s3stream.py) keeps the list of parts and the tail's key in the database
with the upload's offset. When all bytes are in, the tail goes up as the last part and the multipart
upload is completed into a *staging* object; a finished blob is then adopted by a server-side copy.

Nothing here keeps more than one part in memory, and nothing touches the local disk except
:meth:`S3Parts.download`, which the ingest's probe needs.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .base import BlobInfo, validate_key
from .s3 import S3BlobStore

__all__ = ["S3Parts"]

_MAX_PARTS = 10_000
_MAX_COPY = 5 << 30  # the largest object one CopyObject copies


class S3Parts:
    """The partial uploads of one S3 blob store, under ``<prefix without slash>.uploads/<upload id>/``."""

    def __init__(self, store: S3BlobStore) -> None:
        self.store = store
        self.client: Any = store.client
        self.bucket = store.bucket
        self.part_size = store.part_size
        base = store.prefix.rstrip("/") or "blobs"
        self.root = f"{base}.uploads/"

    def _check(self, upload_id: str) -> str:
        if not upload_id.isalnum():
            raise ValueError("bad upload id")
        return upload_id

    def staging_key(self, upload_id: str) -> str:
        return f"{self.root}{self._check(upload_id)}/data"

    def tail_key(self, upload_id: str, end: int) -> str:
        return f"{self.root}{self._check(upload_id)}/tail-{end:015d}"

    # -- while bytes arrive ------------------------------------------------------------------------------

    def begin(self, upload_id: str) -> str:
        """Start the multipart upload; answer its S3 upload id."""
        created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.staging_key(upload_id))
        return str(created["UploadId"])

    def put_part(self, upload_id: str, s3_upload_id: str, number: int, data: bytes | bytearray | memoryview) -> str:
        """Upload part ``number`` (1-based); answer its ETag. Sending the same number again replaces it."""
        if not 1 <= number <= _MAX_PARTS:
            raise ValueError(f"an upload holds at most {_MAX_PARTS} parts of {self.part_size} bytes")
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.staging_key(upload_id), UploadId=s3_upload_id, PartNumber=number,
            Body=bytes(data),
        )
        return str(response["ETag"])

    def put_tail(self, upload_id: str, end: int, data: bytes | bytearray | memoryview) -> str:
        """Store the bytes after the last part as one object named for ``end``; answer its key."""
        key = self.tail_key(upload_id, end)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))
        return key

    def get_tail(self, key: str) -> bytes:
        """The tail's bytes (less than one part)."""
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def delete_key(self, key: str) -> None:
        """Best effort: a leftover is reaped by `discard` or a bucket lifecycle rule."""
        with suppress(Exception):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    # -- when all bytes are in ---------------------------------------------------------------------------

    def assembled(self, upload_id: str, length: int) -> bool:
        """Whether the staging object already holds the whole upload (a completion that ran before a crash)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.staging_key(upload_id))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return int(head["ContentLength"]) == length

    def assemble(self, upload_id: str, s3_upload_id: str | None, parts: list[list[Any]],
                 tail: bytes | None, length: int) -> str:
        """Make the staging object of the whole upload (idempotent); answer its key.

        With no multipart upload (a file smaller than a part) the tail is copied as it is."""
        key = self.staging_key(upload_id)
        if self.assembled(upload_id, length):
            return key
        if s3_upload_id is None:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=tail or b"")
            return key
        listed = [{"PartNumber": int(n), "ETag": str(etag)} for n, etag, _size in parts]
        if tail:
            number = len(listed) + 1
            listed.append({"PartNumber": number, "ETag": self.put_part(upload_id, s3_upload_id, number, tail)})
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=s3_upload_id, MultipartUpload={"Parts": listed}
        )
        return key

    def download(self, key: str, path: Path, *, hash_it: bool, chunk_size: int = 1 << 20) -> str | None:
        """Copy the object to a local file in pieces (memory flat); answer its SHA-256 when ``hash_it``."""
        hasher = hashlib.sha256() if hash_it else None
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            with open(path, "wb") as out:
                for chunk in body.iter_chunks(chunk_size):
                    if hasher is not None:
                        hasher.update(chunk)
                    out.write(chunk)
        finally:
            body.close()
        os.chmod(path, 0o600)
        return hasher.hexdigest() if hasher is not None else None

    def adopt(self, key: str, sha256: str, size: int) -> BlobInfo:
        """Make the staging object the blob ``sha256`` by a server-side copy (multipart over 5 GiB): the
        bytes do not travel through this process again."""
        validate_key(sha256)
        existing = self.store.stat(sha256)
        if existing is not None:
            return existing
        target = f"{self.store.prefix}{sha256}"
        if size <= _MAX_COPY:
            self.client.copy_object(
                CopySource={"Bucket": self.bucket, "Key": key}, Bucket=self.bucket, Key=target,
                Metadata={"sha256": sha256}, MetadataDirective="REPLACE",
            )
        else:  # CopyObject stops at 5 GiB: boto3's managed copy does it part by part (UploadPartCopy)
            self.client.copy(
                CopySource={"Bucket": self.bucket, "Key": key}, Bucket=self.bucket, Key=target,
                ExtraArgs={"Metadata": {"sha256": sha256}, "MetadataDirective": "REPLACE"},
            )
        return BlobInfo(sha256, size)

    def discard(self, upload_id: str, s3_upload_id: str | None) -> None:
        """Abort the multipart upload and remove every object of this upload. Best effort."""
        if s3_upload_id is not None:
            with suppress(Exception):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.staging_key(upload_id), UploadId=s3_upload_id
                )
        with suppress(Exception):
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.root}{self._check(upload_id)}/")
            for item in listed.get("Contents", ()):
                self.delete_key(str(item["Key"]))
