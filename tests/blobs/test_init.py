"""The package surface: ``__all__`` and ``open_blob_store``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import chairside.blobs
from chairside.blobs import FilesystemBlobStore, S3BlobStore, open_blob_store

from .backends import ACCESS_KEY, SECRET_KEY, MotoServer


def test_public_names_are_pinned() -> None:
    assert sorted(chairside.blobs.__all__) == [
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


def test_plain_path_opens_a_filesystem_store(tmp_path: Path) -> None:
    store = open_blob_store(str(tmp_path / "blobs"))

    assert isinstance(store, FilesystemBlobStore)
    assert store.root == tmp_path / "blobs"


def test_file_url_opens_a_filesystem_store(tmp_path: Path) -> None:
    store = open_blob_store((tmp_path / "with space").as_uri())

    assert isinstance(store, FilesystemBlobStore)
    assert store.root == tmp_path / "with space"


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "endpoint", "region"),
    [
        ("s3://media", "media", "blobs/", None, "us-east-1"),
        ("s3://media/", "media", "blobs/", None, "us-east-1"),
        ("s3://media/cloud/blobs", "media", "cloud/blobs/", None, "us-east-1"),
        (
            "s3://media/x/?endpoint_url=http://127.0.0.1:9000&region=eu-central-1",
            "media",
            "x/",
            "http://127.0.0.1:9000",
            "eu-central-1",
        ),
    ],
)
def test_s3_url_names_bucket_prefix_endpoint_and_region(
    url: str, bucket: str, prefix: str, endpoint: str | None, region: str
) -> None:
    with open_blob_store(url) as store:
        assert isinstance(store, S3BlobStore)
        assert (store.bucket, store.prefix) == (bucket, prefix)
        client: Any = store._client
        assert client.meta.region_name == region
        if endpoint is not None:
            assert client.meta.endpoint_url == endpoint


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://host/path",
        "file://otherhost/path",
        "file:///path?x=1",
        "s3://",
        "s3://key:secret@bucket/p",
        "s3://bucket/p?endpoint=http://typo",
        "s3://bucket/p?region=a&region=b",
        "s3://bucket/p#frag",
    ],
)
def test_unusable_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages vary by mistake
        open_blob_store(url)


def test_s3_url_store_uses_the_standard_credential_chain(
    moto_server: MotoServer, s3_bucket: str, s3_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    data = b"cephalometric"
    key = hashlib.sha256(data).hexdigest()

    with open_blob_store(f"s3://{s3_bucket}/media?endpoint_url={moto_server.endpoint}") as store:
        store.put_stream(key, [data])

    assert s3_admin.head_object(Bucket=s3_bucket, Key=f"media/{key}")["ContentLength"] == 13
