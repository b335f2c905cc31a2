"""The relay's TLS certificate pinned at enrollment: a station talks only to the box it enrolled with.

A pin is the SHA-256 of the relay's certificate (DER), written as `openssl x509 -fingerprint -sha256` prints
it (`AB:CD:…`; case and colons do not matter). With a pin, the TLS handshake itself checks the certificate the
server presents against it, before a single byte of the request (its token, a patient's name) is sent; the
chain and host name are not what is trusted (a relay on the LAN usually has a self-signed certificate or an
address for a name), the pinned certificate is. A pinned client refuses plain `http://`.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx


class PinMismatch(ssl.SSLCertVerificationError):
    """The server's certificate is not the pinned one: another box answers at the relay's address."""

    def __init__(self, message: str) -> None:
        super().__init__(1, message)  # (errno, message): str() is the message, as for OpenSSL's own errors

    def __str__(self) -> str:
        return str(self.strerror)


def is_pin_mismatch(exc: BaseException | None) -> bool:
    """Whether ``exc`` (an httpx error, say) was caused by a pinned certificate not matching."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, PinMismatch):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class PinError(ValueError):
    """A pin that cannot be used: malformed, or given with a plain-HTTP address (a downgrade)."""


def normalize(pin: str) -> str:
    """64 lowercase hex digits from `AB:CD:…`, `sha256:abcd…` or plain hex; PinError otherwise."""
    text = pin.strip().lower().removeprefix("sha256:").removeprefix("sha256 fingerprint=").replace(":", "")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise PinError(f"証明書のピンの形式が違います: {pin!r} / not a SHA-256 certificate fingerprint: {pin!r}")
    return text


def display(pin: str) -> str:
    """`AB:CD:…`, as openssl and `chairside relay serve` print it."""
    hexed = normalize(pin)
    return ":".join(hexed[i:i + 2] for i in range(0, 64, 2)).upper()


def fingerprint_of(der: bytes) -> str:
    return display(hashlib.sha256(der).hexdigest())


def _check(der: bytes | None, want: str) -> None:
    got = hashlib.sha256(der or b"").hexdigest()
    if der is None or got != want:
        raise PinMismatch(
            f"リレーの証明書が登録時のものと違います（登録 {display(want)}、今回 "
            f"{display(got) if der else 'なし'}）。別の機器がリレーになりすましている可能性があります。何も送信して"
            "いません。管理者に連絡してください / the relay's certificate is not the one pinned at enrollment (pinned "
            f"{display(want)}, presented {display(got) if der else 'none'}): another box may be posing as the relay. "
            "Nothing was sent; call the administrator"
        )


class _PinnedSocket(ssl.SSLSocket):
    _pin = ""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _check(self.getpeercert(binary_form=True), self._pin)


class _PinnedObject(ssl.SSLObject):
    _pin = ""

    def do_handshake(self) -> None:
        super().do_handshake()  # raises SSLWantReadError until the handshake is done (asyncio, anyio)
        _check(self.getpeercert(binary_form=True), self._pin)


def pinned_context(pin: str) -> ssl.SSLContext:
    """A client context that accepts exactly the pinned certificate (checked in the handshake); TLS 1.2+."""
    want = normalize(pin)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin is the trust: the handshake's own check follows
    context.sslsocket_class = type("PinnedSSLSocket", (_PinnedSocket,), {"_pin": want})
    context.sslobject_class = type("PinnedSSLObject", (_PinnedObject,), {"_pin": want})
    return context


def pinned_transport(pin: str, **kwargs: Any) -> httpx.HTTPTransport:
    """An httpx transport that speaks only to the server holding the pinned certificate."""
    return httpx.HTTPTransport(verify=pinned_context(pin), **kwargs)


def require_https(urls: list[str]) -> None:
    """A pinned client never speaks plain HTTP: that would be a downgrade past the pin."""
    for url in urls:
        if not url.lower().startswith("https://"):
            raise PinError(
                f"リレーの証明書を登録済みのため、暗号化されていない接続（{url}）は使いません。https:// の"
                f"アドレスを指定してください / the relay's certificate is pinned, so a plain-HTTP address ({url}) is "
                "refused (a downgrade): use its https:// address"
            )


def fetch_fingerprint(url: str, *, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint of the certificate the server at ``url`` presents (trust on first use: compare
    it with what the relay printed at its start, or pass it as the pin directly)."""
    require_https([url])
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise PinError(f"{url} は証明書を示しませんでした / {url} presented no certificate")
    return fingerprint_of(der)
