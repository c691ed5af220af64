"""Fixtures shared by the engine's in-process tests."""

from __future__ import annotations

import pytest

from sqlvec.database import Database


@pytest.fixture(scope="module")
def schema_session(tmp_path_factory, request):
    """A session on a fresh database where the test module's `SCHEMA` statements have run:
    the module's tables, shared by its tests."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    db = Database.open(str(tmp_path_factory.mktemp(name) / "data"))
    s = db.connect()
    for statement in request.module.SCHEMA:
        s.execute_one(statement)
    yield s
    s.close()
    db.close()
