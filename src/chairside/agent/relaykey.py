"""The station's part in the relay's security (docs/relay.md, docs/security.md):

- **The pin.** The relay's certificate fingerprint, kept in `DIR/.chairside/relay.json`: given at enrollment
  (`--pin`, or `chairside station pin`), else recorded at the agent's first contact with an https:// relay (a
  server whose health says `relay`; the cloud is verified by its CA instead, its certificate is renewed often).
  From then on the SDK accepts only that certificate, and a plain-HTTP address is refused (a downgrade).
- **The key share.** Every `check_s` the agent asks the relay for this station's share of its key and keeps
  it in the same file; when the relay answers 503 `relay-locked` (it booted without the cloud), the agent
  gives the share back (`POST /api/v1/relay/unlock`), and the relay starts.

The file is 0600 and written atomically. The share is useless without the station's token, which the file
does not hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chairside.client import ChairsideError, Client, PinError, fetch_fingerprint
from chairside.client._pin import display, normalize, pinned_context, require_https

FILE = Path(".chairside") / "relay.json"
Log = Callable[[str], None]


def load(watch: Path) -> dict[str, Any]:
    try:
        data = json.loads((watch / FILE).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(watch: Path, data: dict[str, Any]) -> None:
    path = watch / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=2).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def record_pin(watch: Path, server: str, pin: str) -> str:
    """Keep ``pin`` (normalised) for ``server``; answers it as printed (`AB:CD:…`)."""
    require_https([server])
    data = load(watch)
    data.update(server=server, pin=normalize(pin))
    save(watch, data)
    return display(pin)


def resolve_pin(watch: Path, server: str, given: str | None, log: Log) -> str | None:
    """The pin this agent enforces: ``given``, else the recorded one, else (https://) the certificate seen now,
    recorded (trust on first use, at the station's enrollment). PinError for a plain-HTTP address once pinned."""
    recorded = load(watch).get("pin")
    if given:
        if recorded and normalize(given) != recorded:
            log(f"リレーの証明書のピンを更新しました / the relay's pin was replaced: {display(given)}")
        if recorded != normalize(given):
            record_pin(watch, server, given)
        return normalize(given)
    if recorded:
        require_https([server])  # pinned: never plain HTTP
        return str(recorded)
    if not server.lower().startswith("https://"):
        return None
    try:
        seen = fetch_fingerprint(server)
        relay = _is_relay(server, seen)
    except (OSError, httpx.HTTPError) as e:
        raise PinError(f"リレーに接続できないため、証明書を登録できません（起動し直すと再試行します） / cannot reach "
                       f"{server} to pin its certificate at this first start (tried again at the next): {e}") from e
    if not relay:
        return None  # the cloud: verified by its CA (its certificate is renewed every few months), never pinned
    record_pin(watch, server, seen)
    log(f"リレーの証明書を登録しました / pinned the relay's certificate: SHA-256 {seen}")
    return normalize(seen)


def _is_relay(server: str, pin: str) -> bool:
    """Whether the server holding the certificate ``pin`` is a relay (its health says so, or it is locked)."""
    answer = httpx.get(server.rstrip("/") + "/api/v1/health", verify=pinned_context(pin), timeout=10)
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and (body.get("role") == "relay" or body.get("code") == "relay-locked")


def _locked(e: ChairsideError) -> bool:
    problem = e.problem or {}
    return e.status == 503 and (problem.get("code") == "relay-locked"
                                or str(problem.get("type", "")).endswith("/relay-locked"))


class ShareKeeper:
    """Keeps this station's share current and releases a locked relay with it (a thread of the agent)."""

    def __init__(self, watch: Path, server: str, token: str, *, pin: str | None, check_s: float,
                 transport: httpx.BaseTransport | None, log: Log) -> None:
        self.watch, self.server, self.token, self.pin = watch, server, token, pin
        self.check_s, self.transport, self.log = check_s, transport, log

    def run(self, stop: threading.Event) -> None:
        with Client(self.server, self.token, pin=self.pin, transport=self.transport, timeout=15.0) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.TransportError, PinError, OSError, ValueError):
                    self.tick(client)
                stop.wait(self.check_s)

    def tick(self, client: Client) -> str:
        """One look at the relay: `kept` (share stored), `unlocked`, `refused`, `no-share` or `none`."""
        try:
            answer = client.relay_key_share()
        except ChairsideError as e:
            if _locked(e):
                return self._unlock(client)
            return "none"  # a cloud, or a relay whose key is not sealed: nothing to keep
        data = load(self.watch)
        if data.get("share") != answer.get("share") or data.get("relay_id") != answer.get("relay_id"):
            data.update(relay_id=answer["relay_id"], release_key_id=answer["release_key_id"], share=answer["share"])
            save(self.watch, data)
            self.log("リレーの鍵の分担データを保存しました / kept this station's share of the relay's key")
        return "kept"

    def _unlock(self, client: Client) -> str:
        share = load(self.watch).get("share")
        if not share:
            self.log("リレーが鍵の解放を待っていますが、この端末は分担データを持っていません / the relay waits for "
                     "its key, but this station holds no share")
            return "no-share"
        try:
            client.unlock_relay(str(share))
        except ChairsideError as e:
            self.log(f"リレーの鍵を解放できませんでした / could not release the relay's key: {e.detail}")
            return "refused"
        self.log("リレーの鍵を解放しました（クラウドに接続できない起動） / released the relay's key (it booted without "
                 "the cloud)")
        return "unlocked"
