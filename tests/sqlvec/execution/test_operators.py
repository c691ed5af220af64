"""Operators under the statement's memory limit (work_mem, 53200) and its interrupts (57014):
joins counted before they are built and made in blocks, DISTINCT, sorts, set operations and
projections charged for what they materialize (sorts in buckets: test_kernels.py)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from sqlvec.execution import joins, operators
from tests.sqlvec.execution.conftest import error, rows


@pytest.fixture
def colliding(session):
    """Two tables whose join on `x % 1` pairs every row with every row."""
    session.execute_one("CREATE TABLE a (x int)")
    session.execute_one("CREATE TABLE b (x int)")
    session.execute_one("INSERT INTO a SELECT g FROM generate_series(1, 10000) g")
    session.execute_one("INSERT INTO b SELECT g FROM generate_series(1, 100000) g")
    return session


# Joins ------------------------------------------------------------------------------------------


def test_a_join_with_colliding_keys_fails_before_building_anything(colliding):
    start = time.monotonic()
    err = error(colliding, "SELECT count(*) FROM a JOIN b ON a.x % 1 = b.x % 1")
    assert time.monotonic() - start < 5  # counted from key counts, never built
    assert err.sqlstate == "53200" and err.message == "out of memory"
    assert err.detail.startswith("Failed on request of size ")
    assert "in Hash Join (1000000000 rows of " in err.detail and "work_mem" in err.detail
    assert rows(colliding, "SELECT count(*) FROM a JOIN b ON a.x = b.x") == [(10000,)]


def test_a_cross_product_past_the_limit_fails_naming_the_nested_loop(colliding):
    err = error(colliding, "SELECT * FROM a, b")
    assert err.sqlstate == "53200" and "Nested Loop (1000000000 rows" in err.detail


def test_work_mem_raises_the_limit(colliding):
    colliding.execute_one("SET work_mem = '64kB'")
    assert error(colliding, "SELECT count(*) FROM a JOIN b ON a.x = b.x").sqlstate == "53200"
    colliding.execute_one("SET work_mem = '64MB'")
    assert rows(colliding, "SELECT count(*) FROM a JOIN b ON a.x = b.x") == [(10000,)]


def test_a_join_with_a_condition_stops_at_statement_timeout(colliding):
    # 1e9 candidate pairs, each block checked against the condition: minutes of work unless
    # the timeout stops it between blocks.
    colliding.execute_one("SET statement_timeout = '200ms'")
    start = time.monotonic()
    err = error(colliding, "SELECT count(*) FROM a JOIN b ON a.x % 1 = b.x % 1 AND a.x + b.x < 0")
    assert err.sqlstate == "57014" and err.message == "canceling statement due to statement timeout"
    assert time.monotonic() - start < 10


JOIN_KINDS = ["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]


def expected_join(left, right, kind, condition) -> list[tuple]:
    """The join by its definition: matching pairs, then unmatched rows padded with NULLs."""
    pairs = [(i, j) for i, lv in enumerate(left) for j, rv in enumerate(right) if condition(lv, rv)]
    out = [(*left[i], *right[j]) for i, j in pairs]
    if kind in ("LEFT JOIN", "FULL JOIN"):
        hit = {i for i, _ in pairs}
        out += [(*lv, None, None) for i, lv in enumerate(left) if i not in hit]
    if kind in ("RIGHT JOIN", "FULL JOIN"):
        hit = {j for _, j in pairs}
        out += [(None, None, *rv) for j, rv in enumerate(right) if j not in hit]
    return out


def nulls_first(row: tuple) -> tuple:
    return tuple((x is not None, x or 0) for x in row)


@pytest.mark.parametrize("kind, residual, small",
                         itertools.product(JOIN_KINDS, [False, True], [1 << 16, 0]))
def test_joins_in_many_small_blocks_give_every_row(session, monkeypatch, kind, residual, small):
    monkeypatch.setattr(operators, "JOIN_BLOCK_BYTES", 64)  # a block of 1024 pairs
    monkeypatch.setattr(joins, "SMALL_PRODUCT", small)  # joined at once, or counted per key
    rng = np.random.default_rng(3)
    left = [(int(k) if k < 9 else None, i) for i, k in enumerate(rng.integers(0, 10, 300))]
    right = [(int(k) if k < 9 else None, i) for i, k in enumerate(rng.integers(0, 10, 200))]
    session.execute_one("CREATE TABLE l (k int, v int)")
    session.execute_one("CREATE TABLE r (k int, v int)")
    for name, data in (("l", left), ("r", right)):
        session.execute_one(f"INSERT INTO {name} VALUES " + ", ".join(
            f"({'NULL' if k is None else k}, {v})" for k, v in data))
    extra = " AND (l.v + r.v) % 3 = 0" if residual else ""
    got = rows(session, f"SELECT l.k, l.v, r.k, r.v FROM l {kind} r ON l.k = r.k{extra}")

    def condition(lv, rv):
        return lv[0] is not None and lv[0] == rv[0] and (not residual or (lv[1] + rv[1]) % 3 == 0)

    want = expected_join(left, right, kind, condition)
    assert sorted(got, key=nulls_first) == sorted(want, key=nulls_first)


def test_float_keys_match_as_in_postgresql(session):
    # -0.0 = 0.0 and NaN = NaN in PostgreSQL's float equality.
    got = rows(session, "SELECT count(*) FROM (VALUES (0.0::float8), ('NaN'::float8)) a(x) "
                        "JOIN (VALUES (-0.0::float8), ('NaN'::float8)) b(y) ON x = y")
    assert got == [(2,)]


def test_sort_distinct_and_set_operations_reserve_their_output(session):
    session.execute_one("CREATE TABLE t (id int, s text)")
    session.execute_one("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 50000) g")
    session.execute_one("SET work_mem = '1MB'")
    for sql, operator in [("SELECT * FROM t ORDER BY s", "in Sort ("),
                          ("SELECT DISTINCT s FROM t", "in Unique ("),
                          ("SELECT s FROM t UNION SELECT s FROM t", "in HashAggregate (UNION) ("),
                          ("SELECT s FROM t EXCEPT SELECT s FROM t", "in HashSetOp Except ("),
                          ("SELECT id * 2, s || s FROM t", "in Project (")]:
        err = error(session, sql)
        assert err.sqlstate == "53200" and operator in err.detail, (sql, err.detail)
    session.execute_one("RESET work_mem")
    assert rows(session, "SELECT s FROM t ORDER BY id DESC LIMIT 1") == [("row 50000",)]
    assert rows(session, "SELECT count(*) FROM (SELECT DISTINCT id % 7 FROM t) d") == [(7,)]
    assert rows(session, "SELECT count(*) FROM (SELECT s FROM t INTERSECT SELECT s FROM t) i") \
        == [(50000,)]


def test_distinct_vectors_are_grouped_by_value(session):
    session.execute_one("CREATE TABLE v (e vector(2))")
    session.execute_one("INSERT INTO v VALUES ('[1,2]'), ('[1,2]'), (NULL), ('[0,1]'), "
                        "('[-0,1]'), (NULL), ('[2,1]')")
    assert rows(session, "SELECT count(*) FROM (SELECT DISTINCT e FROM v) d") == [(4,)]
    assert rows(session, "SELECT count(*) FROM (SELECT e FROM v UNION SELECT e FROM v) u") \
        == [(4,)]


def test_a_projection_of_constants_gives_the_same_row_each_run_and_volatile_ones_do_not(session):
    constant = session.prepare("SELECT 1 AS a, 'x' || 'y' AS b, 2.5::float8 AS c")
    assert [session.run(constant).rows() for _ in range(3)] == [[(1, "xy", 2.5)]] * 3
    assert session.run(constant).table.column_names == ["a", "b", "c"]
    volatile = session.prepare("SELECT random()")
    assert len({session.run(volatile).rows()[0][0] for _ in range(5)}) > 1
    parameter = session.prepare("SELECT 1 + $1::int")
    assert [session.run(parameter, [i]).rows() for i in (1, 2)] == [[(2,)], [(3,)]]
