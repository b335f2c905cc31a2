"""tus 1.0 wire details (uploads/tus.py), pinned value by value: the version check, Upload-Metadata and
Upload-Checksum parsing, the offset headers, and the headers and problem every answer about an upload carries.

Written for the survivors of a mutmut run over uploads/tus.py (docs/testing.md, "Mutation testing"): the
upload tests go through a real server and check statuses, rarely the exact headers, limits and messages.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime

import pytest

from chairside.db.models import Upload
from chairside.errors import Problem
from chairside.uploads import tus

TUS = {"Tus-Resumable": "1.0.0"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _refused(call: object, *args: object) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_only_tus_1_0_0_is_spoken() -> None:
    tus.require_version("1.0.0")
    for wrong in (None, "", "1.0", "0.2.2", "1.0.0 "):
        problem = _refused(tus.require_version, wrong)
        assert (problem.status, problem.code) == (412, "tus-version")
        assert problem.headers == {"Tus-Version": "1.0.0", "Tus-Resumable": "1.0.0"}
        assert "Tus-Resumable: 1.0.0" in problem.detail
    assert tus.base_headers() == TUS
    assert tus.EXTENSIONS == "creation,creation-with-upload,termination,expiration,checksum"


def test_metadata_is_decoded_pair_by_pair() -> None:
    assert tus.parse_metadata(None) == {}
    assert tus.parse_metadata("") == {}
    header = f"filename {_b64('写真 1.jpg')}, patient_id {_b64('p')},,  empty, flag"
    assert tus.parse_metadata(header) == {"filename": "写真 1.jpg", "patient_id": "p", "empty": "", "flag": ""}
    values = {"filename": "x.mp4", "captured_at": "2026-11-24T10:30:00+09:00"}
    assert tus.parse_metadata(tus.encode_metadata(values)) == values
    assert tus.encode_metadata({"a": "b", "c": ""}) == "a Yg==,c "


@pytest.mark.parametrize("header", [f"k {_b64('a')},k {_b64('b')}", "k not-base64!", "k Y!Q==", "k /w=="])
def test_malformed_metadata_is_refused(header: str) -> None:
    problem = _refused(tus.parse_metadata, header)
    assert (problem.status, problem.code, problem.headers) == (400, "bad-metadata", TUS)
    assert problem.detail in ("The upload's metadata is malformed (an empty or repeated key).",
                              "The upload's metadata value for 'k' is not valid base64 UTF-8 text.")


def test_metadata_over_the_limit_is_refused_not_cut() -> None:
    at_limit = "k " + "A" * 3992 + ",abcde"
    assert len(at_limit) == tus.MAX_METADATA_CHARS == 4000
    assert tus.parse_metadata(at_limit) == {"k": "\0" * 2994, "abcde": ""}
    problem = _refused(tus.parse_metadata, at_limit + "f")
    assert (problem.status, problem.code, problem.headers) == (400, "metadata-too-long", TUS)
    assert problem.detail == ("The upload's metadata is longer than 4000 characters. Send only the ids, the file's "
                              "name and its capture time.")


def test_a_checksum_names_sha1_or_sha256_and_a_digest_of_the_right_length() -> None:
    assert tus.parse_checksum(None) is None
    assert tus.parse_checksum("") is None
    digest = hashlib.sha256(b"x").digest()
    parsed = tus.parse_checksum(f" SHA256 {base64.b64encode(digest).decode()} ")
    assert parsed == tus.Checksum("sha256", digest)
    assert parsed is not None and parsed.new().name == "sha256"
    sha1 = hashlib.sha1(b"x", usedforsecurity=False).digest()
    assert tus.parse_checksum(f"sha1 {base64.b64encode(sha1).decode()}") == tus.Checksum("sha1", sha1)
    md5 = hashlib.md5(b"x", usedforsecurity=False).digest()
    for header, code in [(f"md5 {base64.b64encode(md5).decode()}", "checksum-algorithm"),
                         ("sha256 ###", "bad-checksum"),
                         (f"sha256 {base64.b64encode(sha1).decode()}", "bad-checksum")]:
        problem = _refused(tus.parse_checksum, header)
        assert (problem.status, problem.code, problem.headers) == (400, code, TUS), header
    assert "sha256" in _refused(tus.parse_checksum, f"sha256 {base64.b64encode(sha1).decode()}").detail
    assert "'md5' is not supported" in _refused(tus.parse_checksum, f"md5 {base64.b64encode(md5).decode()}").detail
    # strict base64: characters outside its alphabet are refused, not skipped
    junk = _refused(tus.parse_checksum, f"sha256 {base64.b64encode(digest).decode()[:-1]}!=")
    assert (junk.code, junk.detail) == ("bad-checksum", "The Upload-Checksum value is not valid base64.")
    # the first word names the algorithm: a damaged value with a space in it is a bad checksum, not an algorithm
    assert _refused(tus.parse_checksum, "sha256 AAAA AAAA").code == "bad-checksum"


def test_an_offset_is_at_most_eighteen_ascii_digits() -> None:
    assert tus.parse_offset("0", "Upload-Offset") == 0
    assert tus.parse_offset("999999999999999999", "Upload-Length") == 10**18 - 1
    for bad in (None, "", "-1", "1.5", " 1", "²", "١٢", "1" * 19, "1" * 5000):
        problem = _refused(tus.parse_offset, bad, "Upload-Length")
        assert (problem.status, problem.code, problem.headers) == (400, "bad-header", TUS), bad
        assert "Upload-Length" in problem.detail


def _upload() -> Upload:
    return Upload(id=uuid.uuid4(), offset=1234, expires_at=datetime(2026, 12, 8, 9, 30, tzinfo=UTC))


def test_every_answer_about_an_upload_names_its_offset_and_expiry() -> None:
    assert tus.tus_headers() == TUS
    assert tus.tus_headers(_upload(), Location="/x") == {
        "Tus-Resumable": "1.0.0", "Upload-Offset": "1234", "Upload-Expires": "Tue, 08 Dec 2026 09:30:00 GMT",
        "Location": "/x"}
    assert tus.http_date(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "Fri, 02 Jan 2026 03:04:05 GMT"


def test_a_checksum_mismatch_is_460_and_closes_an_idle_connection() -> None:
    busy = tus.checksum_mismatch(_upload(), idle=False)
    assert (busy.status, busy.code) == (460, "checksum-mismatch")
    assert busy.headers == tus.tus_headers(_upload())
    assert "Nothing was kept" in busy.detail
    assert tus.checksum_mismatch(_upload(), idle=True).headers == {**tus.tus_headers(_upload()), "Connection": "close"}


def test_a_refusal_carries_the_protocols_header() -> None:
    problem = tus.bad("No.")
    assert (problem.status, problem.code, problem.detail, problem.headers) == (400, "bad-upload", "No.", TUS)
    problem = tus.bad("Too big.", "too-large", 413)
    assert (problem.status, problem.code) == (413, "too-large")
