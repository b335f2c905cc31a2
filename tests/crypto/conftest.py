"""Encryption-at-rest fixtures: the shared `settings` fixture, with a master key outside the data folder.

Overriding `settings` here makes `ctx`, `server`, `tenant`, `api` … of tests/conftest.py run encrypted,
on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chairside.keys import MasterKey
from chairside.settings import Settings


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"  # beside the data folder, never in it
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def master_key(key_dir: Path) -> MasterKey:
    return MasterKey.create(key_dir / "master.key")


@pytest.fixture
def settings(tmp_path: Path, database_url: str, master_key: MasterKey) -> Settings:
    return Settings.load(environ={}, data_dir=tmp_path / "data", database_url=database_url,
                         master_key_file=master_key.path)
