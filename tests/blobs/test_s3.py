"""S3 backend details the contract cannot see: object names, parts, metadata."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from chairside.blobs import BlobInfo, S3BlobStore
from chairside.blobs.s3 import MIN_PART_SIZE, PART_SIZE

from .backends import ACCESS_KEY, SECRET_KEY, MotoServer

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_store_built_from_explicit_credentials_reaches_the_server(
    moto_server: MotoServer, s3_bucket: str, s3_admin: Any
) -> None:
    data = b"panoramic x-ray"
    with S3BlobStore(
        s3_bucket,
        prefix="clinic-7",
        endpoint_url=moto_server.endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    ) as store:
        store.put_stream(sha(data), [data])

        assert store.prefix == "clinic-7/"
        assert list(store.iter_hashes()) == [sha(data)]
    head = s3_admin.head_object(Bucket=s3_bucket, Key=f"clinic-7/{sha(data)}")
    assert head["ContentLength"] == len(data)


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1], ids=["single-put", "multipart"])
def test_object_is_named_by_prefix_and_hash_and_carries_the_hash(
    s3_store: S3BlobStore, s3_admin: Any, size: int
) -> None:
    data = bytes(size)
    key = sha(data)

    s3_store.put_stream(key, [data])

    head = s3_admin.head_object(Bucket=s3_store.bucket, Key=f"blobs/{key}")
    assert head["Metadata"] == {"sha256": key}
    assert head["ContentLength"] == size


@pytest.mark.parametrize(
    ("size", "parts"),
    [(PART_SIZE - 1, None), (PART_SIZE, None), (PART_SIZE + 1, 2)],
    ids=["under-one-part", "exactly-one-part", "one-byte-over"],
)
def test_blobs_over_one_part_go_up_in_8_mib_parts(
    s3_store: S3BlobStore, s3_admin: Any, size: int, parts: int | None
) -> None:
    key = sha(bytes(size))

    s3_store.put_stream(key, (bytes(n) for n in (MiB,) * (size // MiB) + (size % MiB,)))

    first = s3_admin.head_object(Bucket=s3_store.bucket, Key=f"blobs/{key}", PartNumber=1)
    assert first.get("PartsCount") == parts
    assert first["ContentLength"] == (PART_SIZE if parts else size)
    assert s3_store.stat(key) == BlobInfo(key, size)


def test_iter_hashes_skips_foreign_objects_and_other_prefixes(
    s3_store: S3BlobStore, s3_admin: Any
) -> None:
    key = sha(b"ours")
    s3_store.put_stream(key, [b"ours"])
    for foreign in ["blobs/README", f"blobs/{key.upper()}", f"other/{sha(b'theirs')}"]:
        s3_admin.put_object(Bucket=s3_store.bucket, Key=foreign, Body=b"x")

    assert list(s3_store.iter_hashes()) == [key]


def test_part_size_below_the_s3_minimum_is_rejected() -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3BlobStore("media", part_size=MIN_PART_SIZE - 1, client=object())


def test_a_given_client_is_left_open_for_its_owner() -> None:
    class Client:
        def close(self) -> None:
            raise AssertionError("the store closed a client it does not own")

    S3BlobStore("media", client=Client()).close()
