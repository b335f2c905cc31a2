"""Where generations go: a folder (path or ``file://``) or an S3 bucket (``s3://bucket/prefix?endpoint_url=…``).

A target stores write-once objects under keys (``blobs/ab/<sha256>``, ``generations/<id>/manifest.json``, …).
Nothing is ever rewritten in place: a key once written holds the same bytes for ever, so on a versioned
(Object Lock) bucket the **oldest** version of a key is the genuine one, and that is the one read back:
an attacker holding the server's credentials can add a newer version or a delete marker, but neither
deletes nor shortens a version locked in COMPLIANCE mode.

S3 credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, …);
the URL never carries them.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["FolderTarget", "S3Target", "Target", "TargetError", "TargetMissing", "open_target"]

READ_CHUNK = 1 << 20


class TargetError(Exception):
    """The target cannot be reached or refused an operation (message for the operator, ja + en)."""


class TargetMissing(TargetError):
    """No object under this key."""


class Target(ABC):
    """Write-once objects under keys; see the module's docstring."""

    url: str
    #: Objects are written under S3 Object Lock (COMPLIANCE) and cannot be deleted before their lock ends.
    locked: bool = False

    @abstractmethod
    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the bytes of ``chunks`` under ``key`` atomically (all or nothing); answer the size stored."""

    @abstractmethod
    def read(self, key: str, *, head: int = 0, piece: int = READ_CHUNK) -> Iterator[bytes]:
        """The object's bytes (the oldest version on a versioned bucket); TargetMissing when absent.

        Pieces are ``head`` bytes first (when > 0), then ``piece`` bytes each but the last: a reader that
        wants a header and fixed-size records (the cipher's chunks) gets them without copying.
        """

    @abstractmethod
    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix`` (including ones hidden by a delete marker), in ascending order."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove every version of ``key``; False when a lock refused (part of) it."""

    def extend_lock(self, key: str) -> None:  # noqa: B027 - only a locked target has locks
        """Push the lock of ``key`` to at least the target's retention from now (a reused blob)."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise ValueError(f"not a target key: {key!r}")
    return key


# -- a folder ------------------------------------------------------------------------------------------------


class FolderTarget(Target):
    """Objects as files under ``root``: temp file, fsync, rename, fsync of the directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self._tmp = root / ".tmp"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        final = self._path(key)
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = self._tmp / f"{uuid.uuid4().hex}.part"
            size = 0
            try:
                with open(temp, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, final)
            finally:
                temp.unlink(missing_ok=True)
            _fsync_dir(final.parent)
        except OSError as exc:
            raise TargetError(
                f"バックアップ先に書き込めません: {final}（空き容量と権限を確認してください） / "
                f"cannot write to the backup target: {final} ({exc.strerror or exc}; check free space and permissions)"
            ) from exc
        return size

    def read(self, key: str, *, head: int = 0, piece: int = READ_CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise TargetMissing(f"バックアップ先にありません / not in the backup target: {key}") from None

        def pieces() -> Iterator[bytes]:
            with handle:
                if head and (first := handle.read(head)):
                    yield first
                while chunk := handle.read(piece):
                    yield chunk

        return pieces()

    def keys(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return iter(())
        found = sorted(
            str(p.relative_to(self.root))
            for p in start.rglob("*")
            if p.is_file() and self._tmp not in p.parents and str(p.relative_to(self.root)).startswith(prefix)
        )
        return iter(found)

    def delete(self, key: str) -> bool:
        path = self._path(key)
        path.unlink(missing_ok=True)
        if path.parent.exists():
            _fsync_dir(path.parent)
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- S3 ------------------------------------------------------------------------------------------------------


class _IterReader(io.RawIOBase):
    """A read-only file over an iterator of bytes (what boto3's managed upload wants)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        view = memoryview(out).cast("B")
        while not self._buffer:
            piece = next(self._chunks, None)
            if piece is None:
                return 0
            self._buffer = piece
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.size += n
        return n


class S3Target(Target):
    """Objects in ``bucket`` under ``prefix``; under Object Lock (COMPLIANCE, ``lock_days``) when the bucket has it."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        lock_days: int = 35,
        client: Any | None = None,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""
        query = f"?endpoint_url={endpoint_url}" if endpoint_url else ""
        self.url = f"s3://{bucket}/{self.prefix}{query}"
        self.lock_days = lock_days
        self._owns_client = client is None
        if client is None:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                config=Config(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 5, "mode": "standard"},
                    max_pool_connections=16,
                ),
            )
        self._client = client
        self._transfer = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=8)
        self.versioned = False
        self.locked = False
        try:
            status = client.get_bucket_versioning(Bucket=bucket).get("Status")
            self.versioned = status == "Enabled"
            lock = client.get_object_lock_configuration(Bucket=bucket)
            self.locked = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except Exception as exc:
            code = _code(exc)
            if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or not code:
                self.close()
                raise TargetError(
                    f"バックアップ先のバケットに接続できません: {bucket}（{code or exc}） / "
                    f"cannot reach the backup bucket {bucket} ({code or exc}): check the URL and the AWS credentials"
                ) from exc
            # ObjectLockConfigurationNotFoundError and the like: a bucket without a lock
        if self.locked:
            self.versioned = True

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _lock_args(self) -> dict[str, Any]:
        if not self.locked:
            return {}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.lock_days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        reader = _IterReader(chunks)
        extra: dict[str, Any] = self._lock_args()
        if self.locked:
            extra["ChecksumAlgorithm"] = "CRC32"  # S3 wants a checksum on every write under Object Lock
        try:
            self._client.upload_fileobj(reader, self.bucket, self._key(key), ExtraArgs=extra, Config=self._transfer)
        except Exception as exc:
            raise TargetError(
                f"バックアップ先に書き込めません: s3://{self.bucket}/{self._key(key)}（{_code(exc) or exc}） / "
                f"cannot write to the backup target s3://{self.bucket}/{self._key(key)} ({_code(exc) or exc})"
            ) from exc
        return reader.size

    def _oldest_version(self, full: str) -> str | None:
        """S3 lists the versions of a key newest first: the genuine (first written) one comes last."""
        oldest: str | None = None
        paginator = self._client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for version in page.get("Versions", ()):
                if version["Key"] == full:
                    oldest = version["VersionId"]
        return oldest

    def read(self, key: str, *, head: int = 0, piece: int = READ_CHUNK) -> Iterator[bytes]:
        full = self._key(key)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        try:
            if self.versioned:
                version = self._oldest_version(full)
                if version is None:
                    raise TargetMissing(f"バックアップ先にありません / not in the backup target: {key}")
                args["VersionId"] = version
            body = self._client.get_object(**args)["Body"]
        except TargetMissing:
            raise
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404", "NoSuchVersion"):
                raise TargetMissing(f"バックアップ先にありません / not in the backup target: {key}") from None
            raise TargetError(f"バックアップ先から読めません / cannot read {full} from the target: {exc}") from exc

        def pieces() -> Iterator[bytes]:
            try:
                if head and (first := body.read(head)):
                    yield first
                while chunk := body.read(piece):  # urllib3 answers exactly `piece` bytes until the end
                    yield chunk
            finally:
                body.close()

        return pieces()

    def keys(self, prefix: str) -> Iterator[str]:
        full = self.prefix + prefix
        try:
            if self.versioned:
                seen: set[str] = set()
                pages = self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=full)
                for page in pages:
                    seen.update(v["Key"][len(self.prefix) :] for v in page.get("Versions", ()))
                yield from sorted(seen)
                return
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", ()):
                    yield item["Key"][len(self.prefix) :]
        except Exception as exc:
            raise TargetError(
                f"バックアップ先を一覧できません / cannot list the backup target s3://{self.bucket}/{full}: "
                f"{_code(exc) or exc}"
            ) from exc

    def delete(self, key: str) -> bool:
        full = self._key(key)
        if not self.versioned:
            self._client.delete_object(Bucket=self.bucket, Key=full)
            return True
        done = True
        for page in self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=full):
            for version in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                if version["Key"] != full:
                    continue
                try:
                    self._client.delete_object(Bucket=self.bucket, Key=full, VersionId=version["VersionId"])
                except Exception as exc:
                    if _code(exc) != "AccessDenied":
                        raise
                    done = False  # still locked: it goes in a later run
        return done

    def extend_lock(self, key: str) -> None:
        if not self.locked:
            return
        full = self._key(key)
        version = self._oldest_version(full)
        if version is None:
            return
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.lock_days)
        current = self._client.get_object_retention(Bucket=self.bucket, Key=full, VersionId=version)
        held = current.get("Retention", {}).get("RetainUntilDate")
        if held is not None and held >= until - dt.timedelta(days=1):
            return
        self._client.put_object_retention(
            Bucket=self.bucket,
            Key=full,
            VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


_S3_OPTIONS = frozenset({"endpoint_url", "region"})


def open_target(url: str, *, lock_days: int = 35) -> Target:
    """Open the target ``url`` names: a folder path, ``file:///abs/path`` or ``s3://bucket/prefix?endpoint_url=…``."""
    if not url:
        raise ValueError("バックアップ先が空です / the backup target is empty")
    if "://" not in url:
        return FolderTarget(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query:
            raise ValueError(f"expected file:///absolute/path, got {url!r}")
        return FolderTarget(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc or "@" in parts.netloc:
            raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
        options: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in _S3_OPTIONS:
                raise ValueError(f"unknown option {name!r} in {url!r} (known: endpoint_url, region)")
            options[name] = value
        return S3Target(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=options.get("endpoint_url"),
            region=options.get("region"),
            lock_days=lock_days,
        )
    raise ValueError(f"unsupported backup target (want a folder, file:// or s3://): {url!r}")
