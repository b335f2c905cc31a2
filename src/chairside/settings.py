"""Every setting, declared once, as data.

`Settings.load()` is the one place that reads the environment: each setting
`name` is read from `CHAIRSIDE_<NAME>` unless a command-line flag overrides it.
`docs/settings.md` documents every entry here, and a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

GiB = 1 << 30


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    cast: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "CHAIRSIDE_" + self.name.upper()


def _percents(text: str) -> tuple[int, ...]:
    """"80,90,95,100" -> (80, 90, 95, 100): whole percentages, rising, each 1 to 1000."""
    try:
        values = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise ValueError(f"quota_notice_percents must be whole percentages like 80,90,95,100, not {text!r}") from None
    if not values or list(values) != sorted(set(values)) or not all(1 <= v <= 1000 for v in values):
        raise ValueError(f"quota_notice_percents must rise, without repeats, within 1..1000: {text!r}")
    return values


def _tls_mode(text: str) -> str:
    if text not in ("starttls", "tls", "none"):
        raise ValueError(f"smtp_tls must be starttls, tls or none, not {text!r}")
    return text


def _offload(text: str) -> str:
    if text not in ("none", "nginx"):
        raise ValueError(f"offload must be none or nginx, not {text!r}")
    return text


def _optional_path(text: str) -> Path | None:
    """A file path; empty means unset."""
    return Path(text) if text.strip() else None


def _optional(text: str) -> str | None:
    return text if text.strip() else None


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "./chairside-data", "Folder for the SQLite database, blobs and partial uploads.", Path),
    Setting("database_url", None, "SQLAlchemy URL; default: SQLite (WAL) at DATA_DIR/chairside.db. "
            "Use postgresql+psycopg://user@host/db for PostgreSQL."),
    Setting("blob_url", None, "Where media bytes live: a folder path (default DATA_DIR/blobs) or "
            "s3://bucket/prefix?endpoint_url=…"),
    Setting("max_upload_bytes", 100 * GiB, "Largest single upload accepted (Upload-Length).", int),
    Setting("upload_expiry_s", 24 * 3600,
            "An unfinished upload idle this long expires and its bytes are removed.", int),
    Setting("upload_sweep_interval_s", 600, "How often the server removes expired uploads.", int),
    Setting("upload_lock_wait_s", 5.0, "How long a PATCH waits for another PATCH of the same upload to end "
            "before answering 423.", float),
    Setting("upload_idle_timeout_s", 60.0, "A PATCH whose body sends no byte for this long is ended like a cut "
            "connection: the bytes that arrived are kept and the upload is free for the client's retry.", float),
    Setting("serve_chunk_bytes", 1 << 20, "Size of each read when streaming media bytes.", int),
    Setting("thumbnail_max_side", 480, "Longest side of generated thumbnails, in pixels.", int),
    Setting("search_limit", 50, "Most patients a search returns.", int),
    Setting("session_idle_s", 1800, "A viewer session idle this long ends, freeing the account for another device.",
            int),
    Setting("session_max_age_s", 7 * 24 * 3600, "A viewer session ends this long after sign-in, active or not.", int),
    Setting("enroll_code_ttl_s", 900, "How long a station enrollment code stays valid.", int),
    Setting("netcheck_code_ttl_s", 14 * 24 * 3600, "How long an onboarding line-check code stays valid.", int),
    Setting("netcheck_code_runs", 5, "Line-check runs one onboarding code allows (a re-check after a change).", int),
    Setting("netcheck_max_minutes", 30.0, "Longest line-check run the cloud accepts, in minutes.", float),
    Setting("signin_free_failures", 5, "Wrong passwords allowed per login before sign-in is slowed down.", int),
    Setting("signin_free_failures_per_address", 30, "Wrong passwords allowed per source address before it is "
            "slowed down.", int),
    Setting("signin_max_wait_s", 900, "The longest a login or address is made to wait after wrong passwords.", int),
    Setting("quota_notice_percents", "80,90,95,100", "Percentages of the plan whose crossing sends a notice.",
            _percents),
    Setting("quota_forecast_days", 30, "Days of recording history the 'plan full on' forecast is based on.", int),
    Setting("smtp_host", None, "SMTP server for notices by e-mail; unset: no e-mail (notices wait in the outbox)."),
    Setting("smtp_port", 587, "SMTP server port.", int),
    Setting("smtp_tls", "starttls", "SMTP transport security: starttls, tls (implicit, port 465) or none.", _tls_mode),
    Setting("smtp_from", "noreply@chairside.example", "Sender address of notice e-mails."),
    Setting("smtp_user", None, "SMTP login, if the server wants one."),
    Setting("smtp_password", None, "SMTP password, if the server wants one."),
    Setting("smtp_timeout_s", 30.0, "How long to wait for the SMTP server before trying again later.", float),
    Setting("mail_poll_interval_s", 5.0, "How often the server looks for e-mails to send.", float),
    Setting("job_lease_s", 300, "How long a worker holds a background job before another may take it over.", int),
    Setting("job_retry_base_s", 30.0, "Wait before the first retry of a failed job; doubles each time (6 h at most).",
            float),
    Setting("job_max_attempts", 12, "Tries of a background job before it is given up (kept, marked dead).", int),
    # --- encryption at rest and TLS (docs/security.md) ---
    Setting("master_key_file", None, "The master key that wraps the data keys (`chairside admin keys create --out "
            "FILE`); keep it outside the data folder. Unset: nothing is encrypted.", _optional_path),
    Setting("encrypt_at_rest", "true", "With a master key: encrypt new blobs (AES-256-GCM). false: new blobs are "
            "written in the clear, encrypted ones stay readable.", _flag),
    Setting("ca_bundle", None, "PEM file of CA certificates trusted for the servers this process calls (relay → "
            "cloud); unset: the system's roots.", _optional),
    # --- scale-out behind nginx (docs/operations.md) ---
    Setting("offload", "none", "Who sends media bytes after the app authorised a read: none (the app) or nginx "
            "(X-Accel-Redirect to the internal locations of `chairside deploy nginx-config`).", _offload),
    # --- the relay role (chairside relay serve) ---
    Setting("upstream_url", None, "Relay: the cloud's URL, e.g. https://cloud.chairside.example."),
    Setting("relay_token", None, "Relay: its token, from `chairside admin relay create` on the cloud."),
    Setting("relay_cache_bytes", 200 * GiB, "Relay: most bytes of media from the cloud kept in its cache (least "
            "recently used go first; media not yet confirmed by the cloud are never evicted).", int),
    Setting("relay_min_free_bytes", 5 * GiB, "Relay: below this much free disk it refuses new uploads (507) and "
            "trims its cache.", int),
    Setting("relay_bandwidth", "unlimited", "Relay: upload rate to the cloud, e.g. '10M' (Mbit/s) or a schedule "
            "'mon-fri 08:00-19:00=10M, *=unlimited'."),
    Setting("relay_upload_parallel", 2, "Relay: files sent to the cloud at once.", int),
    Setting("relay_upload_chunk_bytes", 64 << 20, "Relay: most bytes per upload request to the cloud (the cloud "
            "keeps what arrived, so a cut resends only the bytes in flight).", int),
    Setting("relay_prefetch", "thumbnails", "Relay: what it fetches from the cloud ahead of use: none, thumbnails "
            "or all (thumbnails and media).", str),
    Setting("relay_feed_wait_s", 25.0, "Relay: how long each long poll of the cloud's changes feed waits.", float),
    Setting("relay_offline_after_s", 60.0, "Relay: no contact with the cloud for this long shows it as offline.",
            float),
    Setting("relay_key_file", None, "Relay: its master key sealed by the release key the cloud keeps (`chairside "
            "relay seal-key`); default DATA_DIR/relay-key.sealed. When it exists the key is released at boot by the "
            "cloud, or by a station when the cloud is unreachable (docs/relay.md).", _optional_path),
    Setting("relay_unlock_wait_s", 0.0, "Relay: how long a relay that cannot reach the cloud at boot waits for a "
            "station to release its key before it gives up (0: until one does).", float),
    # --- hostile input: the price of a request (docs/security.md, "Hostile input") ---
    Setting("limit_request_line_bytes", 8192, "Longest request target (path and query) accepted; longer: 414.", int),
    Setting("limit_header_bytes", 16384, "Most bytes of request headers accepted; more: 431, connection closed.", int),
    Setting("limit_header_count", 100, "Most request headers accepted; more: 431.", int),
    Setting("limit_json_body_bytes", 64 << 10, "Largest body of an API request (other than uploads, drawings and "
            "exports); larger: 413 before it is read.", int),
    Setting("limit_drawing_body_bytes", 1 << 20, "Largest body of a drawing layer (annotations); larger: 413.", int),
    Setting("limit_drawing_points", 20_000, "Most points in all the strokes of one drawing layer; more: 422.", int),
    Setting("limit_export_body_bytes", 1 << 20, "Largest body of an export request (the list of items); larger: 413.",
            int),
    Setting("body_timeout_s", 30.0, "A request body (other than an upload) not all received within this long: 408.",
            float),
    Setting("max_photo_pixels", 50_000_000, "Largest photo accepted, in pixels (width × height, read from the "
            "header before decoding); larger: 422.", int),
    Setting("heavy_work_parallel", 2, "Media decodes (probe, thumbnails, display copies, drawing checks) run at "
            "once per process; more wait their turn.", int),
    Setting("trusted_proxies", "", "Addresses of proxies whose X-Forwarded-For is believed (comma-separated, e.g. "
            "127.0.0.1 for an nginx front on the same host); empty: none, the peer's address is the client's."),
    # --- backups (docs/backups.md) ---
    Setting("backup_keep_daily", 7, "Backups: daily generations kept (the newest of each day).", int),
    Setting("backup_keep_weekly", 4, "Backups: weekly generations kept (the newest of each ISO week).", int),
    Setting("backup_keep_monthly", 12, "Backups: monthly generations kept (the newest of each month); at least "
            "3 generations are always kept.", int),
    Setting("backup_lock_days", 35, "Backups: days each object stays under S3 Object Lock (COMPLIANCE) on a bucket "
            "created with Object Lock; reused blobs have their lock extended by each generation.", int),
    Setting("backup_max_age_h", 26.0, "Backups: `backup check` raises a notice when the newest generation is older "
            "than this (a missed backup).", float),
    Setting("backup_notify_to", None, "Backups: operator e-mail address(es), comma-separated, for failed or missed "
            "backups (sent through smtp_host); notices are also kept in DATA_DIR/backup/notices.jsonl."),
    # --- share links for patients (sharing/, docs/viewer.md) ---
    Setting("share_link_ttl_s", 7 * 24 * 3600, "How long a share link for a patient stays open when its maker "
            "names no lifetime.", int),
    Setting("share_link_max_ttl_s", 30 * 24 * 3600, "The longest lifetime a share link may be given.", int),
    Setting("share_base_url", None, "The address patients open share links at, e.g. https://cloud.chairside.example; "
            "unset: the address the request came to.", _optional),
)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    blob_url: str
    max_upload_bytes: int
    upload_expiry_s: int
    upload_sweep_interval_s: int
    upload_lock_wait_s: float
    upload_idle_timeout_s: float
    serve_chunk_bytes: int
    thumbnail_max_side: int
    search_limit: int
    session_idle_s: int
    session_max_age_s: int
    enroll_code_ttl_s: int
    netcheck_code_ttl_s: int
    netcheck_code_runs: int
    netcheck_max_minutes: float
    signin_free_failures: int
    signin_free_failures_per_address: int
    signin_max_wait_s: int
    quota_notice_percents: tuple[int, ...]
    quota_forecast_days: int
    smtp_host: str | None
    smtp_port: int
    smtp_tls: str
    smtp_from: str
    smtp_user: str | None
    smtp_password: str | None
    smtp_timeout_s: float
    mail_poll_interval_s: float
    job_lease_s: int
    job_retry_base_s: float
    job_max_attempts: int
    master_key_file: Path | None
    encrypt_at_rest: bool
    ca_bundle: str | None
    offload: str
    upstream_url: str | None
    relay_token: str | None
    relay_cache_bytes: int
    relay_min_free_bytes: int
    relay_bandwidth: str
    relay_upload_parallel: int
    relay_upload_chunk_bytes: int
    relay_prefetch: str
    relay_feed_wait_s: float
    relay_offline_after_s: float
    relay_key_file: Path | None
    relay_unlock_wait_s: float
    limit_request_line_bytes: int
    limit_header_bytes: int
    limit_header_count: int
    limit_json_body_bytes: int
    limit_drawing_body_bytes: int
    limit_drawing_points: int
    limit_export_body_bytes: int
    body_timeout_s: float
    max_photo_pixels: int
    heavy_work_parallel: int
    trusted_proxies: str
    backup_keep_daily: int
    backup_keep_weekly: int
    backup_keep_monthly: int
    backup_lock_days: int
    backup_max_age_h: float
    backup_notify_to: str | None
    share_link_ttl_s: int
    share_link_max_ttl_s: int
    share_base_url: str | None

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the environment, then explicit overrides (CLI flags); None means unset."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for s in SETTINGS:
            value = overrides.get(s.name)
            if value is None and s.env in env:
                value = s.cast(env[s.env])
            if value is None and s.default is not None:
                value = s.cast(s.default) if isinstance(s.default, str) else s.default
            values[s.name] = value
        data_dir = Path(values["data_dir"]).resolve()
        values["data_dir"] = data_dir
        if not values["database_url"]:
            values["database_url"] = f"sqlite:///{data_dir / 'chairside.db'}"
        if not values["blob_url"]:
            values["blob_url"] = str(data_dir / "blobs")
        return cls(**values)

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"


assert [f.name for f in fields(Settings)] == [s.name for s in SETTINGS], "declare each setting once"
