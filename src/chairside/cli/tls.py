"""`--tls-cert FILE --tls-key FILE` and the keys check, shared by the serve commands (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from chairside.cli.common import fail
from chairside.context import Context, build_context
from chairside.keys import KeyWrapper, MasterKeyError
from chairside.keys.tls import TlsError, server_options
from chairside.settings import Settings

TlsCert = Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate (chain) to serve HTTPS with; "
                                              "TLS 1.3 preferred, 1.2 at least. Needs --tls-key.")]
TlsKey = Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")]


def tls_options(cert: Path | None, key: Path | None) -> dict[str, Any]:
    """uvicorn's TLS options, or a clear refusal (exit 2) before the server starts."""
    try:
        return server_options(cert, key)
    except TlsError as exc:
        fail(str(exc))


def serving_context(settings: Settings, role: str, master: KeyWrapper | None = None) -> Context:
    """`build_context` for a serve command: a wrong or missing master key or CA bundle is a clear refusal
    (exit 2, nothing changed), not a traceback. ``master``: the relay's key released at boot."""
    try:
        return build_context(settings, role=role, master=master)
    except (MasterKeyError, TlsError) as exc:
        fail(str(exc))
