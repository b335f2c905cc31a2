"""The relay box's key is not on the box in the clear: released at boot by the cloud (revocable at once) or,
the cloud unreachable, by an enrolled station's share; a stolen box (no cloud release, no stations) does not
start and its data stays unreadable."""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from chairside.agent.relaykey import ShareKeeper, load, record_pin
from chairside.cli import app as cli
from chairside.client import Client
from chairside.keys import MasterKey, MasterKeyError, WrongMasterKey
from chairside.keys import release as rel
from chairside.keys.release import Sealed
from chairside.mediafile.generate import make_jpeg
from chairside.tenancy.service import revoke_relay
from tests.conftest import free_port
from tests.keyrelease.conftest import Cloud, RelayBox, dead_url, seal_key

KEY_URL = "/api/v1/relay/key"


def _cloud_key(cloud: Cloud) -> bytes | None:
    return rel.cloud_release_key(cloud.ctx.db, cloud.ctx.keys, cloud.relay_id, create=False)


def _files_hold(folder: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {needle[:8]!r}" for needle in needles if needle in data]
    return found


# -- the pieces ----------------------------------------------------------------------------------------

def test_a_sealed_key_opens_only_with_its_release_key(tmp_path: Path) -> None:
    master, release_key = MasterKey.generate(), os.urandom(32)
    sealed = Sealed.seal(master, release_key, "relay-1")
    path = tmp_path / "relay-key.sealed"
    sealed.write(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert master._export() not in path.read_bytes()
    assert base64.b64encode(master._export()) not in path.read_bytes()
    assert Sealed.load(path).open(release_key).key_id == master.key_id
    with pytest.raises(WrongMasterKey, match="does not open"):
        Sealed.load(path).open(os.urandom(32))
    with pytest.raises(MasterKeyError, match="never overwritten"):
        sealed.write(path)
    path.chmod(0o600)
    damaged = json.loads(path.read_text())
    damaged["sealed"] = base64.b64encode(b"\0" * 80).decode()
    other = tmp_path / "damaged.sealed"
    other.write_text(json.dumps(damaged))
    with pytest.raises(WrongMasterKey):
        Sealed.load(other).open(release_key)


def test_a_share_opens_only_with_its_stations_token() -> None:
    release_key = os.urandom(32)
    share = rel.share_for(release_key, "cs_st_station-a", "relay-1")
    assert rel.open_share(share, "cs_st_station-a", "relay-1") == release_key
    assert base64.b64encode(release_key).decode() not in share
    for token, relay in [("cs_st_station-b", "relay-1"), ("cs_st_station-a", "relay-2")]:
        with pytest.raises(WrongMasterKey, match="does not open"):
            rel.open_share(share, token, relay)


def test_the_cloud_releases_to_the_relays_token_until_revoked(cloud: Cloud) -> None:
    auth = {"Authorization": f"Bearer {cloud.relay_token}"}
    none = httpx.post(cloud.url + KEY_URL, headers=auth)
    assert none.status_code == 404 and "seal-key" in none.json()["detail"]
    made = httpx.put(cloud.url + KEY_URL, headers=auth)
    assert made.status_code == 200, made.text
    again = httpx.post(cloud.url + KEY_URL, headers=auth)
    assert again.json()["release_key"] == made.json()["release_key"]
    assert again.json()["relay_id"] == str(cloud.relay_id)
    # Kept wrapped by the cloud's master key: no page of the cloud's database holds it in the clear.
    raw = base64.b64decode(made.json()["release_key"])
    assert _files_hold(cloud.ctx.settings.data_dir, [raw]) == []
    station = httpx.post(cloud.url + KEY_URL, headers={"Authorization": f"Bearer {cloud.tenant.token}"})
    assert station.status_code == 403

    result = CliRunner().invoke(cli, ["admin", "--data", str(cloud.ctx.settings.data_dir), "relay", "revoke-key",
                                      str(cloud.relay_id)],
                                env={"CHAIRSIDE_MASTER_KEY_FILE": str(cloud.key_file)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["release_key_destroyed"] is True
    revoked = httpx.post(cloud.url + KEY_URL, headers=auth)
    assert revoked.status_code == 410
    assert "取り消されました" in revoked.json()["detail"] and "revoked" in revoked.json()["detail"]
    assert _cloud_key(cloud) is None  # destroyed, not flagged: nobody can release it again


# -- whole boots of `chairside relay serve` -----------------------------------------------------------

def test_a_relay_box_released_by_the_cloud_then_by_a_station_offline_then_revoked(
        cloud: Cloud, boxes: list[RelayBox], pki: dict[str, Path], tmp_path: Path) -> None:
    data, watch = tmp_path / "relay", tmp_path / "station"
    watch.mkdir()
    sealed = seal_key(cloud, data)
    assert sealed["relay_id"] == str(cloud.relay_id)
    tls = (pki["relay.crt"], pki["relay.key"])

    # 1. Online: the cloud releases the key; the station enrolls (pins the certificate) and keeps its share.
    online = RelayBox(data, cloud.url, cloud.relay_token, tls=tls)
    boxes.append(online)
    online.launch().wait_status(200)
    assert "released by the cloud" in online.output()
    record_pin(watch, online.url, rel.cert_fingerprint(pki["relay.crt"]))
    pin = load(watch)["pin"]
    keeper = ShareKeeper(watch, online.url, cloud.tenant.token, pin=pin, check_s=0.2, transport=None,
                         log=lambda _m: None)
    marker = b"KEYRELEASE-MARKER-" + uuid.uuid4().hex.encode()
    photo = make_jpeg(tmp_path / "marked.jpg", width=320, height=240)
    photo.write_bytes(photo.read_bytes() + marker)
    with Client(online.url, cloud.tenant.token, pin=pin) as station:
        patient = _wait_patient(station, cloud)  # once the feed brought the station to the relay
        station.upload(photo, patient)
        assert keeper.tick(station) == "kept"
    assert load(watch)["relay_id"] == str(cloud.relay_id)
    online.stop()
    # On the box: the sealed key, ciphertext blobs; never the master key, the release key or the recording.
    release_key = _cloud_key(cloud)
    assert release_key is not None
    master = Sealed.load(data / "relay-key.sealed").open(release_key)
    secrets_ = [marker, master._export(), base64.b64encode(master._export()), release_key,
                base64.b64encode(release_key)]
    assert _files_hold(data, secrets_) == []
    assert _files_hold(watch, secrets_) == []  # the station's share is wrapped by its token

    # 2. The internet is down at boot: the relay waits, locked; the station's share releases it.
    offline = RelayBox(data, dead_url(), cloud.relay_token, tls=tls, port=online.port)
    boxes.append(offline)
    locked = offline.launch().wait_status(503)
    assert locked.json()["code"] == "relay-locked" and "鍵の解放を待って" in locked.json()["detail"]
    wrong = httpx.post(offline.url + "/api/v1/relay/unlock", json={"share": load(watch)["share"]},
                       headers={"Authorization": "Bearer cs_st_not-this-station"}, verify=False)  # noqa: S501
    assert wrong.status_code == 403 and "does not open" in wrong.json()["detail"]
    with Client(offline.url, cloud.tenant.token, pin=pin) as station:
        assert keeper.tick(station) == "unlocked"
        offline.wait_status(200)
        assert [p["chart_no"] for p in station.search_patients("K-001")] == ["K-001"]  # its data, readable again
    assert "released by the station at 127.0.0.1" in offline.output()
    offline.stop()

    # 3. Reported stolen: the operator revokes the key; the relay cannot start (and says so).
    assert rel.revoke(cloud.ctx.db, cloud.relay_id)
    refused = _serve(data, cloud.url, cloud.relay_token)
    assert refused.exit_code == 2
    assert "refused to release" in refused.output and "410" in refused.output and "拒否" in refused.output
    revoke_relay(cloud.ctx, cloud.relay_id)  # the token itself revoked: refused as clearly
    token_gone = _serve(data, cloud.url, cloud.relay_token)
    assert token_gone.exit_code == 2
    assert "401" in token_gone.output and "does not start" in token_gone.output


def _serve(data: Path, upstream: str, token: str, **env: str) -> Result:
    """`chairside relay serve` in this process (a boot that is refused never gets as far as serving)."""
    return CliRunner().invoke(cli, ["relay", "serve", "--data", str(data), "--upstream", upstream, "--token", token,
                                    "--host", "127.0.0.1", "--port", str(free_port())],
                              env={"CHAIRSIDE_MASTER_KEY_FILE": "", **env})


def test_a_stolen_box_without_cloud_or_stations_does_not_start(cloud: Cloud, tmp_path: Path) -> None:
    data = tmp_path / "relay"
    seal_key(cloud, data)
    port = free_port()
    outcome: list[Result] = []
    boot = threading.Thread(target=lambda: outcome.append(CliRunner().invoke(cli, [
        "relay", "serve", "--data", str(data), "--upstream", dead_url(), "--token", cloud.relay_token,
        "--host", "127.0.0.1", "--port", str(port)],
        env={"CHAIRSIDE_MASTER_KEY_FILE": "", "CHAIRSIDE_RELAY_UNLOCK_WAIT_S": "3"})))
    boot.start()
    # While it waits, nothing but the locked answer is served: no route reaches any data.
    auth = {"Authorization": f"Bearer {cloud.tenant.token}"}
    answers: list[httpx.Response] = []

    def locked() -> bool:
        try:
            answers.append(httpx.get(f"http://127.0.0.1:{port}/api/v1/patients", headers=auth, timeout=2))
            return True
        except httpx.TransportError:
            return False

    _wait(locked, "the locked relay", timeout=10)
    assert answers[-1].status_code == 503 and answers[-1].json()["code"] == "relay-locked"
    boot.join(30)
    assert outcome and outcome[0].exit_code == 2
    out = outcome[0].output
    assert "neither the cloud nor an enrolled station released the key" in out and "起動しません" in out
    assert not (data / "chairside.db").exists()  # the data was never opened
    # Without the release key the sealed file is all there is: it opens with nothing else.
    with pytest.raises(WrongMasterKey):
        Sealed.load(data / "relay-key.sealed").open(os.urandom(32))


def test_a_relay_with_a_sealed_key_refuses_a_key_file_beside_it(cloud: Cloud, tmp_path: Path) -> None:
    data = tmp_path / "relay"
    seal_key(cloud, data)
    key = MasterKey.create(tmp_path / "k" / "master.key")
    result = CliRunner().invoke(cli, ["relay", "serve", "--data", str(data), "--upstream", cloud.url, "--token",
                                      cloud.relay_token], env={"CHAIRSIDE_MASTER_KEY_FILE": str(key.path)})
    assert result.exit_code == 2 and "remove the master_key_file" in result.output
    again = CliRunner().invoke(cli, ["relay", "seal-key", "--data", str(data), "--upstream", cloud.url, "--token",
                                     cloud.relay_token], env={"CHAIRSIDE_MASTER_KEY_FILE": ""})
    assert again.exit_code == 2 and "already sealed" in again.output


def _wait_patient(station: Client, cloud: Cloud) -> str:
    """A patient registered through the relay once it knows the station (the feed brings it)."""
    found: list[str] = []

    def probe() -> bool:
        try:
            found.append(station.create_patient(cloud.tenant.clinic_ids[0], "K-001", "鍵 花子", "カギ ハナコ")["id"])
            return True
        except Exception:
            return False

    _wait(probe, "the relay to know the station")
    return found[0]


def _wait(probe: object, what: str, timeout: float = 60.0) -> None:
    import time

    assert callable(probe)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
