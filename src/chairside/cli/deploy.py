"""`chairside deploy`: what an operator needs to run the cloud as several servers (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

import typer

from chairside.cli.common import fail
from chairside.deploy.nginx import NginxOptions, render
from chairside.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Production set-up: nginx in front of the cloud servers; Patroni for "
                  "automatic failover.")


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


@app.command("patroni-config")
def patroni_config(
    name: Annotated[str, typer.Option(help="This node's member name, one per site (e.g. osaka).")],
    data: Annotated[Path, typer.Option(help="The PostgreSQL data directory Patroni manages (made by Patroni).")],
    listen: Annotated[str, typer.Option(help="PostgreSQL's HOST:PORT.")],
    restapi: Annotated[str, typer.Option(help="Patroni's REST API HOST:PORT (health checks, patronictl).")],
    etcd: Annotated[list[str], typer.Option(help="An etcd member's client URL, http[s]://HOST:PORT (repeat; three "
                                            "in production, one at a third place).")],
    app_data: Annotated[Path, typer.Option(help="This site's Chairside folder (`cloud serve` / `mirror serve "
                                           "--data`): the callback promotes its app when its database is promoted.")],
    pg_bin: Annotated[Path | None, typer.Option(help="PostgreSQL server binaries (default: the newest under "
                                                "/usr/lib/postgresql).")] = None,
    scope: Annotated[str, typer.Option(help="The cluster's name, the same at both sites.")] = "chairside",
    connect_address: Annotated[str | None, typer.Option(help="HOST:PORT the other site reaches this PostgreSQL at "
                                                        "(default: --listen).")] = None,
    restapi_connect_address: Annotated[str | None, typer.Option(help="HOST:PORT others reach the REST API at "
                                                                "(default: --restapi).")] = None,
    app_url: Annotated[str | None, typer.Option(help="This site's public URL (named to a fenced old primary).")] = None,
    allow: Annotated[list[str] | None, typer.Option(help="A network (CIDR) allowed to connect: the apps and the "
                                                    "other site (repeat; 127.0.0.1/32 always).")] = None,
    auth: Annotated[str, typer.Option(help="pg_hba.conf method for those networks ('trust' only for tests).")] =
        "scram-sha-256",
    synchronous: Annotated[bool, typer.Option(help="Patroni's synchronous_mode: only the synchronous standby may be "
                                              "promoted (no acknowledged write lost).")] = False,
    synchronous_strict: Annotated[bool, typer.Option(help="With --synchronous: never fall back to asynchronous "
                                                     "(writes wait while the standby is gone).")] = False,
    ttl: Annotated[int, typer.Option(help="Leader lock lifetime, seconds (most of the failover time; Patroni's "
                                     "minimum, 20).")] = 20,
    loop_wait: Annotated[int, typer.Option(help="Seconds between Patroni's rounds.")] = 2,
    retry_timeout: Annotated[int, typer.Option(help="Seconds Patroni retries etcd and PostgreSQL.")] = 5,
    socket_dir: Annotated[str, typer.Option(help="PostgreSQL's unix socket folder.")] = "/var/run/postgresql",
    watchdog: Annotated[str, typer.Option(help="off, automatic or required (Linux softdog).")] = "automatic",
    chairside_cmd: Annotated[str | None, typer.Option("--chairside", help="The chairside command the callback runs "
                                                      "(default: this installation's).")] = None,
) -> None:
    """Print one Patroni node's configuration (YAML): automatic failover with etcd as the witness.

    Run it as PostgreSQL's user: `patroni FILE`. See docs/disaster-recovery.md, "Automatic failover with Patroni".
    """
    from chairside.deploy.patroni import PatroniOptions
    from chairside.deploy.patroni import render as render_patroni
    from chairside.mirror.postgres import default_bin_dir

    try:
        options = PatroniOptions(
            name=name, data_dir=data.resolve(), bin_dir=(pg_bin or default_bin_dir()), listen=listen,
            restapi=restapi, etcd=etcd, app_data=app_data, scope=scope, connect_address=connect_address,
            restapi_connect_address=restapi_connect_address, app_url=app_url, chairside=chairside_cmd,
            synchronous=synchronous, synchronous_strict=synchronous_strict, ttl=ttl, loop_wait=loop_wait,
            retry_timeout=retry_timeout, auth_method=auth, allow=tuple(allow or ()), socket_dir=socket_dir,
            watchdog=watchdog)
        text = render_patroni(options)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(text, nl=False)


@app.command("patroni-callback")
def patroni_callback(
    action: Annotated[str, typer.Argument(help="Patroni's callback action (on_role_change, on_start, …).")],
    role: Annotated[str, typer.Argument(help="This node's new role (primary, replica, …).")],
    scope: Annotated[str, typer.Argument(help="The cluster's name.")] = "",
    data: Annotated[str, typer.Option(help="This site's Chairside folder.")] = "./chairside-mirror",
    app_url: Annotated[str | None, typer.Option(help="This site's public URL.")] = None,
) -> None:
    """Patroni's callback (it appends ACTION ROLE SCOPE): promote this site's app when its database became primary."""
    import json

    from chairside.deploy.patroni import follow_database

    out = follow_database(Path(data), action, role, scope, app_url=app_url)
    typer.echo(json.dumps(out, ensure_ascii=False, default=str))
    if not out["ok"]:
        raise typer.Exit(1)
