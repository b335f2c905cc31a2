"""The relay box with a master key: its blobs are encrypted, what it sends the cloud is the plaintext
(checked end to end by SHA-256), and what it serves its stations is exact."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from chairside.keys import MasterKey
from tests.relay.conftest import RelaySetup, cloud_database, make_relay, upcloud, wait_for  # noqa: F401

from .test_at_rest import files_under, windows


def test_the_relays_blobs_are_encrypted_and_reach_the_cloud_intact(
    make_relay: Callable[..., RelaySetup], media_dir: Path, tmp_path: Path  # noqa: F811 - the fixture
) -> None:
    key = MasterKey.create(tmp_path / "relay-keys" / "master.key")
    setup = make_relay(env={"CHAIRSIDE_MASTER_KEY_FILE": str(key.path)})
    clip = (media_dir / "clip.mp4").read_bytes()
    with setup.station() as station:
        item = station.upload(media_dir / "clip.mp4", setup.cloud.patient_id)
        assert b"".join(station.iter_content(item["id"], 65530, 65545)) == clip[65530:65546]
    assert item["sha256"] == hashlib.sha256(clip).hexdigest()
    setup.drained()
    at_cloud = wait_for(lambda: setup.cloud.media(item["id"]), "the item at the cloud")
    assert at_cloud["sha256"] == item["sha256"]
    with setup.cloud.client() as cloud:
        assert hashlib.sha256(b"".join(cloud.iter_content(item["id"]))).hexdigest() == item["sha256"]
    relay_files = files_under(setup.relay.data_dir / "blobs", setup.relay.data_dir / "uploads")
    assert relay_files
    for path in relay_files:
        raw = path.read_bytes()
        assert not any(w in raw for w in windows(clip)), f"{path} holds plaintext"
