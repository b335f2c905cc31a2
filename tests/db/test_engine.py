"""The database handle: what `dispose()` promises, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from chairside.db.engine import Database


def _is_closed(dbapi_conn: Any) -> bool:
    if hasattr(dbapi_conn, "closed"):  # psycopg
        return bool(dbapi_conn.closed)
    try:  # sqlite3 has no flag: a closed connection refuses to work
        dbapi_conn.execute("SELECT 1")
    except Exception:
        return True
    return False


def test_a_connection_in_use_during_dispose_is_closed_when_it_comes_back(database_url: str) -> None:
    db = Database(database_url)
    with db.read() as s:
        in_use = s.connection().connection.dbapi_connection
        with db.read() as other:  # a second connection, back in the pool when dispose runs
            idle = other.connection().connection.dbapi_connection
        assert idle is not in_use
        db.dispose()  # a request still running while the server shuts down
        assert _is_closed(idle)
        assert not _is_closed(in_use)
        assert s.execute(text("SELECT 1")).scalar_one() == 1  # the request finishes normally
    assert _is_closed(in_use)  # not left open in the discarded pool until the garbage collector runs


def test_a_disposed_database_still_answers_if_used_again(database_url: str) -> None:
    db = Database(database_url)
    db.dispose()
    for _ in range(3):  # each use opens a fresh connection and closes it on return
        with db.read() as s:
            assert s.execute(text("SELECT 1")).scalar_one() == 1
    db.dispose()


def test_dispose_twice_is_harmless(database_url: str) -> None:
    db = Database(database_url)
    db.dispose()
    db.dispose()
