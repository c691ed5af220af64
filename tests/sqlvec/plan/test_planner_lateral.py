"""How the planner plans FROM items that may be lateral: a LateralJoin only when the item
refers to the items on its left (LATERAL subqueries, and functions, implicitly lateral),
WHERE conjuncts placed around it, and the vector top-k kept inside it."""

from __future__ import annotations

import pytest
from sqlglot import exp

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.plan import nodes as n
from tests.sqlvec.plan.conftest import nodes_of, planned


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("lateral") / "data"))
    s = db.connect()
    s.execute_one("CREATE TABLE q (id int, cat int, v vector(2), n int)")
    s.execute_one("CREATE TABLE items (id int, cat int, v vector(2))")
    yield s
    s.close()
    db.close()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM q CROSS JOIN LATERAL (SELECT q.id + 1 AS x) s",
    "SELECT * FROM q, LATERAL (SELECT id FROM items WHERE items.cat = q.cat) s",
    "SELECT * FROM q JOIN LATERAL (SELECT id FROM items WHERE items.cat = q.cat) s ON s.id > 1",
    "SELECT * FROM q, LATERAL unnest(ARRAY[q.id]) u",
    "SELECT * FROM q, generate_series(1, q.n) g",  # a function in FROM: implicitly lateral
    "SELECT * FROM q LEFT JOIN LATERAL generate_series(1, q.n) g ON true",
])
def test_a_reference_to_the_left_makes_a_lateral_join(session, sql):
    plan = planned(session, sql)
    assert len(nodes_of(plan, n.LateralJoin)) == 1
    assert not nodes_of(plan, n.Join)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM q, LATERAL (SELECT 1 AS one) s",
    "SELECT * FROM q, generate_series(1, 3) g",
    "SELECT * FROM q CROSS JOIN LATERAL (SELECT id FROM items) s",
])
def test_without_a_reference_it_is_a_plain_join(session, sql):
    plan = planned(session, sql)
    assert not nodes_of(plan, n.LateralJoin)
    assert len(nodes_of(plan, n.Join)) == 1


def test_left_join_lateral_is_left_and_on_true_is_no_condition(session):
    (join,) = nodes_of(planned(session, "SELECT * FROM q LEFT JOIN LATERAL (SELECT items.id FROM "
                                     "items WHERE items.cat = q.cat) s ON true"), n.LateralJoin)
    assert join.kind == "left" and join.condition is None


def test_where_conjuncts_on_the_left_filter_it_before_the_runs(session):
    plan = planned(session, "SELECT * FROM q, LATERAL (SELECT items.id FROM items WHERE "
                            "items.cat = q.cat) s WHERE q.id = 1 AND s.id > 2")
    (join,) = nodes_of(plan, n.LateralJoin)
    assert isinstance(join.left, n.Scan) and join.left.filter is not None  # q.id = 1
    assert join.condition is not None and "s.id > 2" in n.expr_sql(join.condition)


def test_where_on_the_right_of_a_left_lateral_join_stays_above(session):
    plan = planned(session, "SELECT * FROM q LEFT JOIN LATERAL (SELECT items.id FROM items "
                            "WHERE items.cat = q.cat) s ON true WHERE s.id IS NULL")
    (join,) = nodes_of(plan, n.LateralJoin)
    assert join.condition is None  # on the pairs it would drop the NULL-extended rows' cause
    assert any("s.id IS NULL" in n.expr_sql(f.predicate) and nodes_of(f, n.LateralJoin)
               for f in nodes_of(plan, n.Filter))


def test_the_inner_top_k_is_a_vector_search_with_the_outer_row_as_query(session):
    plan = planned(session, "SELECT q.id, s.id FROM q CROSS JOIN LATERAL (SELECT i.id FROM "
                            "items i WHERE i.cat = q.cat ORDER BY i.v <-> q.v LIMIT 5) s")
    (join,) = nodes_of(plan, n.LateralJoin)
    (topk,) = nodes_of(join.right, n.VectorTopK)
    assert topk.column == "v" and n.expr_sql(topk.query) == "q.v"
    assert n.expr_sql(topk.scan.filter) == "i.cat = q.cat"
    assert "Nested Loop" in join.describe()


@pytest.mark.parametrize("sql, sqlstate", [
    ("SELECT * FROM q RIGHT JOIN LATERAL (SELECT q.id AS x) s ON true", "42P10"),
    ("SELECT * FROM q FULL JOIN generate_series(1, q.n) g ON true", "42P10"),
    ("SELECT * FROM q, (SELECT q.id AS x) s", "42P01"),  # not LATERAL: q is not visible
    ("SELECT * FROM LATERAL (SELECT q.id AS x) s, q", "42P01"),  # only items to the left
])
def test_errors(session, sql, sqlstate):
    with pytest.raises(SqlVecError) as caught:
        planned(session, sql)
    assert caught.value.sqlstate == sqlstate


def test_a_key_pinned_by_the_outer_row_is_an_index_lookup_per_run(tmp_path):
    db = Database.open(str(tmp_path / "data"))
    s = db.connect()
    try:
        s.execute_one("CREATE TABLE k (id int PRIMARY KEY, name text)")
        s.execute_one("CREATE TABLE r (ref int)")
        s.execute_one("INSERT INTO k VALUES (1, 'a'), (2, 'b')")
        s.execute_one("INSERT INTO r VALUES (2), (NULL), (7), (1)")
        sql = "SELECT r.ref, s.name FROM r, LATERAL (SELECT name FROM k WHERE k.id = r.ref) s"
        (scan,) = [x for x in nodes_of(planned(s, sql), n.Scan) if x.table_name == "k"]
        assert scan.key is not None and n.expr_sql(scan.key_values[0][0]) == "r.ref"
        assert s.execute_one(sql).rows() == [(2, "b"), (1, "a")]
        # A column of the scanned table itself is not a per-run constant.
        (scan,) = nodes_of(planned(s, "SELECT * FROM k WHERE id = length(name)"), n.Scan)
        assert scan.key is None
    finally:
        s.close()
        db.close()


def test_a_row_equality_with_the_outer_row_keys_a_decorrelated_subquery(session):
    from sqlvec.plan.nodes import SubPlan

    plan = planned(session, "SELECT id FROM q WHERE EXISTS (SELECT 1 FROM items i WHERE "
                            "(i.cat, i.id) = (q.cat, q.id))")
    (sub,) = [x for node in nodes_of(plan, n.PlanNode) for value in vars(node).values()
              if isinstance(value, exp.Expression) for x in value.find_all(SubPlan)]
    assert [n.expr_sql(k) for k in sub.args["keys"]] == ["q.cat", "q.id"]
