"""Automatic failover of a two-site PostgreSQL deployment: Patroni with etcd as the witness.

`chairside deploy patroni-config` prints one Patroni node's configuration (one per site); Patroni
then runs that site's PostgreSQL: the first node bootstraps the cluster, the other clones it and
streams from it. etcd (three members in production: one per site and one at a third place) holds
the leader lock. When the primary site is lost its lock expires (``ttl``) and the other node
promotes its standby, but only if it is at most ``maximum_lag_on_failover`` (1 MiB) behind the
last position the old leader published: a standby further behind is never promoted (the cluster
then waits for the old primary or for an operator; docs/disaster-recovery.md).

The app site follows the database: Patroni runs ``chairside deploy patroni-callback --data APPDIR``
on ``on_role_change`` (and ``on_start``, in case Patroni itself restarted between the two) with
the action, the new role and the cluster's name appended. On ``primary`` at a mirror's folder it
takes the app's next epoch exactly as ``chairside mirror promote`` does (`promote.promote`: the
epoch row, the marker that turns the running ``mirror serve`` into the cloud); the database is
already promoted by Patroni, so the callback only waits for PostgreSQL to leave recovery and never
promotes it itself. If the old primary's app still answers it is fenced first (``--force``
semantics: its compare-and-set). If that app cannot record the fence (its database is down, or
Patroni has already made it a read-only replica of the new leader) the epoch is taken here all the
same: Patroni's leader lock in etcd, held by a quorum, already decided which database is the
primary, and the promoted site keeps telling the old one about its epoch every few seconds.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from chairside.mirror.standby import StandbyState

MAX_LAG_BYTES = 1048576  # never promote a standby more than 1 MiB behind
MIN_TTL = 20  # Patroni raises a smaller ttl to 20 s (loop_wait >= 1 s, retry_timeout >= 3 s): say so instead
PRIMARY_ROLES = ("primary", "master")  # Patroni 3+ says primary; older versions master
RECOVERY_WAIT_S = 60.0
CALLBACK_LOG = "patroni-callback.log"

__all__ = ["MAX_LAG_BYTES", "PatroniOptions", "follow_database", "render", "to_yaml"]


@dataclass(frozen=True)
class PatroniOptions:
    name: str  # this node's member name (one per site), e.g. "osaka"
    data_dir: Path  # the PostgreSQL data directory Patroni manages (made by initdb or a base backup)
    bin_dir: Path  # PostgreSQL's server binaries, e.g. /usr/lib/postgresql/15/bin
    listen: str  # PostgreSQL's HOST:PORT
    restapi: str  # Patroni's REST API HOST:PORT (health checks, patronictl)
    etcd: Sequence[str]  # etcd members' client URLs, http[s]://HOST:PORT
    app_data: Path  # the Chairside folder of this site's app (`cloud serve` / `mirror serve --data`)
    scope: str = "chairside"
    connect_address: str | None = None  # how the other site reaches this PostgreSQL (default: listen)
    restapi_connect_address: str | None = None
    app_url: str | None = None  # this site's public URL, named to the old primary when it is fenced
    chairside: str | None = None  # the `chairside` command the callback runs (default: this one)
    synchronous: bool = False  # Patroni's synchronous_mode: only a synchronous standby may be promoted
    synchronous_strict: bool = False  # and never fall back to asynchronous when no standby is there
    ttl: int = MIN_TTL  # leader lock's lifetime (s): the main part of the failover time
    loop_wait: int = 2
    retry_timeout: int = 5
    primary_start_timeout: int = 10  # a crashed primary PostgreSQL gets this long to restart before failover
    superuser: str = "postgres"  # passwords: PATRONI_SUPERUSER_PASSWORD / PATRONI_REPLICATION_PASSWORD
    replication_user: str = "replicator"
    auth_method: str = "scram-sha-256"  # pg_hba.conf's method for the addresses below ("trust": tests only)
    allow: Sequence[str] = field(default_factory=tuple)  # client networks (CIDR) of the apps and the other site
    socket_dir: str = "/var/run/postgresql"
    watchdog: str = "automatic"  # off | automatic | required (Linux softdog: a hung node cannot keep writing)
    max_lag: int = MAX_LAG_BYTES


def _host_port(value: str, what: str) -> tuple[str, int]:
    parts = urlsplit(f"//{value}")
    if not parts.hostname or parts.port is None or parts.path or parts.query:
        raise ValueError(f"{what} is HOST:PORT, not {value!r}")
    return parts.hostname, parts.port


def _etcd_hosts(urls: Sequence[str]) -> tuple[str, list[str]]:
    if not urls:
        raise ValueError("at least one etcd member's URL is needed (three in production: one at a third place)")
    schemes, hosts = set(), []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"an etcd member is http[s]://HOST:PORT, not {url!r}")
        schemes.add(parts.scheme)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        hosts.append(f"{host}:{parts.port or 2379}")
    if len(schemes) > 1:
        raise ValueError("the etcd members must all use http or all https")
    return schemes.pop(), hosts


def default_chairside() -> str:
    """This installation's `chairside` command (the callback runs it as Patroni's user)."""
    beside = Path(sys.executable).parent / "chairside"
    return str(beside) if beside.exists() else "chairside"


def callback_command(options: PatroniOptions) -> str:
    words = [options.chairside or default_chairside(), "deploy", "patroni-callback",
             "--data", str(options.app_data.resolve())]
    if options.app_url:
        words += ["--app-url", options.app_url]
    return shlex.join(words)


def config(options: PatroniOptions) -> dict[str, Any]:
    """Patroni's configuration for one node, as data (`render` prints it as YAML)."""
    if not options.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a member name is letters, digits, - and _, not {options.name!r}")
    if options.ttl < MIN_TTL or options.loop_wait < 1 or options.retry_timeout < 3:
        raise ValueError(f"Patroni's minimums: ttl {MIN_TTL} s, loop_wait 1 s, retry_timeout 3 s (it would raise "
                         "smaller values silently)")
    if options.loop_wait + 2 * options.retry_timeout > options.ttl:
        raise ValueError("ttl must be at least loop_wait + 2 × retry_timeout (Patroni's rule)")
    if options.watchdog not in ("off", "automatic", "required"):
        raise ValueError(f"watchdog is off, automatic or required, not {options.watchdog!r}")
    if options.synchronous_strict and not options.synchronous:
        raise ValueError("--synchronous-strict needs --synchronous")
    host, port = _host_port(options.listen, "--listen")
    connect = options.connect_address or f"{host}:{port}"
    _host_port(connect, "--connect-address")
    _host_port(options.restapi, "--restapi")
    protocol, etcd_hosts = _etcd_hosts(options.etcd)
    networks = list(dict.fromkeys([*options.allow, "127.0.0.1/32"]))
    method = options.auth_method
    hba = ["local all all peer" if method != "trust" else "local all all trust"]
    hba += [f"host replication {options.replication_user} {net} {method}" for net in networks]
    hba += [f"host all all {net} {method}" for net in networks]
    dcs: dict[str, Any] = {
        "ttl": options.ttl, "loop_wait": options.loop_wait, "retry_timeout": options.retry_timeout,
        "maximum_lag_on_failover": options.max_lag,
        "primary_start_timeout": options.primary_start_timeout,
        "synchronous_mode": options.synchronous,
        "postgresql": {
            "use_pg_rewind": True,  # the old primary comes back as a replica of the new one, rewound
            "use_slots": True,  # the primary keeps the WAL its standby has not received yet
            "parameters": {
                "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on", "max_wal_senders": 10,
                "max_replication_slots": 10, "wal_keep_size": "256MB", "synchronous_commit": "on",
            },
        },
    }
    if options.synchronous_strict:
        dcs["synchronous_mode_strict"] = True
    callback = callback_command(options)
    return {
        "scope": options.scope,
        "name": options.name,
        "restapi": {"listen": options.restapi, "connect_address": options.restapi_connect_address or options.restapi},
        "etcd3": {"protocol": protocol, "hosts": etcd_hosts},
        "bootstrap": {
            "dcs": dcs,
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"{host}:{port}",
            "connect_address": connect,
            "data_dir": str(options.data_dir),
            "pgpass": str(options.data_dir.parent / f".pgpass-{options.name}"),  # one per node, outside the data
            "bin_dir": str(options.bin_dir),
            "authentication": {
                "superuser": {"username": options.superuser},
                "replication": {"username": options.replication_user},
                "rewind": {"username": options.superuser},
            },
            "parameters": {"unix_socket_directories": options.socket_dir},
            "pg_hba": hba,
            "basebackup": [{"checkpoint": "fast"}],  # a new replica starts now, not after a spread checkpoint
            "callbacks": {"on_role_change": callback, "on_start": callback},
        },
        "watchdog": {"mode": options.watchdog},
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a double-quoted YAML scalar
    raise TypeError(f"not a YAML scalar here: {value!r}")


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for the configuration's shapes (mappings, lists, strings, numbers, booleans)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            elif isinstance(item, Mapping | list):
                lines.append(f"{pad}{key}: {'{}' if isinstance(item, Mapping) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                inner = to_yaml(item, indent + 1).splitlines()
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        raise TypeError("to_yaml writes a mapping or a list")
    return "\n".join(lines)


def render(options: PatroniOptions) -> str:
    head = ("# Made by `chairside deploy patroni-config`; run as PostgreSQL's user: patroni THIS_FILE\n"
            "# Passwords come from the environment: PATRONI_SUPERUSER_PASSWORD, PATRONI_REPLICATION_PASSWORD.\n"
            "# bootstrap.dcs is read once, when the cluster is made; change it later with `patronictl edit-config`.\n")
    return head + to_yaml(config(options)) + "\n"


# --- the callback: the app site follows the database's promotion ----------------------------------------------

def _log(app_data: Path, record: dict[str, Any]) -> None:
    record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    try:
        with open(app_data / CALLBACK_LOG, "a") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    except OSError:
        pass


def wait_out_of_recovery(database_url: str, timeout: float = RECOVERY_WAIT_S) -> float:
    """Wait until Patroni's promotion of this site's PostgreSQL has finished; answers the seconds waited."""
    from sqlalchemy import create_engine, text

    started = time.monotonic()
    last: Exception | None = None
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        while True:
            try:
                with engine.connect() as conn:
                    if not conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
                        return round(time.monotonic() - started, 3)
            except Exception as exc:  # the server restarts during some promotions; try again
                last = exc
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"PostgreSQL was still in recovery after {timeout:.0f} s ({last!r})")
            time.sleep(0.1)
    finally:
        engine.dispose()


def follow_database(app_data: Path, action: str, role: str, scope: str = "",
                    app_url: str | None = None) -> dict[str, Any]:
    """Patroni's callback: when this site's database became the primary, this site's app becomes the cloud."""
    from chairside.mirror import standby

    app_data = app_data.resolve()
    out: dict[str, Any] = {"action": action, "role": role, "scope": scope}
    if action not in ("on_role_change", "on_start") or role not in PRIMARY_ROLES:
        return _done(app_data, out | {"done": "nothing", "why": "this site's database is not the primary"})
    state = standby.load(app_data)
    if state is None:
        return _done(app_data, out | {"done": "nothing", "why": "a cloud's folder (not a mirror): it is the primary"})
    if state.role == "cloud":
        return _done(app_data, out | {"done": "nothing", "why": "already promoted", "epoch": state.epoch})
    if not state.database_url or state.database_url.startswith("sqlite"):
        return _done(app_data, out | {"done": "refused", "why": "the mirror does not follow a PostgreSQL standby "
                                      "(mirror serve --database-url): Patroni cannot promote it"}, failed=True)
    try:
        return _promote(app_data, state, out, app_url)
    except Exception as exc:
        _done(app_data, out | {"done": "failed", "error": repr(exc)}, failed=True)
        raise


def _promote(app_data: Path, state: StandbyState, out: dict[str, Any], app_url: str | None) -> dict[str, Any]:
    from chairside.mirror import promote, standby
    from chairside.settings import Settings

    assert state.database_url is not None
    out["waited_recovery_s"] = wait_out_of_recovery(state.database_url)
    settings = Settings.load(data_dir=app_data, database_url=state.database_url)
    old = promote.probe(state)
    force = old.alive and not old.fenced
    out["old_primary_answered"] = old.alive
    try:
        result = promote.promote(settings, force=force, self_url=app_url)
    except promote.PromotionRefused as exc:
        current = standby.load(app_data)
        if current is not None and current.role == "cloud":  # a second callback (on_start) got there first
            return _done(app_data, out | {"done": "nothing", "why": "already promoted", "epoch": current.epoch})
        if not force:
            return _done(app_data, out | {"done": "refused", "why": str(exc)}, failed=True)
        # The old app answered but could not record the fence (its database is gone or now a read-only replica):
        # the leader lock decided. Take the epoch here; the promoted site goes on telling the old one.
        out["fence_refused"] = str(exc)
        result = _take_epoch(app_data, state, max(state.epoch, old.epoch) + 1)
    return _done(app_data, out | {"done": "promoted"} | {k: v for k, v in result.items() if k != "role"})


def _take_epoch(app_data: Path, state: StandbyState, at_least: int) -> dict[str, Any]:
    """Steps 3 and 4 of `mirror promote` (the database is already writable): the next epoch, then the marker."""
    from chairside.context import build_context
    from chairside.mirror import service, standby
    from chairside.settings import Settings

    assert state.database_url is not None
    with standby.exclusive(app_data), standby.exclusive(app_data, "metadata.lock"):
        ctx = build_context(Settings.load(data_dir=app_data, database_url=state.database_url), role="cloud")
        try:
            epoch = service.take_epoch(ctx, at_least, uuid.UUID(state.mirror_id) if state.mirror_id else None)
        finally:
            ctx.db.dispose()
        standby.mark_promoted(app_data, epoch)
    return {"role": "cloud", "epoch": epoch, "primary_was_alive": True}


def _done(app_data: Path, out: dict[str, Any], failed: bool = False) -> dict[str, Any]:
    out["ok"] = not failed
    _log(app_data, out)
    return out
