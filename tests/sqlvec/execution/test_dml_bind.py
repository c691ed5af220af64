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
