"""A relay whose master key is sealed (keys/release.py) obtains it at boot, before it opens its data.

1. It asks the cloud (`POST /api/v1/relay/key` with its token, the cloud's certificate verified). A refusal
   (the key or the token revoked) stops the boot: the relay does not start and its data stays unreadable.
2. When the cloud cannot be reached, it serves only its *locked* answer on its own port (same TLS certificate,
   so stations' pins hold): every request gets 503 `relay-locked`, and `POST /api/v1/relay/unlock` takes a
   station's share with that station's token. The first share that opens the sealed key, or the cloud answering
   meanwhile (asked again every `retry_s`), releases the key; then the locked answer stops and the relay starts.
3. After `relay_unlock_wait_s` (0: never) without either, the boot is refused, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import uvicorn

from chairside.keys import MasterKeyError, WrongMasterKey
from chairside.keys.release import (
    CloudUnreachable,
    Released,
    Sealed,
    ask_cloud,
    open_share,
    sealed_path,
)
from chairside.keys.tls import client_context
from chairside.settings import Settings

log = logging.getLogger("chairside.relay.keyboot")

UNLOCK_PATH = "/api/v1/relay/unlock"
_MAX_BODY = 8 << 10
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LOCKED_DETAIL = ("中継機は起動中で、鍵の解放を待っています（クラウドに接続できません）。登録済みの端末が自動で"
                 "解除します。しばらく待っても解除されない場合は管理者に連絡してください / the relay is starting "
                 "and waits for its key to be released (the cloud cannot be reached); an enrolled station "
                 "releases it by itself. If it stays locked, call the administrator")


class NotReleased(MasterKeyError):
    """Neither the cloud nor a station released the key in time: the relay does not start."""


def release(settings: Settings, *, host: str, port: int, tls: dict[str, Any],
            say: Callable[[str], None] = log.warning, retry_s: float = 15.0) -> Released:
    """The relay's master key, released by the cloud or (the cloud unreachable) by a station; else a refusal
    (:class:`ReleaseRefused`, :class:`NotReleased`, or another :class:`MasterKeyError`) saying why."""
    assert settings.upstream_url is not None and settings.relay_token is not None
    sealed = Sealed.load(sealed_path(settings))
    verify = client_context(settings.ca_bundle)
    try:
        released = _from_cloud(settings, sealed, verify)
        say("鍵が解放されました（クラウド） / the key was released by the cloud")
        return released
    except CloudUnreachable as exc:
        say(f"{exc}\nクラウドに接続できないため、端末からの鍵の解放を待ちます（{host}:{port}） / waiting for a "
            f"station to release the key on {host}:{port}")
    return asyncio.run(_locked(settings, sealed, verify, host=host, port=port, tls=tls, say=say, retry_s=retry_s))


def _from_cloud(settings: Settings, sealed: Sealed, verify: ssl.SSLContext) -> Released:
    assert settings.upstream_url is not None and settings.relay_token is not None
    key, relay_id = ask_cloud(settings.upstream_url, settings.relay_token, verify)
    if relay_id != sealed.relay_id:
        raise WrongMasterKey(f"この鍵は別の中継機 {sealed.relay_id} のものです（トークンは {relay_id}） / the sealed "
                             f"key belongs to relay {sealed.relay_id}, but the token is relay {relay_id}'s")
    return Released(sealed.open(key), key, sealed.relay_id, "cloud")


class LockedApp:
    """The relay's only answer while its key is sealed: 503 `relay-locked`, and the unlock route."""

    def __init__(self, sealed: Sealed, on_release: Callable[[Released], None]) -> None:
        self.sealed = sealed
        self.on_release = on_release

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST" and scope["path"] == UNLOCK_PATH:
            await self._unlock(scope, receive, send)
            return
        await _problem(send, 503, "relay-locked", LOCKED_DETAIL, unlock=UNLOCK_PATH)

    async def _unlock(self, scope: Message, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > _MAX_BODY:
                await _problem(send, 413, "body-too-large", "本文が大きすぎます / the body is too large")
                return
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        client = scope.get("client") or ("?", 0)
        try:
            share = json.loads(body or b"{}").get("share")
            if scheme.lower() != "bearer" or not token or not isinstance(share, str):
                raise ValueError
        except (ValueError, AttributeError):
            await _problem(send, 400, "malformed-request", "端末のトークンと鍵の分担データ（share）が必要です / "
                           "a station token (Authorization: Bearer) and a JSON body {share} are needed")
            return
        try:
            release_key = open_share(share, token.strip(), self.sealed.relay_id)
            master = self.sealed.open(release_key)
        except WrongMasterKey as exc:
            log.warning("relay unlock refused from %s: %s", client[0], exc)
            await _problem(send, 403, "relay-share-refused", str(exc))
            return
        log.warning("relay key released by a station at %s", client[0])
        await _answer(send, 200, {"unlocked": True, "relay_id": self.sealed.relay_id}, "application/json")
        self.on_release(Released(master, release_key, self.sealed.relay_id, f"station at {client[0]}"))


async def _problem(send: Send, status: int, code: str, detail: str, **extra: Any) -> None:
    titles = {400: "Bad request", 403: "Not allowed", 413: "Too large", 503: "Locked"}
    await _answer(send, status, {"type": f"https://chairside.example/problems/{code}", "title": titles[status],
                                 "status": status, "detail": detail, "code": code, **extra},
                  "application/problem+json", retry_after=status == 503)


async def _answer(send: Send, status: int, body: dict[str, Any], media_type: str, *, retry_after: bool = False) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(data)).encode()),
               (b"cache-control", b"no-store"),
               # No keep-alive: the locked answer stops once the key is released, and a station's idle TLS
               # connection would hold that stop up (asyncio waits for its TLS close).
               (b"connection", b"close")]
    if retry_after:
        headers.append((b"retry-after", b"15"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _locked(settings: Settings, sealed: Sealed, verify: ssl.SSLContext, *, host: str, port: int,
                  tls: dict[str, Any], say: Callable[[str], None], retry_s: float) -> Released:
    outcome: list[Released | MasterKeyError] = []
    done = asyncio.Event()

    def finish(result: Released | MasterKeyError) -> None:
        if not outcome:
            outcome.append(result)
        done.set()

    server = uvicorn.Server(uvicorn.Config(LockedApp(sealed, finish), host=host, port=port, lifespan="off",
                                           log_level="warning", server_header=False,
                                           timeout_graceful_shutdown=2, **tls))

    async def serve() -> None:
        try:
            await server.serve()
        except (SystemExit, OSError) as exc:  # the port is taken: uvicorn exits
            finish(NotReleased(f"{host}:{port} で待ち受けできません / cannot listen on {host}:{port} ({exc})"))
        finish(NotReleased("停止しました / stopped before the key was released"))

    async def ask_again() -> None:
        while True:
            await asyncio.sleep(retry_s)
            try:
                finish(await anyio.to_thread.run_sync(_from_cloud, settings, sealed, verify))
                return
            except CloudUnreachable:
                continue
            except MasterKeyError as exc:  # refused (revoked) while we waited: that wins
                finish(exc)
                return

    tasks = [asyncio.create_task(serve()), asyncio.create_task(ask_again())]
    wait = settings.relay_unlock_wait_s
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that arrives as the event is set
        # (CPython gh-86296), and a relay stopped at that moment would start instead (relay/uploader.py alike).
        async with asyncio.timeout(wait if wait > 0 else None):
            await done.wait()
    except TimeoutError:
        finish(NotReleased(
            f"{wait:.0f} 秒待ちましたが、クラウドにも登録済みの端末にも鍵を解放してもらえませんでした。中継機は"
            f"起動しません（データは読めません）。クラウドへの接続を確認してください / for {wait:.0f} s neither "
            "the cloud nor an enrolled station released the key: the relay does not start and its data "
            "stays unreadable. Check the connection to the cloud"))
    finally:
        server.should_exit = True
        tasks[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    result = outcome[0]
    if isinstance(result, MasterKeyError):
        raise result
    say(f"鍵が解放されました（{result.source}） / the key was released by the {result.source}")
    return result
