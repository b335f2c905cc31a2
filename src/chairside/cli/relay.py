"""`chairside relay serve` and `chairside relay status`: the clinic's relay box (docs/relay.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chairside.cli.common import DatabaseUrl, DataDir, emit, fail
from chairside.cli.tls import TlsCert, TlsKey, serving_context, tls_options
from chairside.relay.bandwidth import BandwidthError, describe, parse_schedule
from chairside.settings import Settings

if TYPE_CHECKING:
    from chairside.keys.release import Released

app = typer.Typer(no_args_is_help=True, help="The clinic's relay: serves its stations, carries their writes to the "
                  "cloud.")

Upstream = Annotated[str | None, typer.Option("--upstream", help="The cloud's URL (or CHAIRSIDE_UPSTREAM_URL); "
                                              "URL,URL…: a primary and its mirror, followed by epoch.")]
Token = Annotated[str | None, typer.Option("--token", help="The relay's token from `chairside admin relay create` "
                                           "(or CHAIRSIDE_RELAY_TOKEN).")]


def relay_settings(data: Path, database_url: str | None, upstream: str | None, token: str | None) -> Settings:
    """The settings, checked: refuses (exit 2, with what to do) when the relay cannot work with them."""
    try:
        settings = Settings.load(data_dir=data, database_url=database_url, upstream_url=upstream, relay_token=token)
    except ValueError as e:
        fail(str(e))
    if not settings.upstream_url:
        fail("the relay needs the cloud's address: pass --upstream https://… or set CHAIRSIDE_UPSTREAM_URL")
    for url in settings.upstream_url.split(","):  # several: a primary and its mirror (docs/disaster-recovery.md)
        if not url.strip().startswith(("http://", "https://")):
            fail(f"--upstream must be http:// or https:// URLs (comma-separated), not {url.strip()!r}")
    if not settings.relay_token:
        fail("the relay needs its token: run `chairside admin relay create --clinic ID` on the cloud, then pass "
             "--token cs_rl_… or set CHAIRSIDE_RELAY_TOKEN")
    try:
        parse_schedule(settings.relay_bandwidth)
    except BandwidthError as e:
        fail(str(e))
    if settings.relay_upload_parallel < 1 or settings.relay_upload_chunk_bytes < 64 * 1024:
        fail("relay_upload_parallel must be at least 1 and relay_upload_chunk_bytes at least 65536")
    return settings


@app.command()
def serve(
    data: DataDir = Path("./chairside-relay"),
    upstream: Upstream = None,
    token: Token = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface of the LAN).")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: DatabaseUrl = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
) -> None:
    """Run the relay (migrates its database first). Stations point at http(s)://<relay>:PORT."""
    from chairside.app import create_app
    from chairside.cli.cloud import run
    from chairside.keys.tls import TlsError
    from chairside.relay.runtime import attach
    tls = tls_options(tls_cert, tls_key)
    settings = relay_settings(data, database_url, upstream, token)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    assert settings.upstream_url is not None and settings.relay_token is not None
    released = _released_key(settings, host, port, tls)
    ctx = serving_context(settings, "relay", released.master if released is not None else None)
    try:
        attach(ctx, settings.upstream_url, settings.relay_token).released = released
    except TlsError as exc:  # the ca_bundle setting names no usable file
        fail(str(exc))
    if tls_cert is not None:
        from chairside.keys.release import cert_fingerprint
        typer.echo(f"relay: TLS certificate SHA-256 {cert_fingerprint(tls_cert)} (stations pin it at enrollment)",
                   err=True)
    typer.echo(f"relay: upstream {settings.upstream_url}, bandwidth {settings.relay_bandwidth!r}, "
               f"{settings.relay_upload_parallel} transfers at once, chunks of "
               f"{settings.relay_upload_chunk_bytes} bytes", err=True)
    run(create_app(ctx), host, port, settings=ctx.settings, tls=tls)


def _released_key(settings: Settings, host: str, port: int, tls: dict[str, Any]) -> Released | None:
    """The master key released at boot when the relay's key is sealed (relay/keyboot.py), else None."""
    from chairside.keys import MasterKeyError
    from chairside.keys.release import sealed_path
    from chairside.keys.tls import TlsError
    from chairside.relay import keyboot

    if not sealed_path(settings).exists():
        return None
    if settings.master_key_file is not None:
        fail(f"この中継機の鍵は封印されています（{sealed_path(settings)}）。master_key_file の設定とファイルを"
             f"中継機から削除してください / this relay's key is sealed ({sealed_path(settings)}): remove the "
             "master_key_file setting and the key file from the relay box")
    try:
        return keyboot.release(settings, host=host, port=port, tls=tls, say=lambda m: typer.echo(m, err=True))
    except (MasterKeyError, TlsError) as exc:
        fail(str(exc))


@app.command("seal-key")
def seal_key(
    data: DataDir = Path("./chairside-relay"),
    upstream: Upstream = None,
    token: Token = None,
    database_url: DatabaseUrl = None,
    master_key: Annotated[Path | None, typer.Option("--master-key", help="The relay's existing master key file "
                                                    "(default: master_key_file; none: a new key is made).")] = None,
) -> None:
    """Seal the relay's master key with a release key the cloud keeps (run once, online; docs/relay.md).

    Afterwards the key file must leave the box: the relay gets its key from the cloud at boot, or from an
    enrolled station when the cloud cannot be reached."""
    from chairside.keys import MasterKey, MasterKeyError
    from chairside.keys.release import Sealed, ask_cloud, sealed_path
    from chairside.keys.tls import TlsError, client_context

    settings = relay_settings(data, database_url, upstream, token)
    assert settings.upstream_url is not None and settings.relay_token is not None
    path = sealed_path(settings)
    if path.exists():
        fail(f"この中継機の鍵は既に封印されています: {path} / this relay's key is already sealed: {path}")
    source = master_key or settings.master_key_file
    try:
        master = MasterKey.load(source) if source is not None else MasterKey.generate()
        key, relay_id = ask_cloud(settings.upstream_url, settings.relay_token, client_context(settings.ca_bundle),
                                  create=True)
        Sealed.seal(master, key, relay_id).write(path)
    except (MasterKeyError, TlsError) as exc:
        fail(str(exc))
    emit({"sealed": str(path), "relay_id": relay_id, "master_key_id": master.key_id,
          "next": (f"鍵のファイル {source} を中継機から削除し、master_key_file の設定を外してください / "
                   f"delete {source} from the relay box and unset master_key_file") if source is not None else
                  "新しいマスターキーを作りました。ファイルには保存していません / a new master key was made; it is "
                  "stored nowhere in the clear"})


@app.command()
def status(
    url: Annotated[str | None, typer.Option(help="The relay's URL, e.g. http://relay.local:8000.")] = None,
    token: Annotated[str | None, typer.Option(help="A station's token (with --url).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="The relay's data folder (read directly, "
                                              "on the relay box).")] = None,
    database_url: DatabaseUrl = None,
    table: Annotated[bool, typer.Option("--table", help="A table for people instead of JSON.")] = False,
) -> None:
    """Show the relay's status: online, pending items and bytes, upload rate, failures."""
    if url:
        import httpx  # here, not at the top: `chairside cloud serve` loads this module and never needs it

        if not token:
            fail("--url needs --token (a station's token)")
        try:
            response = httpx.get(url.rstrip("/") + "/api/v1/relay/status", headers={"Authorization": f"Bearer {token}"},
                                 timeout=15)
        except httpx.HTTPError as e:
            fail(f"cannot reach the relay at {url}: {e}")
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            fail(f"the relay answered {response.status_code}: {detail}")
        result: dict[str, Any] = response.json()
    elif data is not None:
        from chairside.context import build_context
        from chairside.relay.runner import status as relay_status
        settings = Settings.load(data_dir=data, database_url=database_url)
        if not database_url and not (settings.data_dir / "chairside.db").exists():
            fail(f"no relay data in {settings.data_dir} (is this the folder given to `relay serve --data`?)")
        ctx = build_context(settings, role="relay", upgrade=False)
        try:
            result = relay_status(ctx)
        finally:
            ctx.db.dispose()
    else:
        fail("say which relay: --url URL --token T, or --data DIR on the relay box")
    if table:
        _table(result)
    else:
        emit(result)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Chairside relay", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("cloud", f"{result.get('upstream')} — {'online' if result.get('online') else 'OFFLINE'}"
              + ("" if result.get("live", True) else " (as last saved by the running relay)"))
    t.add_row("last contact", str(result.get("last_contact") or "never"))
    if result.get("last_error"):
        t.add_row("last error", str(result["last_error"]))
    t.add_row("waiting to send", f"{result.get('pending_items', 0)} items, {_size(result.get('pending_bytes', 0))}")
    if result.get("oldest_pending_age_s") is not None:
        t.add_row("oldest waiting", f"{result['oldest_pending_age_s']:.0f} s")
    t.add_row("upload rate", f"{result.get('upload_rate_bps', 0) / 1e6:.2f} Mbit/s (cap: "
              f"{describe(result.get('bandwidth_cap_bps'))})")
    t.add_row("refused by the cloud", str(result.get("failed_items", 0)))
    for failure in result.get("failures") or []:
        t.add_row("", f"{failure['kind']} {failure['id']}: {failure['error']}")
    t.add_row("accepted over quota (offline)", str(result.get("accepted_over_quota", 0)))
    for key in ("cache", "feed"):
        if result.get(key) is not None:
            t.add_row(key, json.dumps(result[key], ensure_ascii=False, default=str))
    Console().print(t)
