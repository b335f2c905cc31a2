from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from chairside.api.context import Context
from chairside.db.models import Base


def test_the_migrations_build_exactly_the_models_schema(ctx: Context) -> None:
    with ctx.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_every_model_table_exists_and_alembic_is_at_head(ctx: Context) -> None:
    names = set(inspect(ctx.db.engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"} == names
    with ctx.db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_sqlite_runs_in_wal_mode_with_full_sync(ctx: Context) -> None:
    if ctx.db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with ctx.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
