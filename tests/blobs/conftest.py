from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chairside.blobs import BlobStore, FilesystemBlobStore, S3BlobStore

from .backends import BackendView, FilesystemView, MotoServer, S3View, s3_client


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    return boto3.session.Session()


@pytest.fixture(scope="session")
def s3_admin(moto_server: MotoServer, boto_session: boto3.session.Session) -> Iterator[Any]:
    """A client of its own for setting up buckets and looking behind a store's back."""
    client = s3_client(moto_server.endpoint, boto_session)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def s3_bucket(moto_server: MotoServer, s3_admin: Any) -> Iterator[str]:
    """A fresh bucket; every bucket is forgotten afterwards."""
    bucket = f"chairside-test-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=bucket)
    yield bucket
    moto_server.reset()


@pytest.fixture
def s3_store(
    moto_server: MotoServer, s3_bucket: str, boto_session: boto3.session.Session
) -> Iterator[S3BlobStore]:
    client = s3_client(moto_server.endpoint, boto_session)
    try:
        with S3BlobStore(s3_bucket, client=client) as store:
            yield store
    finally:
        client.close()


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


_STORE_FIXTURES = {"filesystem": "fs_store", "s3": "s3_store"}


@pytest.fixture(params=list(_STORE_FIXTURES))
def blob_store(request: pytest.FixtureRequest) -> BlobStore:
    """Every backend in turn: the contract suite runs once per backend."""
    store: BlobStore = request.getfixturevalue(_STORE_FIXTURES[request.param])
    return store


@pytest.fixture
def blob_backend(blob_store: BlobStore, request: pytest.FixtureRequest) -> BackendView:
    """What the backend holds, seen without going through the store."""
    if isinstance(blob_store, FilesystemBlobStore):
        return FilesystemView(blob_store)
    assert isinstance(blob_store, S3BlobStore)
    return S3View(blob_store, request.getfixturevalue("s3_admin"))
