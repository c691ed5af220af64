"""session/prepare.py: a prepared statement's parameters, counted and typed as PostgreSQL does."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError


@pytest.fixture
def session(tmp_path):
    database = Database.open(str(tmp_path / "db"))
    s = database.connect()
    s.execute_one("CREATE EXTENSION IF NOT EXISTS vector")
    s.execute_one("CREATE TABLE p (id int, name text, embedding vector(2))")
    yield s
    s.close()
    database.close()


@pytest.mark.parametrize("sql, types", [
    ("SELECT $1", ["text"]),
    ("SELECT $1, $2", ["text", "text"]),
    ("SELECT id FROM p WHERE id IN ($1)", ["int4"]),
    ("SELECT id FROM p WHERE id IN ($1, $2)", ["int4", "int4"]),
    ("SELECT id FROM p WHERE id = $2 AND name = $1", ["text", "int4"]),
    ("SELECT ARRAY[$1, $2]", ["text", "text"]),
    ("SELECT $1 FROM p WHERE id = $2", ["text", "int4"]),
    # Parentheses around a parameter do not hide it from the context that types it.
    ("SELECT id FROM p ORDER BY embedding <-> ($1) LIMIT 1", ["vector"]),
    ("SELECT id FROM p ORDER BY embedding <-> (($1)) LIMIT 1", ["vector"]),
    ("SELECT id FROM p WHERE id = ($1) AND (($2)) < id", ["int4", "int4"]),
    ("SELECT id FROM p WHERE id IN (($1))", ["int4"]),
    ("INSERT INTO p VALUES (($1), ($2), ($3))", ["int4", "text", "vector"]),
    ("UPDATE p SET embedding = ($1) WHERE id = ($2)", ["vector", "int4"]),
])
def test_every_parameter_counts_and_uninferred_ones_are_text(session, sql, types):
    assert [t.name for t in session.prepare(sql).param_types] == types


def test_a_parameter_number_skipped_has_no_type(session):
    with pytest.raises(SqlVecError) as caught:
        session.prepare("SELECT $2::int")
    assert caught.value.sqlstate == "42P18"
    assert str(caught.value) == "could not determine data type of parameter $1"
    assert [t.name for t in session.prepare("SELECT $2::int", [25]).param_types] == ["text", "int4"]


def test_uninferred_parameters_bind_and_run(session):
    session.execute_one("INSERT INTO p VALUES (1, 'a', '[1,2]')")
    assert session.run(session.prepare("SELECT $1"), ["x"]).rows() == [("x",)]
    query = session.prepare("SELECT name FROM p WHERE id IN ($1)")
    assert session.run(query, ["1"]).rows() == [("a",)]
    with pytest.raises(SqlVecError) as caught:
        session.run(query, ["a"])
    assert caught.value.sqlstate == "22P02"
