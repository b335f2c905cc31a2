"""`chairside mirror serve|status|promote` (the mirror site) and `chairside admin mirror …` (at the primary).

See docs/disaster-recovery.md: the topology, the promotion runbook, what each figure means.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from chairside.cli.common import DatabaseUrl, DataDir, emit, fail, parse_uuid
from chairside.context import Context
from chairside.db.models import Mirror
from chairside.errors import Problem
from chairside.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The mirror site: a standby that follows the primary cloud and can "
                  "take over from it.")
admin_app = typer.Typer(no_args_is_help=True, help="Mirror sites following this cloud (their credentials).")

Primary = Annotated[str, typer.Option("--primary", help="The primary cloud's URL, e.g. https://cloud.example.jp.")]
Token = Annotated[str, typer.Option("--token", help="The mirror's token from `chairside admin mirror create` "
                                    "at the primary.")]


@app.command()
def serve(
    primary: Primary,
    token: Token,
    data: DataDir = Path("./chairside-mirror"),
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Follow the primary (blobs and metadata); once promoted, this same process serves as the cloud.

    With --database-url (PostgreSQL): that is the hot standby of the primary's database, streamed by
    PostgreSQL itself. Without: the primary's SQLite database arrives as Litestream files.
    """
    from chairside.mirror import standby

    if not primary.startswith(("http://", "https://")):
        fail(f"--primary must be an http:// or https:// URL, not {primary!r}")
    if not token.startswith("cs_mr_"):
        fail("--token must be a mirror token (cs_mr_…) from `chairside admin mirror create` at the primary")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = data.resolve()
    state = standby.load(data)
    if state is None:
        state = standby.StandbyState(primary=primary, token=token, database_url=database_url)
    else:
        state.primary, state.token = primary, token
        state.database_url = database_url or state.database_url
    standby.save(data, state)
    serve_folder(data, host, port)


def serve_folder(data: Path, host: str, port: int) -> None:
    """Serve the folder as a mirror until promoted, then as the cloud (same process, same port)."""
    import uvicorn

    from chairside.app import create_app
    from chairside.context import build_context
    from chairside.mirror import standby
    from chairside.mirror.runtime import MirrorRuntime

    self_url = f"http://{host}:{port}"
    state = standby.load(data)
    assert state is not None
    if state.role == "mirror":
        settings = Settings.load(data_dir=data, database_url=_standby_db(data, state.database_url))
        ctx = build_context(settings, role="mirror", upgrade=state.database_url is None)
        runtime = MirrorRuntime(data, state, ctx.blobs)
        ctx.mirror = runtime
        server = uvicorn.Server(uvicorn.Config(create_app(ctx), host=host, port=port, log_level="info",
                                               server_header=False, timeout_keep_alive=30))
        runtime.on_promoted = lambda: setattr(server, "should_exit", True)
        typer.echo(f"mirror: following {state.primary} (metadata: "
                   f"{'PostgreSQL streaming' if state.database_url else 'Litestream'})", err=True)
        server.run()
        ctx.db.dispose()
        state = standby.load(data)
        assert state is not None
        if state.role != "cloud":
            return  # stopped (Ctrl-C, SIGTERM), not promoted
        typer.echo(f"mirror: promoted, serving as the cloud (epoch {state.epoch})", err=True)
    settings = Settings.load(data_dir=data, database_url=state.database_url)
    ctx = build_context(settings, role="cloud")
    ctx.mirror = MirrorRuntime(data, state, ctx.blobs, self_url=self_url)
    uvicorn.Server(uvicorn.Config(create_app(ctx), host=host, port=port, log_level="info", server_header=False,
                                  timeout_keep_alive=30)).run()


def _standby_db(data: Path, database_url: str | None) -> str:
    """PostgreSQL: the hot standby; SQLite: a small database of the mirror's own until promotion restores one."""
    return database_url or f"sqlite:///{data / 'mirror' / 'standby.db'}"


@app.command()
def status(data: DataDir = Path("./chairside-mirror")) -> None:
    """The mirror's figures as JSON: role, epoch, lag_s, blobs_behind, metadata_lag_s, notice."""
    from chairside.mirror import standby

    state = standby.load(data.resolve())
    if state is None:
        fail(f"{data} is not a mirror's folder (no mirror/state.json): start `chairside mirror serve` there first")
    emit(state.figures())


@app.command()
def promote(
    data: DataDir = Path("./chairside-mirror"),
    force: Annotated[bool, typer.Option("--force", help="Promote even though the primary answers: it is fenced "
                                        "first (it refuses every write from then on).")] = False,
) -> None:
    """Take over as the primary: the next epoch, the metadata made writable here; the running serve becomes cloud."""
    from chairside.mirror.promote import PromotionRefused
    from chairside.mirror.promote import promote as do_promote

    data = data.resolve()
    try:
        emit(do_promote(Settings.load(data_dir=data), force=force))
    except PromotionRefused as e:
        fail(str(e))


@app.command()
def rejoin(
    primary: Annotated[str, typer.Option("--primary", help="The new primary's URL (the promoted mirror).")],
    token: Annotated[str, typer.Option("--token", help="A mirror token made at the new primary by `chairside admin "
                                       "mirror create`.")],
    data: DataDir = Path("./chairside"),
    database_url: DatabaseUrl = None,
    pgdata: Annotated[Path | None, typer.Option("--pgdata", help="PostgreSQL: the old primary's data directory on "
                                                "this machine (rewound with pg_rewind, or copied afresh).")] = None,
    source_database_url: Annotated[str | None, typer.Option(
        "--source-database-url", help="PostgreSQL: the new primary's database (a replication-capable superuser's "
        "URL), the source of pg_rewind / pg_basebackup.")] = None,
    pg_bin: Annotated[Path | None, typer.Option("--pg-bin", help="PostgreSQL server binaries (default: the newest "
                                                "under /usr/lib/postgresql).")] = None,
) -> None:
    """Make the old primary's folder (stopped, fenced) the mirror of the new primary; then run `mirror serve` there.

    SQLite: its database is moved aside (kept) and the blobs kept. PostgreSQL: its server is rewound
    with pg_rewind (or a fresh pg_basebackup when rewinding is impossible) and started as the standby.
    """
    from chairside.mirror.rejoin import RejoinRefused
    from chairside.mirror.rejoin import rejoin as do_rejoin

    if not primary.startswith(("http://", "https://")):
        fail(f"--primary must be an http:// or https:// URL, not {primary!r}")
    if not token.startswith("cs_mr_"):
        fail("--token must be a mirror token (cs_mr_…) from `chairside admin mirror create` at the new primary")
    try:
        emit(do_rejoin(data, primary, token, database_url=database_url, pgdata=pgdata,
                       source_database_url=source_database_url, pg_bin=pg_bin))
    except RejoinRefused as e:
        fail(str(e))


# --- at the primary: `chairside admin mirror create|list|revoke|sync` -----------------------------------------

def _mirror_json(m: Mirror) -> dict[str, object]:
    return {"id": str(m.id), "name": m.name, "created_at": m.created_at, "revoked_at": m.revoked_at,
            "last_seen_at": m.last_seen_at}


def register_admin(admin: typer.Typer, ctx: Callable[[], Context]) -> None:
    """Add `mirror create|list|revoke` to `chairside admin`."""
    from chairside.mirror import service

    admin.add_typer(admin_app, name="mirror")

    @admin_app.command("create")
    def mirror_create(name: Annotated[str, typer.Option(help="A name operators recognise, e.g. 'Osaka DR'.")]) -> None:
        """Register a mirror site; prints its id and its token (shown once, stored hashed)."""
        try:
            mirror, token = service.create_mirror(ctx(), name)
        except Problem as exc:
            fail(exc.detail)
        emit({"id": str(mirror.id), "name": mirror.name, "token": token})

    @admin_app.command("list")
    def mirror_list() -> None:
        """The mirror sites, with when each last reached this cloud and how far behind it is."""
        figures = {f["id"]: f for f in service.mirrors_figures(ctx())}
        emit({"items": [_mirror_json(m) | {k: v for k, v in figures.get(str(m.id), {}).items()
                                           if k in ("lag_s", "blobs_behind")}
                        for m in service.list_mirrors(ctx())]})

    @admin_app.command("sync")
    def mirror_sync(
        on: Annotated[bool, typer.Option("--on/--off", help="--on: a write is acknowledged only once the mirror's "
                                         "standby has it (metadata RPO 0; writes wait while the standby is gone). "
                                         "--off: asynchronous (releases writes waiting now).")],
    ) -> None:
        """PostgreSQL: synchronous replication to the mirror's standby (application_name chairside_mirror)."""
        from chairside.db.engine import is_sqlite
        from chairside.mirror import postgres

        url = ctx().db.url
        if is_sqlite(url):
            fail("synchronous replication is a PostgreSQL setting: SQLite ships through Litestream, asynchronously "
                 "(pass --database-url)")
        emit(postgres.set_synchronous(url, on))

    @admin_app.command("revoke")
    def mirror_revoke(mirror: Annotated[str, typer.Argument(help="Mirror id.")]) -> None:
        """Revoke a mirror: its token stops working at once."""
        ident: uuid.UUID = parse_uuid(mirror, "mirror")
        try:
            emit(_mirror_json(service.revoke_mirror(ctx(), ident)))
        except LookupError:
            fail(f"no mirror {mirror}")
