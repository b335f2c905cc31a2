"""The blob store contract (tests/blobs/test_contract.py), run again through the encrypting wrapper,
over the filesystem and over S3: the wrapper must be a blob store like any other."""

from __future__ import annotations

import os

import pytest

from chairside.blobs import BlobStore, FilesystemBlobStore, S3BlobStore
from chairside.blobs.crypt import EncryptedBlobStore
from tests.blobs.backends import BackendView, FilesystemView, S3View
from tests.blobs.conftest import boto_session, fs_store, moto_server, s3_admin, s3_bucket, s3_store  # noqa: F401
from tests.blobs.test_contract import *  # noqa: F403

DATA_KEY = os.urandom(32)


@pytest.fixture(params=["filesystem", "s3"])
def blob_store(request: pytest.FixtureRequest) -> BlobStore:
    inner: BlobStore = request.getfixturevalue({"filesystem": "fs_store", "s3": "s3_store"}[request.param])
    return EncryptedBlobStore(inner, lambda: ("k1", DATA_KEY), lambda _id: DATA_KEY)


@pytest.fixture
def blob_backend(blob_store: BlobStore, request: pytest.FixtureRequest) -> BackendView:
    assert isinstance(blob_store, EncryptedBlobStore)
    inner = blob_store.backend
    if isinstance(inner, FilesystemBlobStore):
        return FilesystemView(inner)
    assert isinstance(inner, S3BlobStore)
    return S3View(inner, request.getfixturevalue("s3_admin"))
