"""The expression compiler's chains (expressions/core.py): long left-deep AND / OR /
arithmetic / `||` chains compile and run as loops, with exactly the types, casts, NULLs and
errors of the nested form."""

from __future__ import annotations

import functools
import sys

import pyarrow as pa
import pytest
from sqlglot import exp

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.execution.context import ExecContext
from sqlvec.execution.expressions import CompileEnv, Compiler, Frame
from sqlvec.execution.values import INT4
from sqlvec.plan.bind import bind_expr
from sqlvec.sql.binder import Field, Scope


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("expressions") / "data"))
    s = db.connect()
    s.execute_one("CREATE TABLE t (a int, b text, c float8)")
    s.execute_one("INSERT INTO t VALUES (1, 'x', 0.5), (2, NULL, 1.5), (NULL, 'z', NULL)")
    yield s
    s.close()
    db.close()


def one(session, sql: str, params: list | None = None):
    return session.execute_one(sql, params).rows()


def chain(cls: type[exp.Binary], terms: list[exp.Expression]) -> exp.Expression:
    return functools.reduce(lambda left, right: cls(this=left, expression=right), terms)


def test_a_chain_keeps_the_left_to_right_meaning(session):
    assert one(session, "SELECT 1 + 2 * 3 - 4 / 2 + 10 % 3") == [(6,)]
    assert one(session, "SELECT 10 - 2 - 3") == [(5,)]  # (10 - 2) - 3, not 10 - (2 - 3)
    assert one(session, "SELECT 100 / 10 / 5") == [(2,)]
    # The intermediate int4 sum overflows, as in PostgreSQL, though the end result would fit.
    with pytest.raises(SqlVecError) as err:
        one(session, "SELECT 2147483647 + 1 - 1")
    assert (err.value.sqlstate, err.value.message) == ("22003", "integer out of range")
    assert one(session, "SELECT 2147483647 + 1::int8 - 1") == [(2147483647,)]


def test_types_widen_step_by_step(session):
    result = session.execute_one("SELECT 1 + 1.5 + 2::float8, 1 + 2 + 3::int8, 'a' || 1 || 2.5")
    assert result.rows() == [(4.5, 6, "a12.5")]
    assert [c.type.name for c in result.columns] == ["float8", "int8", "text"]


def test_parameters_take_their_type_from_the_chain(session):
    prepared = session.prepare("SELECT $1 + 1 + 2, 'p' || $2::text || 'q'")
    assert [t.name for t in prepared.param_types] == ["int4", "text"]
    assert session.run(prepared, [5, "-"]).rows() == [(8, "p-q")]


def test_three_valued_logic_across_a_chain(session):
    assert one(session, "SELECT NULL::bool OR false OR false, NULL::bool OR false OR true, "
                        "true AND NULL AND true, true AND NULL AND false") == \
        [(None, True, None, False)]
    assert one(session, "SELECT a FROM t WHERE a = 1 OR b = 'z' OR c > 1 ORDER BY a") == \
        [(1,), (2,), (None,)]
    assert one(session, "SELECT 'a' || NULL || 'b'") == [(None,)]


def test_chains_over_columns_subqueries_and_correlation(session):
    assert one(session, "SELECT a + a + a * 2, c + c + 1 FROM t ORDER BY a") == \
        [(4, 2.0), (8, 4.0), (None, None)]
    assert one(session, "SELECT (SELECT 1) + (SELECT 2) + 3") == [(6,)]
    assert one(session, "SELECT a, (SELECT count(*) FROM t u WHERE u.a = t.a OR u.a + 1 = t.a "
                        "OR u.b = t.b) FROM t ORDER BY a") == [(1, 1), (2, 2), (None, 1)]


def test_errors_of_a_step_are_those_of_the_nested_form(session):
    with pytest.raises(SqlVecError) as err:
        one(session, "SELECT 1 + 2 + 'x'::text")
    assert err.value.sqlstate == "42883"
    with pytest.raises(SqlVecError) as err:
        one(session, "SELECT true AND 1 = 1 AND 3")
    assert (err.value.sqlstate, err.value.message) == \
        ("42804", "argument of AND must be type boolean, not type integer")
    with pytest.raises(SqlVecError) as err:
        one(session, "SELECT a + 1 + 1 / (a - a) FROM t")
    assert err.value.sqlstate == "22012"


def test_a_long_chain_needs_no_recursion():
    """20,000-term chains compile and evaluate within CPython's default recursion limit."""
    n = 20_000
    table = pa.table({"a": pa.array([1, 2, 3, None], pa.int32())})
    scope = Scope([Field("a", None, INT4)])
    compiler = Compiler(scope, [INT4], CompileEnv())
    a = exp.column("a")
    ors = bind_expr(chain(exp.Or, [exp.EQ(this=a.copy(), expression=exp.Literal.number(v * 3))
                                   for v in range(n)]), scope)
    sums = bind_expr(chain(exp.Add, [a.copy() for _ in range(n)]), scope)
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        matches = compiler.compile(ors)(Frame(table, ExecContext()))
        total = compiler.compile(sums)(Frame(table, ExecContext()))
    finally:
        sys.setrecursionlimit(saved)
    assert matches.to_pylist() == [False, False, True, None]
    assert total.to_pylist() == [n, 2 * n, 3 * n, None]
