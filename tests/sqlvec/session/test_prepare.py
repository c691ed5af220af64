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


@pytest.mark.parametrize("sql, constant", [
    ("SELECT 1", True),
    ("SELECT 1 AS a, 'x' AS b, NULL, -2.5, (3), true", True),
    ("select 1;", True),
    ("SELECT $1", False),  # a parameter
    ("SELECT 1::int", False),  # a cast (reg* casts read the catalog)
    ("SELECT now()", False),  # functions: the clock, random(), settings, the catalog
    ("SELECT random()", False),
    ("SELECT current_schema()", False),
    ("SELECT current_setting('search_path')", False),
    ("SELECT 1 / 0", False),  # an operator: may fail, evaluated on each run
    ("SELECT (SELECT 1)", False),
    ("SELECT 1 FROM p", False),
    ("SELECT 1 WHERE false", False),
    ("SELECT 1 LIMIT 0", False),
    ("SELECT DISTINCT 1", False),
    ("SELECT 1 ORDER BY 1", False),
    ("SELECT 1 UNION SELECT 2", False),
    ("VALUES (1)", False),
    ("WITH w AS (SELECT 1) SELECT 1", False),
])
def test_only_a_select_of_literals_is_constant(session, sql, constant):
    assert session.prepare(sql).constant is constant


def test_a_constant_query_runs_once_and_answers_the_same_every_time(session):
    prepared = session.prepare("SELECT 1 AS a, 'x' AS b")
    first = session.run(prepared, [])
    second = session.run(prepared, [])
    assert first.tag == second.tag == "SELECT 1"
    assert first.rows() == second.rows() == [(1, "x")]
    assert second.table is first.table  # kept on the plan, not computed again
    assert second.table.column_names == ["a", "b"]


def test_a_volatile_query_is_computed_on_every_run(session):
    prepared = session.prepare("SELECT random()")
    values = {session.run(prepared, []).rows()[0][0] for _ in range(5)}
    assert len(values) > 1


def test_a_constant_query_in_a_failed_block_is_refused(session):
    prepared = session.prepare("SELECT 1")
    session.execute_one("BEGIN")
    session.run(prepared, [])
    with pytest.raises(SqlVecError) as err:
        session.execute_one("SELECT 1 / 0")
    assert err.value.sqlstate == "22012"
    for run in (lambda: session.run(prepared, []), lambda: session.execute_one("SELECT 1")):
        with pytest.raises(SqlVecError) as err:
            run()
        assert err.value.sqlstate == "25P02"
    session.execute_one("ROLLBACK")
    assert session.run(prepared, []).rows() == [(1,)]


def test_a_constant_query_does_not_wait_for_another_blocks_schema_changes(session):
    """It reads nothing, so, as in PostgreSQL, it takes no lock: it runs while another
    transaction's DDL is open, where a read of a table waits (here: lock_timeout). (Planning
    reads the catalog: the statement is planned before.)"""
    prepared = session.prepare("SELECT 1")
    other = session.database.connect()
    other.execute_one("BEGIN")
    other.execute_one("CREATE TABLE q (a int)")
    try:
        session.execute_one("SET lock_timeout = '50ms'")
        assert session.run(prepared, []).rows() == [(1,)]
        assert session.execute_one("SELECT 1").rows() == [(1,)]
        with pytest.raises(SqlVecError) as err:
            session.execute_one("SELECT count(*) FROM p")
        assert err.value.sqlstate == "55P03"
    finally:
        other.execute_one("ROLLBACK")
        other.close()
    assert session.execute_one("SELECT count(*) FROM p").rows() == [(0,)]
