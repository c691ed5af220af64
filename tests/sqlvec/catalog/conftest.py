"""A database with the schema the catalog tests (and the captured client queries) describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlvec.database import Database

# The schema the captured client queries (fixtures/client_queries.json) were run against; the
# catalog benchmark builds the same one.
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "client_schema.json").read_text())


@pytest.fixture
def db(tmp_path):
    database = Database.open(str(tmp_path / "data"))
    yield database
    database.close()


@pytest.fixture
def session(db):
    s = db.connect()
    for statement in SCHEMA:
        s.execute_one(statement)
    yield s
    s.close()


def rows(session, sql: str, params: list | None = None) -> list[tuple]:
    return session.execute_one(sql, params).rows()
