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
    Setting("serve_chunk_bytes", 1 << 20, "Size of each read when streaming media bytes.", int),
    Setting("thumbnail_max_side", 480, "Longest side of generated thumbnails, in pixels.", int),
    Setting("search_limit", 50, "Most patients a search returns.", int),
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
    serve_chunk_bytes: int
    thumbnail_max_side: int
    search_limit: int

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
