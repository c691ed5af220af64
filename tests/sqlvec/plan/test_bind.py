"""Binding a plan (plan/bind.py): every column reference of a finished plan carries its
resolution (level, position, field), so the executor never resolves a name again, and a
compiler for a bound plan refuses a reference that has none."""

from __future__ import annotations

import pytest
from sqlglot import exp

from sqlvec.errors import SqlVecError
from sqlvec.execution.builder import Builder
from sqlvec.execution.expressions import CompileEnv
from sqlvec.plan import nodes as n
from sqlvec.plan.bind import bind_plan
from sqlvec.sql.binder import ColumnRef, Scope, bound_ref, is_column_reference
from sqlvec.sql.dialect import parse_one
from sqlvec.storage.schema import ROWID
from tests.sqlvec.plan.conftest import planned

SCHEMA = [
    "CREATE TABLE o (id int PRIMARY KEY, k int, name text, v vector(2))",
    "CREATE TABLE i (k int, w int, s text)",
    "INSERT INTO o VALUES (1, 1, 'a', '[0,1]'), (2, 2, 'b', '[1,0]'), (3, NULL, 'c', '[1,1]')",
    "INSERT INTO i VALUES (1, 10, 'x'), (1, 11, 'y'), (2, 20, 'z')",
]

# Queries whose plans hold every kind of expression the builder compiles.
QUERIES = [
    "SELECT * FROM o WHERE k > 1 ORDER BY name",
    "SELECT o.*, i.* FROM o JOIN i ON o.k = i.k + 0 AND i.w > o.id",
    "SELECT id AS x, name FROM o ORDER BY x DESC, 2 LIMIT 2 OFFSET 1",
    "SELECT k AS kk, count(*), sum(w) FILTER (WHERE w > 10) FROM i GROUP BY kk HAVING count(*) > 0",
    "SELECT DISTINCT ON (k) k, w FROM i ORDER BY k, w DESC",
    "SELECT id, row_number() OVER (PARTITION BY k ORDER BY id) FROM o",
    "SELECT id, (SELECT max(w) FROM i WHERE i.k = o.k) FROM o",
    "SELECT id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.w > o.id * 5)",
    "SELECT id FROM o WHERE k IN (SELECT k FROM i WHERE i.s <> o.name)",
    "SELECT * FROM o, LATERAL (SELECT w FROM i WHERE i.k = o.k ORDER BY w LIMIT 1) s",
    "SELECT * FROM o, generate_series(1, o.id) g",
    "SELECT id, unnest(ARRAY[k, id]) FROM o",
    "WITH c AS (SELECT k, w FROM i) SELECT c.k, (SELECT count(*) FROM c d WHERE d.k = c.k) FROM c",
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 3) SELECT x FROM r",
    "SELECT k FROM o UNION SELECT k FROM i ORDER BY k",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(a, b) WHERE a > 1",
    "SELECT id, ctid, xmin, tableoid > 0 FROM o WHERE id = 2",
    "SELECT id FROM o ORDER BY v <-> '[0,0]' LIMIT 2",
    "SELECT a.id FROM o a JOIN o b USING (id) WHERE b.name = 'a'",
    "SELECT s.x FROM (SELECT k AS x, id FROM o) s WHERE s.id = 2 AND s.x > 0",
]


@pytest.fixture(scope="module")
def session(schema_session):
    return schema_session


def expressions(plan: n.PlanNode) -> list[exp.Expression]:
    """Every expression of a plan, those of subquery plans included."""
    found: list[exp.Expression] = []
    stack: list[object] = [plan]
    while stack:
        x = stack.pop()
        if isinstance(x, n.PlanNode):
            stack.extend(vars(x).values())
        elif isinstance(x, (tuple, list)):
            stack.extend(x)
        elif isinstance(x, n.SortKey):
            stack.append(x.expr)
        elif isinstance(x, exp.Expression):
            for node in x.walk():
                found.append(node)
                if isinstance(node, n.SubPlan):
                    stack += [node.args.get(k) for k in ("plan", "keyed", "empty")]
    return found


@pytest.mark.parametrize("sql", QUERIES)
def test_every_column_reference_of_a_bound_plan_carries_its_resolution(session, sql):
    plan = planned(session, sql)
    columns = [x for x in expressions(plan) if is_column_reference(x)]
    assert columns and not any(bound_ref(c) for c in columns)  # the planner leaves names
    bound = bind_plan(plan)
    columns = [x for x in expressions(bound) if is_column_reference(x)]
    assert columns
    for column in columns:
        ref = bound_ref(column)
        assert isinstance(ref, ColumnRef), column.sql()
        # The field it reads is the one named (a system column: its table's row id).
        expected = ROWID if ref.system is not None else column.name
        assert ref.field.name == expected
        assert ref.field.table == (column.table or ref.field.table)


@pytest.mark.parametrize(("sql", "expected"), [
    # GROUP BY the key: the keyed form groups by it twice, its key column a field of its
    # own, not a second `i.k` that a name would find ambiguous.
    ("SELECT id, (SELECT count(i.w) FROM i WHERE i.k = o.k GROUP BY i.k) FROM o ORDER BY id",
     [(1, 2), (2, 1), (3, None)]),
    # The right key of a hash join reads the right side's rows alone.
    ("SELECT o.id, i.w FROM o JOIN i ON o.k = i.k + 0 ORDER BY 1, 2",
     [(1, 10), (1, 11), (2, 20)]),
    # One CTE read at two depths: bound separately for each.
    ("WITH c AS (SELECT k FROM i) SELECT c.k, (SELECT count(*) FROM c d WHERE d.k = c.k) "
     "FROM c ORDER BY 1", [(1, 2), (1, 2), (2, 1)]),
    ("SELECT o.id, s.w FROM o, LATERAL (SELECT w FROM i WHERE i.k = o.k ORDER BY w DESC "
     "LIMIT 1) s ORDER BY 1", [(1, 11), (2, 20)]),
    ("SELECT name, ctid FROM o WHERE xmin > 0 ORDER BY 2 DESC LIMIT 1", [("c", 3)]),
    ("SELECT s.x FROM (SELECT k AS x, id FROM o) s WHERE s.id = 2 AND s.x > 0", [(2,)]),
    # A distance over a subquery's output restated over the table's scan (a vector top-k).
    ("SELECT s.id FROM (SELECT id, v AS w FROM o) s ORDER BY s.w <-> '[0,0.1]' LIMIT 2",
     [(1,), (2,)]),
    # Pushed into the join's sides, each bound where it ended up.
    ("SELECT o.name, i.s FROM i, o WHERE o.id = 2 AND i.w > 10 AND o.k = i.k", [("b", "z")]),
    # A grouped column of the outer query in a subquery reads the aggregate's group key.
    ("SELECT k, (SELECT count(*) FROM i WHERE i.k = o.k) FROM o GROUP BY k ORDER BY 1",
     [(1, 2), (2, 1), (None, 0)]),
    ("SELECT k, count(*) FROM o GROUP BY k HAVING EXISTS (SELECT 1 FROM i WHERE i.k = o.k) "
     "ORDER BY 1", [(1, 1), (2, 1)]),
    # An aggregate in a subquery of HAVING or ORDER BY is the subquery's, not the outer one's.
    ("SELECT k FROM o GROUP BY k HAVING (SELECT sum(w) FROM i WHERE i.k = o.k) > 20", [(1,)]),
    ("SELECT o.k FROM o GROUP BY o.k ORDER BY (SELECT max(w) FROM i WHERE i.k = o.k) DESC",
     [(None,), (2,), (1,)]),
    ("SELECT k, (SELECT count(*) FROM i WHERE i.k = o.k AND i.w > (SELECT min(w) FROM i i2 "
     "WHERE i2.k = o.k)) FROM o GROUP BY k ORDER BY 1", [(1, 1), (2, 0), (None, 0)]),
    ("WITH c AS (SELECT k, w FROM i) SELECT c.k, (SELECT count(*) FROM c d WHERE d.k = c.k) "
     "FROM c GROUP BY c.k ORDER BY 1", [(1, 2), (2, 1)]),
])
def test_bound_plans_answer_as_before(session, sql, expected):
    assert session.execute_one(sql).rows() == expected


def test_outer_references_count_the_queries_up(session):
    bound = bind_plan(planned(session, "SELECT id FROM o WHERE EXISTS (SELECT 1 FROM i "
                                       "WHERE i.w > o.id * 5)"))
    refs = {c.sql(): bound_ref(c) for c in expressions(bound) if is_column_reference(c)}
    assert refs["o.id"].level == 1 and refs["i.w"].level == 0
    assert refs["o.id"].field.table == "o"


def test_a_grouped_outer_column_is_bound_to_the_aggregates_field(session):
    bound = bind_plan(planned(session, "SELECT k FROM o GROUP BY k HAVING EXISTS "
                                       "(SELECT 1 FROM i WHERE i.w > o.k)"))
    (aggregate,) = [x for x in _nodes(bound) if isinstance(x, n.Aggregate)]
    refs = [bound_ref(c) for c in expressions(bound) if is_column_reference(c)]
    (outer,) = [r for r in refs if r.level == 1]  # o.k in the subquery
    assert outer.field is aggregate.fields[0] and outer.index == 0


@pytest.mark.parametrize(("sql", "column"), [
    ("SELECT k, (SELECT count(*) FROM i WHERE i.k = o.k AND i.w > o.id) FROM o GROUP BY k",
     "o.id"),
    ("SELECT k FROM o GROUP BY k HAVING EXISTS (SELECT 1 FROM i WHERE i.s = o.name)", "o.name"),
    ("SELECT k FROM o GROUP BY k ORDER BY (SELECT max(w) FROM i WHERE i.w > id)", "o.id"),
    # Deeper down, and with an aggregate but no GROUP BY.
    ("SELECT k FROM o GROUP BY k HAVING EXISTS (SELECT 1 FROM i WHERE i.k = o.k AND "
     "EXISTS (SELECT 1 FROM i i2 WHERE i2.w = o.id))", "o.id"),
    ("SELECT count(*), (SELECT max(w) FROM i WHERE i.k = o.k) FROM o", "o.k"),
    # Inside a subquery only a plain grouped column matches, not a grouped expression.
    ("SELECT k + 1, (SELECT max(w) FROM i WHERE i.k = o.k) FROM o GROUP BY k + 1", "o.k"),
])
def test_a_subquery_may_not_read_an_ungrouped_outer_column(session, sql, column):
    with pytest.raises(SqlVecError) as error:
        session.execute_one(sql)
    assert error.value.sqlstate == "42803"
    assert error.value.message == f'subquery uses ungrouped column "{column}" from outer query'


def _nodes(plan: n.PlanNode) -> list[n.PlanNode]:
    found, stack = [], [plan]
    while stack:
        found.append(stack.pop())
        stack.extend(found[-1].children)
    return found


def test_order_by_an_output_name_reads_the_projected_column(session):
    bound = bind_plan(planned(session, "SELECT name, id AS x FROM o ORDER BY x DESC"))
    sort = bound if isinstance(bound, n.Sort) else bound.child
    assert isinstance(sort, n.Sort)
    ref = bound_ref(sort.keys[0].expr)
    assert (ref.level, ref.index, ref.field.name) == (0, 1, "x")


def test_a_join_key_on_the_right_is_bound_to_the_joined_row(session):
    bound = bind_plan(planned(session, "SELECT 1 FROM o JOIN i ON i.k = o.k"))
    (join,) = [x for x in [bound, *bound.children] if isinstance(x, n.Join)]
    refs = {c.sql(): bound_ref(c) for c in join.condition.find_all(exp.Column)}
    assert refs["o.k"].index == 1
    assert refs["i.k"].index == len(join.left.fields)  # right side: after all left fields
    assert refs["i.k"].type.name == "int4"


def test_binding_reports_an_unknown_name_with_its_position(session):
    plan = planned(session, "SELECT id FROM o")
    broken = n.Filter(plan.fields, child=plan, predicate=exp.condition("nope > 1"))
    with pytest.raises(SqlVecError) as error:
        bind_plan(broken)
    assert error.value.sqlstate == "42703"


def test_the_builder_refuses_a_plan_that_was_not_bound(session):
    plan = planned(session, "SELECT id, name FROM o WHERE k > 1")
    env = CompileEnv(functions=session.database.functions)
    builder = Builder(env)
    env.build_subplan = builder.subplan
    with pytest.raises(SqlVecError) as error:
        builder.build(plan)
    assert error.value.sqlstate == "XX000"
    assert "was not bound" in error.value.message
    op = builder.build(bind_plan(plan))  # the same plan, bound: builds
    assert [f.name for f in op.fields if not f.hidden] == ["id", "name"]


@pytest.fixture
def lookups(monkeypatch) -> list[tuple[str | None, str]]:
    """The names looked up, (qualifier, name) each: a reference resolved by name through the
    scopes up (`Scope.resolve`, one lookup however many queries up it is found) or looked for
    among one input's fields (`Scope.find`)."""
    seen: list[tuple[str | None, str]] = []
    depth = [0]
    resolve, find = Scope.resolve, Scope.find

    def counted_resolve(self, column):
        seen.append((column.table or None, column.name))
        depth[0] += 1
        try:
            return resolve(self, column)
        finally:
            depth[0] -= 1

    def counted_find(self, name, table=None):
        if not depth[0]:
            seen.append((table, name))
        return find(self, name, table)

    monkeypatch.setattr(Scope, "resolve", counted_resolve)
    monkeypatch.setattr(Scope, "find", counted_find)
    return seen


@pytest.mark.parametrize("sql", [
    "SELECT id, name FROM o WHERE k > 1 AND id = 3",
    "SELECT o.id, i.w FROM o JOIN i ON o.k = i.k WHERE i.w > 10 AND o.name = 'a'",
    "SELECT k, count(*), sum(w) FROM i WHERE w > 1 GROUP BY k HAVING count(*) > 0",
    "SELECT id FROM o ORDER BY v <-> '[0,0]' LIMIT 2",
    "SELECT a.id, b.name FROM o a, o b WHERE a.id = b.k AND a.name = 'x'",
    "SELECT DISTINCT ON (k) k, w FROM i ORDER BY k, w DESC",
    # Correlated subqueries with a keyed form (checked below): the per-row plan, the keyed
    # plan, its keys, guard and aggregate over no rows look no name up again.
    "SELECT id, (SELECT max(w) FROM i WHERE i.k = o.k) FROM o",
    "SELECT id FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.k = o.k AND i.w > 10 AND o.id > 1)",
    "SELECT id FROM o WHERE k NOT IN (SELECT w FROM i WHERE i.s = o.name AND i.w > 0)",
    "SELECT id, ARRAY(SELECT s FROM i WHERE (i.k, i.w) = (o.k, o.id) ORDER BY w DESC) FROM o",
    "SELECT id, (SELECT count(*) FROM i WHERE i.k = o.k AND i.w > (SELECT min(w) FROM i i2 "
    "WHERE i2.k = o.k)) FROM o",
    # A grouped column of the outer query read in a subquery: bound to the aggregate's field
    # for it by the field its name resolved to, in the select list, HAVING and ORDER BY.
    "SELECT k, (SELECT count(*) FROM i WHERE i.k = o.k) FROM o GROUP BY k",
    "SELECT k FROM o GROUP BY k HAVING EXISTS (SELECT 1 FROM i WHERE i.k = o.k)",
    "SELECT o.k, max(id) FROM o GROUP BY o.k ORDER BY (SELECT max(w) FROM i WHERE i.k = o.k)",
    "SELECT k FROM o GROUP BY k, name HAVING EXISTS (SELECT 1 FROM i WHERE i.k = o.k AND "
    "i.s > o.name AND i.w > (SELECT min(w) FROM i i2 WHERE i2.k = o.k))",
])
def test_each_name_is_looked_up_once(session, sql, lookups):
    """Planning places conditions (join sides, scans, index keys) and binding positions the
    references by the field each name resolved to once, not by looking the name up again;
    a correlated subquery's keyed form is made from its plan's steps, not planned again."""
    plan = planned(session, sql)
    if "SELECT 1" in sql or "(SELECT" in sql:
        assert any(e.args.get("keyed") is not None for e in expressions(plan)
                   if isinstance(e, n.SubPlan))
    bind_plan(plan)
    select = parse_one(sql)
    if "DISTINCT ON" in sql:  # DISTINCT ON and ORDER BY name output columns: no lookups
        select = exp.Tuple(expressions=select.expressions)
    names = [c for c in select.find_all(exp.Column) if is_column_reference(c)]
    assert sorted(lookups, key=str) == sorted(((c.table or None, c.name) for c in names), key=str)
