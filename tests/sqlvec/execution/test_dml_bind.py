"""A write's own expressions (execution/dml.py) are bound before they are compiled, as a
plan's are (plan/bind.py): SET, RETURNING, DEFAULT, ON CONFLICT DO UPDATE's SET and WHERE
(with EXCLUDED), UPDATE ... FROM and DELETE ... USING. Their compiler reads the positions the
binder gave and refuses a column reference without one; the errors for names stay the
planner's, with their SQLSTATEs and positions."""

from __future__ import annotations

import pytest
from sqlglot import exp

from sqlvec.errors import SqlVecError
from sqlvec.execution.builder import Builder
from sqlvec.execution.dml import bound_write, write_compiler
from sqlvec.execution.expressions import CompileEnv
from sqlvec.plan import nodes as n
from sqlvec.plan.planner import PlanContext, Planner
from sqlvec.sql.binder import ColumnRef, Field, Scope, bound_ref, is_column_reference
from sqlvec.sql.dialect import parse_one
from sqlvec.types import SqlType

SCHEMA = [
    "CREATE TABLE t (id int PRIMARY KEY, k int DEFAULT 7, s text DEFAULT 'd' || 'x')",
    "CREATE TABLE u (id int, w int)",
    "INSERT INTO u VALUES (1, 10), (2, 20), (2, 21)",
]

# Every write form with an expression of its own, run in this order on one table (the
# rows a statement returns, sorted).
WRITES = [
    ("INSERT INTO t VALUES (1, DEFAULT, 'a'), (2, 2, DEFAULT) RETURNING *",
     [(1, 7, "a"), (2, 2, "dx")]),
    ("INSERT INTO t (id) SELECT id + 10 FROM u WHERE w > 20 RETURNING id, k * 2, s",
     [(12, 14, "dx")]),
    ("INSERT INTO t VALUES (1, 5, 'z') ON CONFLICT (id) DO UPDATE "
     "SET k = excluded.k + t.k, s = t.s || excluded.s WHERE t.k < 10 RETURNING t.id, k, s",
     [(1, 12, "az")]),
    ("INSERT INTO t AS x VALUES (1, 5, 'z') ON CONFLICT (id) DO UPDATE "
     "SET k = x.k + 1 WHERE x.k > 100 RETURNING x.*", []),
    ("UPDATE t SET k = k + (SELECT max(w) FROM u WHERE u.id = t.id), s = upper(s) "
     "WHERE id < 10 RETURNING id, k, s", [(1, 22, "AZ"), (2, 23, "DX")]),
    ("UPDATE t SET k = u.w, s = DEFAULT FROM u WHERE u.id = t.id AND u.w = 10 "
     "RETURNING t.id, t.k, t.s", [(1, 10, "dx")]),
    ("UPDATE t AS x SET k = DEFAULT WHERE x.id = 12 RETURNING x.k + x.id", [(19,)]),
    ("DELETE FROM t USING u WHERE u.id = t.id AND u.w = 21 RETURNING t.id, t.k",
     [(2, 23)]),
    ("DELETE FROM t WHERE id = 12 RETURNING *, (SELECT count(*) FROM u WHERE u.id > t.id - 11)",
     [(12, 7, "dx", 2)]),
    ("SELECT * FROM t ORDER BY id", [(1, 10, "dx")]),
]


@pytest.fixture(scope="module")
def session(schema_session):
    return schema_session


def test_every_write_form_answers_from_its_bound_expressions(session):
    for sql, expected in WRITES:
        assert sorted(session.execute_one(sql).rows()) == expected, sql


# Positions as PostgreSQL 16 reports them.
@pytest.mark.parametrize(("sql", "sqlstate", "position"), [
    ("UPDATE t SET k = nope + 1", "42703", 18),
    ("UPDATE t SET k = 1 RETURNING id, nope", "42703", 34),
    ("UPDATE t SET k = id FROM u WHERE u.w = 1", "42702", 18),
    ("UPDATE t SET k = 1 RETURNING v.id", "42P01", 30),
    ("INSERT INTO t VALUES (3) ON CONFLICT (id) DO UPDATE SET k = excluded.nope", "42703", 61),
    ("INSERT INTO t VALUES (3) ON CONFLICT (id) DO UPDATE SET k = 1 WHERE nope", "42703", 69),
    ("INSERT INTO t VALUES (nope)", "42703", 23),
    ("DELETE FROM t RETURNING id + nope", "42703", 30),
    ("INSERT INTO t VALUES (4) RETURNING ctid", "0A000", None),
])
def test_names_in_write_expressions_fail_as_before(session, sql, sqlstate, position):
    with pytest.raises(SqlVecError) as error:
        session.execute_one(sql)
    assert (error.value.sqlstate, error.value.position) == (sqlstate, position)


def _planner(session) -> Planner:
    return Planner(PlanContext(session.catalog, ["public"],
                               virtual=session.database.virtual_fields))


def _builder(session) -> Builder:
    env = CompileEnv(functions=session.database.functions)
    builder = Builder(env)
    env.build_subplan = builder.subplan
    return builder


# The rows ON CONFLICT DO UPDATE reads: the existing row, its row id, the proposed row.
ROWS = Scope([Field("id", "t", SqlType("int4")), Field("k", "t", SqlType("int4")),
              Field("k", "excluded", SqlType("int4"))])


def test_a_write_expression_is_bound_against_the_rows_it_reads(session):
    e = parse_one("SELECT excluded.k + t.k + (SELECT max(w) FROM u WHERE u.id = t.id)")
    bound = bound_write(_planner(session), e.expressions[0], ROWS)
    refs = {c.sql(): bound_ref(c) for c in bound.find_all(exp.Column)}
    assert (refs["excluded.k"].level, refs["excluded.k"].index) == (0, 2)
    assert (refs["t.k"].level, refs["t.k"].index) == (0, 1)
    (sub,) = bound.find_all(n.SubPlan)  # its plan is bound, the write's row one level up
    inner = []
    stack = [sub.args["plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        for value in vars(node).values():
            if isinstance(value, exp.Expression):
                inner += [c for c in value.walk() if is_column_reference(c)]
    assert inner and all(isinstance(bound_ref(c), ColumnRef) for c in inner)
    assert {(c.sql(), bound_ref(c).level) for c in inner} >= {("t.id", 1), ("u.id", 0)}


def test_an_unbound_column_in_a_write_expression_fails(session):
    c = write_compiler(ROWS, [f.type for f in ROWS.fields], _builder(session))
    with pytest.raises(SqlVecError) as error:
        c.compile(parse_one("SELECT t.k + 1").expressions[0])
    assert error.value.sqlstate == "XX000"
    assert "was not bound" in error.value.message
    bound = bound_write(_planner(session), parse_one("SELECT t.k + 1").expressions[0], ROWS)
    assert c.compile(bound).type == SqlType("int4")  # the same expression, bound: compiles


# RETURNING of UPDATE ... FROM and DELETE ... USING reads the joined tables' columns too, as
# PostgreSQL 16 answers (the rows sorted; `*` is the target's columns, then the others').
FROM_WRITES = [
    ("UPDATE f SET v = g.v + 1 FROM g WHERE f.id = g.id RETURNING f.id, f.v, g.v, g.*",
     ["id", "v", "v", "id", "v", "note"], [(1, 101, 100, 1, 100, "x"), (2, 201, 200, 2, 200, "y")]),
    ("UPDATE f AS a SET v = 0 FROM g AS z, (SELECT 5 AS five) q WHERE a.id = z.id RETURNING *",
     ["id", "v", "note", "id", "v", "note", "five"],
     [(1, 0, "a", 1, 100, "x", 5), (2, 0, "b", 2, 200, "y", 5)]),
    # the joins written after a FROM item join it (USING merges its column)
    ("UPDATE f SET v = 3 FROM g JOIN (VALUES (1, 'p')) AS w(id, c) USING (id) "
     "WHERE f.id = g.id RETURNING *, w.id, g.ctid IS NOT NULL",
     ["id", "v", "note", "id", "v", "note", "c", "id", "?column?"],
     [(1, 3, "a", 1, 100, "x", "p", 1, True)]),
    ("DELETE FROM f USING g WHERE f.id = g.id AND g.id = 1 RETURNING f.*, upper(g.note) AS n",
     ["id", "v", "note", "n"], [(1, 3, "a", "X")]),
    ("DELETE FROM f USING g, (VALUES (2)) AS w(id) WHERE f.id = g.id AND w.id = g.id "
     "RETURNING *", ["id", "v", "note", "id", "v", "note", "id"],
     [(2, 0, "b", 2, 200, "y", 2)]),
]


def test_returning_reads_the_tables_update_from_and_delete_using_join(session):
    session.execute_one("CREATE TABLE f (id int PRIMARY KEY, v int, note text)")
    session.execute_one("CREATE TABLE g (id int, v int, note text)")
    session.execute_one("INSERT INTO f VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'c')")
    session.execute_one("INSERT INTO g VALUES (1, 100, 'x'), (2, 200, 'y')")
    for sql, names, expected in FROM_WRITES:
        result = session.execute_one(sql)
        assert ([c.name for c in result.columns], sorted(result.rows())) == (names, expected), sql
    # RowDescription names the column each bare reference reads, as PostgreSQL's does.
    result = session.execute_one("UPDATE f SET v = 1 FROM g RETURNING f.v, g.note, g.v + 1")
    oids = {name: session.execute_one(f"SELECT '{name}'::regclass::oid").rows()[0][0]
            for name in ("f", "g")}
    assert [(c.table_oid, c.attnum) for c in result.columns] == \
        [(oids["f"], 2), (oids["g"], 3), (0, 0)]


# Positions and messages as PostgreSQL 16 reports them.
@pytest.mark.parametrize(("sql", "sqlstate", "message", "position"), [
    ("UPDATE t SET k = 1 FROM u WHERE u.id = t.id RETURNING w, id", "42702",
     'column reference "id" is ambiguous', 58),
    ("UPDATE t SET k = 1 FROM u RETURNING u.nope", "42703", "column u.nope does not exist", 37),
    ("UPDATE t SET k = 1 FROM u RETURNING x.*", "42P01",
     'missing FROM-clause entry for table "x"', 37),
    ("DELETE FROM t USING u RETURNING ctid", "42702", 'column reference "ctid" is ambiguous',
     33),
    ("DELETE FROM t USING u AS z RETURNING u.w", "42P01", None, 38),
    ("UPDATE t SET k = 1 FROM u RETURNING t.xmin", "0A000", None, None),
])
def test_names_in_returning_over_joined_tables_fail_as_postgres(session, sql, sqlstate, message,
                                                                position):
    with pytest.raises(SqlVecError) as error:
        session.execute_one(sql)
    assert (error.value.sqlstate, error.value.position) == (sqlstate, position)
    if message is not None:
        assert error.value.message == message
