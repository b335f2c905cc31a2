"""TLS for the servers (`--tls-cert/--tls-key`) and for the clients that call them (relay → cloud).

Per the CRYPTREC SSL/TLS guideline that MHLW's guideline 6.0 refers to: TLS 1.2 at least, TLS 1.3
preferred (OpenSSL negotiates the highest both sides speak), and for TLS 1.2 only ECDHE key
exchange with AES-GCM (forward secrecy, AEAD). Clients verify the server's certificate and host
name against the system's roots, or against the `ca_bundle` setting.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

__all__ = ["SERVER_CIPHERS", "TlsError", "client_context", "server_options"]

# TLS 1.2 suites (TLS 1.3's are fixed by OpenSSL: AES-GCM and ChaCha20-Poly1305).
SERVER_CIPHERS = "ECDHE+AESGCM:!aNULL:!eNULL"


class TlsError(Exception):
    """A certificate, key or CA bundle that cannot be used (message says which and why, ja + en)."""


def client_context(ca_bundle: str | Path | None = None) -> ssl.SSLContext:
    """A verifying client context: system roots, or only the CAs in ``ca_bundle``; TLS 1.2 at least."""
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise TlsError(f"CA バンドルのファイルがありません: {ca_bundle} / no CA bundle file at {ca_bundle}")
    try:
        context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle is not None else None)
    except ssl.SSLError as exc:
        raise TlsError(f"CA バンドルを読めません: {ca_bundle} / cannot read the CA bundle {ca_bundle}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_options(cert: Path | None, key: Path | None) -> dict[str, Any]:
    """uvicorn's TLS options for ``--tls-cert/--tls-key``, after checking that the pair works now.

    Both or neither: none answers ``{}`` (plain HTTP, for loopback or behind nginx).
    """
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise TlsError("--tls-cert と --tls-key は両方指定してください / give both --tls-cert and --tls-key")
    for path in (cert, key):
        if not Path(path).is_file():
            raise TlsError(f"ファイルがありません: {path} / no such file: {path}")
    try:
        leaf = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    except ValueError:
        raise TlsError(f"証明書（PEM）を読めません: {cert} / not a PEM certificate: {cert}") from None
    now = datetime.now(UTC)
    if leaf.not_valid_after_utc <= now:
        raise TlsError(f"証明書の有効期限が切れています（{leaf.not_valid_after_utc:%Y-%m-%d}）: {cert} / "
                       f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}: {cert}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
        context.set_ciphers(SERVER_CIPHERS)
    except ssl.SSLError as exc:
        raise TlsError(f"証明書と秘密鍵が対になっていません: {cert}, {key} / the certificate and the key do not "
                       f"match or cannot be read: {exc.reason or exc}") from None
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_ciphers": SERVER_CIPHERS,
            "ssl_version": ssl.PROTOCOL_TLS_SERVER}
