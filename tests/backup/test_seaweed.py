"""The SeaweedFS helper really enforces what the ransomware test relies on."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.seaweed import SeaweedS3


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def test_credentials_are_checked(seaweed_s3: SeaweedS3) -> None:
    bucket = seaweed_s3.make_bucket(f"auth-{uuid.uuid4().hex[:12]}")
    wrong = seaweed_s3.client(secret_key="not-the-secret")
    with pytest.raises(ClientError) as refused:
        wrong.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert _error_code(refused.value) in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}
    wrong.close()


def test_compliance_lock_refuses_delete_and_shortening(seaweed_s3: SeaweedS3) -> None:
    bucket = seaweed_s3.make_bucket(f"lock-{uuid.uuid4().hex[:12]}", object_lock=True)
    client = seaweed_s3.client()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    version = client.put_object(
        Bucket=bucket, Key="g/manifest", Body=b"original", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )["VersionId"]

    with pytest.raises(ClientError) as deleting:
        client.delete_object(Bucket=bucket, Key="g/manifest", VersionId=version)
    assert _error_code(deleting.value) == "AccessDenied"
    with pytest.raises(ClientError) as bypassing:
        client.delete_object(Bucket=bucket, Key="g/manifest", VersionId=version, BypassGovernanceRetention=True)
    assert _error_code(bypassing.value) == "AccessDenied"
    with pytest.raises(ClientError) as shortening:
        client.put_object_retention(
            Bucket=bucket,
            Key="g/manifest",
            VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - dt.timedelta(days=1)},
        )
    assert _error_code(shortening.value) == "AccessDenied"

    # An overwrite or a plain delete only adds a version / a delete marker: the locked version stays.
    client.put_object(Bucket=bucket, Key="g/manifest", Body=b"ransom note")
    client.delete_object(Bucket=bucket, Key="g/manifest")
    assert client.get_object(Bucket=bucket, Key="g/manifest", VersionId=version)["Body"].read() == b"original"
    retention = client.get_object_retention(Bucket=bucket, Key="g/manifest", VersionId=version)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert retention["RetainUntilDate"] >= until - dt.timedelta(seconds=1)
    client.close()
