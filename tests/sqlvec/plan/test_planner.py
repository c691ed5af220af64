"""The planner's rewrites: WHERE conjuncts pushed into joins, correlated subqueries in keyed
(decorrelated) form, and the cursor positions of name errors.

Each decorrelated query is checked against the same query with its correlation spelled so
that it cannot be decorrelated (`(i.k >= o.k AND i.k <= o.k)` instead of `i.k = o.k`), which
runs the subquery once per distinct outer value: the two strategies must agree row for row,
NULLs, duplicates and empty groups included."""

from __future__ import annotations

import re

import pytest
from sqlglot import exp
from sqlglot.generator import Generator
from sqlglot.parser import Parser

from sqlvec.catalog.catalog import Catalog
from sqlvec.errors import SqlVecError
from sqlvec.plan import nodes as n
from sqlvec.plan.planner import PlanContext, Planner
from sqlvec.sql.dialect import parse_one
from tests.sqlvec.plan.conftest import nodes_of

SCHEMA = [
    "CREATE TABLE o (id int, k int, flag bool, name text, big bigint)",
    "CREATE TABLE i (k int, v int, s text, kn numeric)",
    "INSERT INTO o VALUES (1, 1, true, 'a', 1), (2, 2, false, 'b', 2), (3, 3, true, 'c', 3), "
    "(4, NULL, true, 'a', NULL), (5, 1, NULL, 'z', 1), (6, 9, true, NULL, 9)",
    "INSERT INTO i VALUES (1, 10, 'a', 1), (1, 11, 'b', 1), (2, 20, 'b', 2), (2, NULL, 'a', 2), "
    "(3, 3, 'c', 3), (NULL, 99, 'a', NULL), (7, 70, 'z', 7)",
]


@pytest.fixture(scope="module")
def session(schema_session):
    return schema_session


def rows(session, sql: str) -> list[tuple]:
    return session.execute_one(sql).rows()


def plan_of(session, sql: str) -> n.PlanNode:
    ctx = PlanContext(session.catalog, ["public"], virtual=session.database.virtual_fields)
    return Planner(ctx).plan_query(parse_one(sql))


def subplans(plan: n.PlanNode) -> list[n.SubPlan]:
    found, stack = [], [plan]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        for value in vars(node).values():
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if isinstance(v, exp.Expression):
                    found += list(v.find_all(n.SubPlan))
    return found


def per_row(sql: str) -> str:
    """The same query with each correlation `i.x = o.y` in a form that is not decorrelated."""
    sql = re.sub(r"\b(i2?\.\w+) = (o\.\w+)", r"(\1 >= \2 AND \1 <= \2)", sql)
    return re.sub(r"\b(o\.\w+) = (i2?\.\w+)", r"(\2 >= \1 AND \2 <= \1)", sql)


DECORRELATED = [
    # scalar, one value per key (o.k = 9 and NULL have none)
    "SELECT id, (SELECT i.v FROM i WHERE i.k = o.k AND i.s = 'a') FROM o ORDER BY id",
    # aggregates: count(*) over no rows is 0, sum is NULL, coalesce sees the empty value
    "SELECT id, (SELECT count(*) FROM i WHERE i.k = o.k) FROM o ORDER BY id",
    "SELECT id, (SELECT sum(i.v) FROM i WHERE i.k = o.k) FROM o ORDER BY id",
    "SELECT id, (SELECT coalesce(max(i.v), -1) + count(*) FROM i WHERE i.k = o.k) FROM o ORDER BY id",
    "SELECT id, (SELECT count(i.v) FROM i WHERE i.k = o.k GROUP BY i.k) FROM o ORDER BY id",
    # EXISTS / NOT EXISTS, in WHERE and in the select list
    "SELECT id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.k = o.k AND i.v > 10) ORDER BY id",
    "SELECT id FROM o WHERE NOT EXISTS (SELECT 1 FROM i WHERE i.k = o.k) ORDER BY id",
    "SELECT id, EXISTS (SELECT * FROM i WHERE i.k = o.k AND i.s = o.name) FROM o ORDER BY id",
    # IN / NOT IN with NULLs among the values (k = 2) and a NULL probe
    "SELECT id, o.k * 10 IN (SELECT i.v FROM i WHERE i.k = o.k) FROM o ORDER BY id",
    "SELECT id, o.k * 10 NOT IN (SELECT i.v FROM i WHERE i.k = o.k) FROM o ORDER BY id",
    "SELECT id, o.big IN (SELECT i.k FROM i WHERE i.k = o.k) FROM o ORDER BY id",
    # ARRAY(...) keeps the subquery's order; no rows give an empty array
    "SELECT id, ARRAY(SELECT i.v FROM i WHERE i.k = o.k ORDER BY i.v DESC NULLS LAST) FROM o "
    "ORDER BY id",
    "SELECT id, ARRAY(SELECT i.s FROM i WHERE i.k = o.k ORDER BY 1) FROM o ORDER BY id",
    # an outer-only condition (guard), several keys, keys of different types
    "SELECT id, (SELECT count(*) FROM i WHERE i.k = o.k AND o.flag) FROM o ORDER BY id",
    "SELECT id, (SELECT i.v FROM i WHERE i.k = o.k AND o.name = i.s) FROM o ORDER BY id",
    "SELECT id, (SELECT count(*) FROM i WHERE i.kn = o.big AND i.k = o.k) FROM o ORDER BY id",
    "SELECT id, (SELECT max(i.v) FROM i WHERE i.k = o.big) FROM o ORDER BY id",
    # under CASE (evaluated only for the rows that take the branch), in an aggregate query
    "SELECT id, CASE WHEN o.flag THEN (SELECT max(i.v) FROM i WHERE i.k = o.k) ELSE -1 END "
    "FROM o ORDER BY id",
    "SELECT o.k, (SELECT count(*) FROM i WHERE i.k = o.k) FROM o GROUP BY o.k ORDER BY 1",
    # nested: the inner subquery is correlated to the outer query only
    "SELECT id, (SELECT count(*) FROM i WHERE i.k = o.k AND i.v > (SELECT min(v) FROM i i2 "
    "WHERE i2.k = o.k)) FROM o ORDER BY id",
    # joins inside the subquery
    "SELECT id, (SELECT count(*) FROM i JOIN o o2 ON o2.k = i.k WHERE i.k = o.k) FROM o "
    "ORDER BY id",
    # HAVING without GROUP BY, DISTINCT, a window in ORDER BY, a subquery in HAVING
    "SELECT id, (SELECT sum(i.v) FROM i WHERE i.k = o.k HAVING count(*) > 1) FROM o ORDER BY id",
    "SELECT id, ARRAY(SELECT DISTINCT i.s FROM i WHERE i.k = o.k ORDER BY i.s) FROM o ORDER BY id",
    "SELECT id, ARRAY(SELECT i.s FROM i WHERE i.k = o.k ORDER BY row_number() OVER "
    "(ORDER BY i.v DESC NULLS LAST)) FROM o ORDER BY id",
    "SELECT o.k, count(*) FROM o GROUP BY o.k HAVING EXISTS (SELECT 1 FROM i WHERE i.k = o.k "
    "AND i.v > 10) ORDER BY 1",
]


@pytest.mark.parametrize("sql", DECORRELATED)
def test_decorrelated_subquery_matches_per_row_evaluation(session, sql):
    plans = subplans(plan_of(session, sql))
    assert any(p.args.get("keyed") is not None for p in plans)
    assert not any(p.args.get("keyed") is not None for p in subplans(plan_of(session, per_row(sql))))
    assert rows(session, sql) == rows(session, per_row(sql))


def test_decorrelated_results(session):
    assert rows(session, "SELECT id, (SELECT count(*) FROM i WHERE i.k = o.k), "
                         "(SELECT sum(i.v) FROM i WHERE i.k = o.k AND o.flag) FROM o ORDER BY id") == [
        (1, 2, 21), (2, 2, None), (3, 1, 3), (4, 0, None), (5, 2, None), (6, 0, None)]
    assert rows(session, "SELECT id, o.k * 10 IN (SELECT i.v FROM i WHERE i.k = o.k) FROM o "
                         "ORDER BY id") == [
        (1, True), (2, True), (3, False), (4, False), (5, True), (6, False)]
    assert rows(session, "SELECT id, ARRAY(SELECT i.s FROM i WHERE i.k = o.k ORDER BY 1 DESC) "
                         "FROM o WHERE id <= 4 ORDER BY id") == [
        (1, ["b", "a"]), (2, ["b", "a"]), (3, ["c"]), (4, [])]


def test_scalar_subquery_with_several_rows_fails_either_way(session):
    sql = "SELECT id, (SELECT i.v FROM i WHERE i.k = o.k) FROM o"
    for text in (sql, per_row(sql)):
        with pytest.raises(SqlVecError) as info:
            rows(session, text)
        assert info.value.sqlstate == "21000"


def test_subquery_reading_the_outer_row_elsewhere_runs_per_row(session):
    # The select list reads o.id: the keyed plan would still be correlated; the result must
    # be the per-row one.
    sql = "SELECT id, (SELECT max(i.v) + o.id FROM i WHERE i.k = o.k) FROM o ORDER BY id"
    assert rows(session, sql) == [(1, 12), (2, 22), (3, 6), (4, None), (5, 16), (6, None)]


def scans(plan: n.PlanNode) -> list[n.Scan]:
    return nodes_of(plan, n.Scan)


def test_a_correlated_subquery_is_planned_once(session, monkeypatch):
    """Its keyed form is made from the subquery's own planning steps: no SQL text is generated
    or parsed on the way, each table named is looked up in the catalog once, and the keyed
    plan reads the very scan the per-row plan reads."""
    sql = ("SELECT id, (SELECT count(*) FROM i WHERE i.k = o.k AND i.v > (SELECT min(v) FROM i i2 "
           "WHERE i2.k = o.k)) FROM o")
    ast = parse_one(sql)
    calls: list[str] = []
    parse, generate, find_table = Parser.parse, Generator.generate, Catalog.find_table
    monkeypatch.setattr(Parser, "parse", lambda *a, **k: calls.append("parse") or parse(*a, **k))
    monkeypatch.setattr(Generator, "generate",
                        lambda *a, **k: calls.append("generate") or generate(*a, **k))
    monkeypatch.setattr(Catalog, "find_table",
                        lambda self, name, *a: calls.append(name) or find_table(self, name, *a))
    ctx = PlanContext(session.catalog, ["public"], virtual=session.database.virtual_fields)
    plan = Planner(ctx).plan_query(ast)
    assert sorted(calls) == ["i", "i", "o"]
    (outer,) = subplans(plan)
    (nested,) = subplans(outer.args["plan"])
    for sub in (outer, nested):
        assert sub.args.get("keyed") is not None
        (scan,) = scans(sub.args["keyed"])
        assert any(scan is s for s in scans(sub.args["plan"]))
    assert rows(session, sql) == rows(session, per_row(sql))


def test_an_aggregate_ordering_an_exists_subquery_is_not_keyed(session):
    # An aggregate (here only in ORDER BY) makes one row even of no rows: EXISTS holds for
    # every outer row, as in PostgreSQL; a keyed form would find rows only where keys match.
    sql = "SELECT id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.k = o.k ORDER BY count(*))"
    assert not any(p.args.get("keyed") is not None for p in subplans(plan_of(session, sql)))
    assert sorted(rows(session, sql)) == [(1,), (2,), (3,), (4,), (5,), (6,)]


def test_uncorrelated_and_limit_subqueries_are_not_keyed(session):
    sql = ("SELECT id, (SELECT i.v FROM i WHERE i.k = o.k ORDER BY i.v LIMIT 1), "
           "(SELECT max(v) FROM i) FROM o ORDER BY id")
    assert not any(p.args.get("keyed") is not None for p in subplans(plan_of(session, sql)))
    assert rows(session, sql) == [(1, 10, 99), (2, 20, 99), (3, 3, 99), (4, None, 99),
                                  (5, 10, 99), (6, None, 99)]


# WHERE pushdown -------------------------------------------------------------------------------


def joins(plan: n.PlanNode) -> list[n.Join]:
    return nodes_of(plan, n.Join)


def test_where_equality_turns_a_cross_join_into_a_hash_join(session):
    sql = "SELECT o.id, i.v FROM o, i WHERE o.k = i.k AND i.v > 10 AND o.id < 5 ORDER BY 1, 2"
    (join,) = joins(plan_of(session, sql))
    assert join.kind == "inner" and join.condition is not None
    assert isinstance(join.left, n.Filter) and isinstance(join.right, n.Filter)
    assert rows(session, sql) == [(1, 11), (2, 20)]


def test_where_is_not_pushed_into_the_nullable_side_of_an_outer_join(session):
    sql = ("SELECT o.id FROM o LEFT JOIN i ON i.k = o.k AND i.s = 'a' WHERE i.v IS NULL "
           "ORDER BY 1")
    assert rows(session, sql) == [(2,), (3,), (4,), (6,)]
    sql = "SELECT o.id, i.v FROM o LEFT JOIN i ON i.k = o.k WHERE o.flag ORDER BY 1, 2"
    assert rows(session, sql) == [(1, 10), (1, 11), (3, 3), (4, None), (6, None)]


def test_three_way_comma_join(session):
    sql = ("SELECT a.id, b.id, i.v FROM o a, o b, i WHERE a.k = b.k AND b.k = i.k AND a.id < b.id "
           "ORDER BY 1, 2, 3")
    assert all(j.kind == "inner" for j in joins(plan_of(session, sql)))
    assert rows(session, sql) == [(1, 5, 10), (1, 5, 11)]


# Error positions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "sqlstate", "at"), [
    ("SELECT * FROM nope", "42P01", "nope"),
    ("SELECT 1 FROM o JOIN public.nope x ON true", "42P01", "public.nope"),
    ("SELECT missing FROM o", "42703", "missing FROM"),
    ("SELECT o.id FROM o WHERE\n  o.k = 1 AND o.zz > 2", "42703", "o.zz"),
    ("SELECT q.id FROM o", "42P01", "q.id"),
    ("SELECT (SELECT nothing FROM i) FROM o", "42703", "nothing"),
    ("SELECT id, 'x' FROM o ORDER BY nope", "42703", "nope"),
    ("SELECT k, count(*) FROM o GROUP BY id, nope", "42703", "nope"),
    ("SELECT name, count(*) FROM o", "42803", "name,"),
    ("SELECT k FROM o, i", "42702", "k FROM"),
    ("SELECT 'é' || missing FROM o", "42703", "missing"),
])
def test_name_errors_point_at_the_name(session, sql, sqlstate, at):
    with pytest.raises(SqlVecError) as info:
        rows(session, sql)
    assert info.value.sqlstate == sqlstate
    assert info.value.position == sql.index(at) + 1


def test_syntax_error_at_an_unknown_first_word(session):
    with pytest.raises(SqlVecError) as info:
        rows(session, "selec 1")
    assert (info.value.sqlstate, info.value.message, info.value.position) == (
        "42601", 'syntax error at or near "selec"', 1)


@pytest.mark.parametrize("sql, shown", [
    ("SELECT id FROM o WHERE k IN (SELECT k FROM i) AND NOT EXISTS (SELECT 1 FROM i)",
     "Filter: k IN (SubPlan 1) AND NOT EXISTS (SubPlan 2)"),
    ("SELECT id FROM o WHERE big > (SELECT max(v) FROM i)", "Filter: big > (SubPlan 1)"),
])
def test_explain_prints_subqueries_as_subplans(session, sql, shown):
    lines = [r[0].strip() for r in session.execute_one("EXPLAIN " + sql).rows()]
    assert shown in lines


def test_explain_of_a_vector_search_by_a_subquery_vector(session):
    session.execute_one("CREATE TABLE docs (id int, emb vector(2))")
    session.execute_one("INSERT INTO docs VALUES (1, '[1,2]'), (2, '[3,4]'), (3, '[0,1]')")
    sql = "SELECT id FROM docs ORDER BY emb <-> (SELECT emb FROM docs WHERE id = 3) LIMIT 2"
    lines = [r[0].strip() for r in session.execute_one("EXPLAIN " + sql).rows()]
    assert "Order By: emb <-> (SubPlan 1)" in lines
    assert [r[0] for r in session.execute_one(sql).rows()] == [3, 1]


@pytest.mark.parametrize("sql, shown", [
    ("SELECT * FROM keyed WHERE id = 5", ["Index Scan using keyed_pkey on keyed",
                                          "Index Cond: (id = 5)"]),
    ("SELECT * FROM keyed WHERE v > 1 AND id IN (1, 2)",
     ["Index Scan using keyed_pkey on keyed", "Index Cond: (id IN (1, 2))", "Filter: v > 1"]),
    ("SELECT * FROM keyed k WHERE -7 = k.id", ["Index Scan using keyed_pkey on keyed k",
                                               "Index Cond: (-7 = k.id)"]),
    ("UPDATE keyed SET v = 0 WHERE id = CAST('3' AS bigint)",
     ["Index Scan using keyed_pkey on keyed"]),
    # Not pinned to constants: a scan.
    ("SELECT * FROM keyed WHERE id = v", ["Seq Scan on keyed", "Filter: id = v"]),
    ("SELECT * FROM keyed WHERE id = 1 OR v = 2", ["Seq Scan on keyed"]),
    ("SELECT * FROM keyed WHERE id = random()", ["Seq Scan on keyed"]),
    ("SELECT * FROM o WHERE id = 1", ["Seq Scan on o"]),  # no key
])
def test_a_filter_pinning_the_primary_key_reads_through_its_index(session, sql, shown):
    session.execute_one("CREATE TABLE IF NOT EXISTS keyed (id bigint PRIMARY KEY, v int)")
    lines = [r[0].strip().removeprefix("->").strip()
             for r in session.execute_one("EXPLAIN " + sql).rows()]
    for line in shown:
        assert line in lines, lines


# Set operations ----------------------------------------------------------------------------------


def test_a_union_chain_of_one_kind_is_one_node(session):
    plan = plan_of(session, "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4")
    assert isinstance(plan, n.SetOp) and plan.all and len(plan.inputs) == 4
    mixed = plan_of(session, "SELECT 1 UNION SELECT 2 UNION ALL SELECT 3")
    assert mixed.all and len(mixed.inputs) == 2
    assert isinstance(mixed.inputs[0], n.SetOp) and not mixed.inputs[0].all
    limited = plan_of(session, "(SELECT 1 UNION ALL SELECT 2 LIMIT 1) UNION ALL SELECT 3")
    assert len(limited.inputs) == 2
    intersect = plan_of(session, "SELECT 1 INTERSECT SELECT 1 INTERSECT SELECT 1")
    assert len(intersect.inputs) == 2


def test_union_chains_resolve_types_and_duplicates_across_all_branches(session):
    result = session.execute_one("SELECT 1 AS x UNION ALL SELECT 2.5 UNION ALL SELECT 3::float8")
    assert result.columns[0].type.name == "float8" and result.columns[0].name == "x"
    assert result.rows() == [(1.0,), (2.5,), (3.0,)]
    assert rows(session, "SELECT 1 UNION SELECT 1 UNION SELECT 2 UNION SELECT 2 ORDER BY 1") == \
        [(1,), (2,)]
    assert rows(session, "SELECT 1 UNION SELECT 1 UNION ALL SELECT 1") == [(1,), (1,)]
    assert rows(session, "SELECT k FROM o WHERE k < 2 UNION ALL SELECT k FROM i WHERE k < 2 "
                         "UNION ALL SELECT 5 ORDER BY 1") == [(1,), (1,), (1,), (1,), (5,)]
    with pytest.raises(SqlVecError) as err:
        rows(session, "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3, 4")
    assert err.value.sqlstate == "42601"


def test_a_long_union_chain_plans_without_recursion(session):
    import sys

    sql = " UNION ALL ".join(f"SELECT {i} AS x" for i in range(5000))
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        plan = plan_of(session, sql)
    finally:
        sys.setrecursionlimit(saved)
    assert len(plan.inputs) == 5000
    lines = n.explain_lines(plan)
    assert lines[0] == "Append" and len(lines) == 5001


def _resolved_columns(plan: n.PlanNode) -> list[exp.Column]:
    """The column references of a plan's own expressions (not inside subqueries)."""
    found, stack = [], [plan]
    while stack:
        x = stack.pop()
        if isinstance(x, n.PlanNode):
            stack.extend(vars(x).values())
        elif isinstance(x, (tuple, list)):
            stack.extend(x)
        elif isinstance(x, exp.Expression):
            found += [c for c in x.find_all(exp.Column) if not isinstance(c.this, exp.Star)]
    return found


def test_using_columns_are_resolved_once_to_the_fields_they_join(session):
    # The merged column and the join condition name their fields (born resolved), so no
    # later step looks `k` up by name among the three tables' columns.
    plan = plan_of(session, "SELECT k FROM o JOIN i USING (k) FULL JOIN o o2 USING (k)")
    columns = _resolved_columns(plan)
    assert columns and all(c.meta.get("field") is not None for c in columns)


# The merged column of a USING pair of different types is of their common type, as in
# PostgreSQL (int4 USING int8: int8; numeric keeps the larger scale).
@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT id, pg_typeof(id)::text FROM o JOIN (SELECT big AS id FROM o) b USING (id) "
     "WHERE id = 2", [(2, "bigint")]),
    ("SELECT k, pg_typeof(k)::text FROM o JOIN i USING (k) WHERE o.id = 2 AND v = 20",
     [(2, "integer")]),
    ("SELECT k::text FROM i RIGHT JOIN (VALUES (2.50)) AS x(k) USING (k) ORDER BY 1",
     [("2.50",)]),
    ("SELECT k::text FROM (VALUES (1.0), (9)) AS x(k) FULL JOIN i USING (k) "
     "WHERE k < 2 ORDER BY 1", [("1.0",), ("1.0",)]),
])
def test_a_using_column_is_of_the_common_type(session, sql, expected):
    assert rows(session, sql) == expected


@pytest.mark.parametrize(("sql", "sqlstate", "message"), [
    ("SELECT * FROM o JOIN i USING (k, k)", "42701",
     'column name "k" appears more than once in USING clause'),
    ("SELECT * FROM o JOIN i ON true JOIN i i2 USING (k)", "42702",
     'common column name "k" appears more than once in left table'),
    ("SELECT * FROM o JOIN (SELECT 1 AS k, 2 AS k) s USING (k)", "42702",
     'common column name "k" appears more than once in right table'),
    ("SELECT * FROM o NATURAL JOIN (SELECT 1 AS k, 2 AS k) s", "42702",
     'common column name "k" appears more than once in right table'),
    ("SELECT * FROM o JOIN i USING (v)", "42703",
     'column "v" specified in USING clause does not exist in left table'),
    ("SELECT * FROM o JOIN i USING (ctid)", "42703",
     'column "ctid" specified in USING clause does not exist in left table'),
])
def test_using_names_fail_as_postgres(session, sql, sqlstate, message):
    with pytest.raises(SqlVecError) as error:
        rows(session, sql)
    assert (error.value.sqlstate, error.value.message) == (sqlstate, message)
