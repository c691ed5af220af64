"""A session on a fresh database for the execution tests, and helpers to run SQL in it."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError


@pytest.fixture
def session(tmp_path):
    db = Database.open(str(tmp_path / "data"))
    s = db.connect()
    yield s
    s.close()
    db.close()


def rows(session, sql: str) -> list[tuple]:
    return session.execute_one(sql).rows()


def error(session, sql: str) -> SqlVecError:
    """The error `sql` fails with (the test fails if it succeeds)."""
    with pytest.raises(SqlVecError) as caught:
        session.execute_one(sql)
    return caught.value
