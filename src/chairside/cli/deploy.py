"""`chairside deploy`: what an operator needs to run the cloud as several servers (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

import typer

from chairside.cli.common import fail
from chairside.deploy.nginx import NginxOptions, render
from chairside.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Production set-up: nginx in front of the cloud servers.")


@app.command("nginx-config")
def nginx_config(
    listen: Annotated[int, typer.Option(help="Port nginx listens on.")],
    upstream: Annotated[list[str], typer.Option(help="An app server, http://HOST:PORT (repeat for each).")],
    data: Annotated[Path | None, typer.Option(help="The servers' data folder: nginx sends media bytes from its "
                                              "blob store (with CHAIRSIDE_OFFLOAD=nginx on the servers).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM); with --tls-key.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (default: every address).")] = "",
    user: Annotated[str | None, typer.Option(help="User of nginx's workers when it starts as root; it must "
                                             "be able to read the blob folder.")] = None,
    workers: Annotated[str, typer.Option(help="nginx worker processes ('auto': one per core).")] = "auto",
) -> None:
    """Print a complete nginx configuration; run it with `nginx -p PREFIX -c FILE` (pid, logs, temp in PREFIX)."""
    blob_dir: Path | None = None
    s3_endpoint: str | None = None
    if data is not None:
        blob_url = Settings.load(data_dir=data).blob_url
        if "://" not in blob_url:  # a folder: nginx reads the blob files
            blob_dir = Path(blob_url)
        elif blob_url.startswith("s3://"):  # an S3 store: nginx proxies to presigned URLs at its endpoint
            s3_endpoint = dict(parse_qsl(urlsplit(blob_url).query)).get("endpoint_url") or None
    try:
        text = render(NginxOptions(listen=listen, upstreams=upstream, blob_dir=blob_dir, tls_cert=tls_cert,
                                   tls_key=tls_key, host=host, user=user, worker_processes=workers,
                                   s3_endpoint=s3_endpoint))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(text, nl=False)
