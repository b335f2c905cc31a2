"""Content-addressed blob storage: one interface, a filesystem and an S3 backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .base import BlobHashMismatch, BlobInfo, BlobNotFound, BlobReader, BlobStore, validate_key
from .filesystem import FilesystemBlobStore

if TYPE_CHECKING:
    from .s3 import S3BlobStore


def __getattr__(name: str) -> Any:
    # boto3 costs ~10 MB of memory at import: load it only for a store that lives in S3.
    if name == "S3BlobStore":
        from .s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(name)

__all__ = [
    "BlobHashMismatch",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "FilesystemBlobStore",
    "S3BlobStore",
    "open_blob_store",
    "validate_key",
]

_S3_OPTIONS = frozenset({"endpoint_url", "region"})


def open_blob_store(url: str) -> BlobStore:
    """Open the blob store that ``url`` names.

    - ``/var/lib/chairside/blobs`` (anything without ``://``) or ``file:///abs/path``:
      a :class:`FilesystemBlobStore` rooted there.
    - ``s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000&region=eu-central-1``:
      an :class:`S3BlobStore`. Without a path the prefix is ``blobs/``. Credentials
      come from boto3's own chain (environment, shared config, instance role);
      the URL never carries them.
    """
    if not url:
        raise ValueError("blob store URL is empty")
    if "://" not in url:
        return FilesystemBlobStore(Path(url))
    parts = urlsplit(url)
    if parts.fragment:
        raise ValueError(f"blob store URL must not have a fragment: {url!r}")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query:
            raise ValueError(f"expected file:///absolute/path, got {url!r}")
        return FilesystemBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return _open_s3(url, parts.netloc, parts.path, parts.query)
    raise ValueError(f"unsupported blob store URL (want a path, file:// or s3://): {url!r}")


def _open_s3(url: str, bucket: str, path: str, query: str) -> S3BlobStore:
    if not bucket or "@" in bucket or ":" in bucket:
        raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _S3_OPTIONS:
            known = ", ".join(sorted(_S3_OPTIONS))
            raise ValueError(f"unknown option {name!r} in {url!r} (known: {known})")
        if name in options:
            raise ValueError(f"option {name!r} given twice in {url!r}")
        options[name] = value
    from .s3 import S3BlobStore

    prefix = unquote(path).strip("/")
    return S3BlobStore(
        bucket,
        prefix=f"{prefix}/" if prefix else "blobs/",
        endpoint_url=options.get("endpoint_url") or None,
        region=options.get("region") or "us-east-1",
    )
