from collections.abc import Iterator

import pytest

from chairside.context import Context
from tests.conftest import scratch_pg_database
from tests.seaweed import seaweed_s3

__all__ = ["new_database", "seaweed_s3"]

#: For the tests whose subject does not depend on the database engine (the snapshot is the only part that does).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def new_database(ctx: Context) -> Iterator[str | None]:
    """Where a restored site's metadata goes: SQLite in its folder, or a new, empty PostgreSQL database."""
    if ctx.settings.database_url.startswith("sqlite"):
        yield None
        return
    with scratch_pg_database() as url:
        yield url
