"""Btree index scans through SQL: every operator on every indexed type gives the scan's rows
(`SET enable_indexscan = off` is the reference) on random data with NULLs, deletes and
updates, after compaction and after a restart; the index is used when it selects few rows and
not otherwise, and EXPLAIN says which."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.database import Database
from sqlvec.storage.store import StoreOptions

ROWS, SEAL = 12_000, 3_000
COLUMNS = ("i", "b", "t", "ts", "n")
BASE = dt.datetime(2024, 1, 1)


def _data(rng: np.random.Generator, lo: int, hi: int) -> pa.Table:
    n = hi - lo
    nulls = rng.random((5, n)) < 0.04
    i = rng.integers(-2_000, 2_000, n).astype(np.int32)
    b = rng.integers(-(1 << 40), 1 << 40, n)
    t = [f"k{v:05d}" for v in rng.integers(0, 3_000, n)]
    ts = [BASE + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 86_400 * 30, n)]
    num = [decimal.Decimal(int(v)) / 100 for v in rng.integers(-100_000, 100_000, n)]
    return pa.table({
        "id": pa.array(np.arange(lo, hi, dtype=np.int64)),
        "i": pa.array(i, mask=nulls[0]),
        "b": pa.array(b, mask=nulls[1]),
        "t": pa.array(t, mask=nulls[2]),
        "ts": pa.array(ts, pa.timestamp("us"), mask=nulls[3]),
        "n": pa.array(num, pa.decimal128(12, 2), mask=nulls[4]),
    })


def _open(path) -> Database:
    return Database.open(str(path), options=StoreOptions(seal_rows=SEAL, background=False))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    path = tmp_path_factory.mktemp("btree")
    rng = np.random.default_rng(14)
    db = _open(path)
    s = db.connect()
    s.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, i int, b bigint, t text, "
                  "ts timestamp, n numeric(12,2))")
    for c in COLUMNS:
        s.execute_one(f"CREATE INDEX t_{c}_idx ON t ({c})")
    s.execute_one("CREATE INDEX t_lower_idx ON t ((upper(t)))")
    for lo in range(0, ROWS, SEAL):
        s.copy_in("t", None, _data(rng, lo, lo + SEAL))
    s.copy_in("t", None, _data(rng, ROWS, ROWS + 500))  # stays in the growing segment
    # Deletes and updates in sealed segments and the growing one.
    s.execute_one("DELETE FROM t WHERE id % 7 = 3")
    s.execute_one("UPDATE t SET i = i + 1, t = t || 'x' WHERE id % 11 = 5")
    yield {"db": db, "s": s, "rng": rng, "path": path}
    s.close()
    db.close()


def _sample(s, column: str, rng: np.random.Generator, count: int) -> list[str]:
    """SQL literals of values the column holds (and one NULL-free sort of them)."""
    values = [r[0] for r in s.execute_one(
        f"SELECT {column} FROM t WHERE {column} IS NOT NULL").rows()]
    picked = [values[j] for j in rng.integers(0, len(values), count)]
    return [_literal(v) for v in picked]


def _literal(v) -> str:
    if isinstance(v, str):
        return f"'{v}'"
    if isinstance(v, dt.datetime):
        return f"'{v.isoformat(sep=' ')}'::timestamp"
    return str(v)


def _conditions(s, rng) -> list[tuple[str, bool]]:
    """(condition, whether an index should answer it)."""
    out = []
    for c in COLUMNS:
        a, b, x, y, z = _sample(s, c, rng, 5)
        out += [(f"{c} = {a}", True), (f"{c} IN ({a}, {b}, {x})", True),
                (f"{c} IS NULL", False),  # about 4% of the rows: near the crossover
                (f"{c} < {a}", None), (f"{c} <= {b}", None), (f"{c} > {x}", None),
                (f"{c} >= {y}", None), (f"{c} BETWEEN {a} AND {z}", None),
                (f"{a} >= {c}", None), (f"{c} = {a} AND id > 500", True),
                (f"{c} >= {a} AND {c} <= {a}", True)]
    out += [("i = NULL", True), ("i IN (NULL, 5)", True), ("i = 10.5", False),
            ("i < 10.5", False), ("i = 7.0", None), ("b = 5::int2", True),
            ("t = 'k00042'", True), ("t = 'k00042x'", True), ("upper(t) = 'K00042'", True),
            ("ts = '2024-01-02'", True), ("n = 12.34", True), ("n = 12.345", False),
            ("i BETWEEN 5 AND 3", True), ("i > 100 AND i < 90", True)]
    return out


def _ids(s, where: str) -> list[int]:
    return sorted(r[0] for r in s.execute_one(f"SELECT id FROM t WHERE {where}").rows())


def _plan(s, where: str) -> str:
    return "\n".join(r[0] for r in s.execute_one(f"EXPLAIN SELECT * FROM t WHERE {where}").rows())


def _check_all(s, rng) -> int:
    """Every condition gives the scan's rows; returns how many were answered by an index."""
    used = 0
    for where, expect_index in _conditions(s, rng):
        s.execute_one("SET enable_indexscan = off")
        want = _ids(s, where)
        assert "Seq Scan on t" in _plan(s, where)
        s.execute_one("RESET enable_indexscan")
        got = _ids(s, where)
        assert got == want, where
        plan = _plan(s, where)
        indexed = "Index Scan using" in plan
        used += indexed
        if expect_index is not None and where != "i IS NULL":
            assert indexed == expect_index or (not expect_index and "IS NULL" in where), \
                (where, plan)
    return used


def test_index_scans_return_the_scans_rows(env):
    assert _check_all(env["s"], env["rng"]) > 40


def test_rows_come_back_in_the_scans_order(env):
    s = env["s"]
    sql = "SELECT id, i FROM t WHERE i IN (1, 2, 3, 4)"
    got = s.execute_one(sql).rows()
    s.execute_one("SET enable_indexscan = off")
    try:
        assert s.execute_one(sql).rows() == got
    finally:
        s.execute_one("RESET enable_indexscan")


def test_explain_shows_the_index_the_run_uses(env):
    s = env["s"]
    plan = _plan(s, "i = 5 AND t > 'k'")
    assert plan.splitlines() == ["Index Scan using t_i_idx on t", "  Index Cond: (i = 5)",
                                 "  Filter: t > 'k'"]
    assert _plan(s, "i > -1000").startswith("Seq Scan on t")  # three quarters of the rows
    assert _plan(s, "id BETWEEN 10 AND 20").startswith("Index Scan using t_pkey on t")
    assert "Index Scan using t_lower_idx" in _plan(s, "upper(t) = 'K00001'")
    # With two usable indexes the one selecting fewer rows wins (exact counts).
    assert "t_b_idx" in _plan(s, "i > 0 AND i < 500 AND b = 12")
    analyzed = "\n".join(r[0] for r in s.execute_one(
        "EXPLAIN ANALYZE SELECT * FROM t WHERE b < -1099000000000").rows())
    assert "Index Scan using t_b_idx on t (actual time=" in analyzed
    s.execute_one("SET enable_indexscan = off")
    try:
        assert _plan(s, "i = 5").startswith("Seq Scan on t")
    finally:
        s.execute_one("RESET enable_indexscan")


def test_prepared_parameters_choose_per_execution(env):
    s = env["s"]
    prepared = s.prepare("SELECT count(*) FROM t WHERE i > $1", [23])
    few = s.run(prepared, [1990], None).rows()[0][0]
    many = s.run(prepared, [-1990], None).rows()[0][0]
    assert few < 100 < many
    explained = s.prepare("EXPLAIN SELECT * FROM t WHERE i > $1", [23])
    assert "Index Scan" in "\n".join(r[0] for r in s.run(explained, [1990], None).rows())
    assert "Seq Scan" in "\n".join(r[0] for r in s.run(explained, [-1990], None).rows())


def test_a_transactions_own_writes_are_seen(env):
    s = env["s"]
    s.execute_one("BEGIN")
    try:
        s.execute_one("INSERT INTO t (id, i) VALUES (900001, 1234567)")
        s.execute_one("DELETE FROM t WHERE i = 5")
        assert _ids(s, "i = 1234567") == [900001]
        assert _ids(s, "i = 5") == []
    finally:
        s.execute_one("ROLLBACK")
    assert _ids(s, "i = 1234567") == []


def test_vector_search_takes_its_candidates_from_the_index(tmp_path):
    db = _open(tmp_path / "v")
    s = db.connect()
    s.execute_one("CREATE TABLE v (id bigint PRIMARY KEY, cat int, emb vector(4))")
    s.execute_one("CREATE INDEX ON v (cat)")
    rng = np.random.default_rng(3)
    n = 2 * SEAL
    s.copy_in("v", None, pa.table({
        "id": np.arange(n, dtype=np.int64), "cat": (np.arange(n) % 500).astype(np.int32),
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * 4, np.float32)), 4)}))
    sql = "SELECT id FROM v WHERE cat = 7 AND id > 100 ORDER BY emb <-> '[0.5,0.5,0.5,0.5]' LIMIT 5"
    got = [r[0] for r in s.execute_one(sql).rows()]
    plan = "\n".join(r[0] for r in s.execute_one("EXPLAIN " + sql).rows())
    assert "Filter Index: v_cat_idx" in plan and "Index Cond: (cat = 7)" in plan, plan
    s.execute_one("SET enable_indexscan = off")
    assert [r[0] for r in s.execute_one(sql).rows()] == got
    assert len(got) == 5 and all(i % 500 == 7 and i > 100 for i in got)
    s.close()
    db.close()


def test_after_compaction_and_restart(env):
    s, db = env["s"], env["db"]
    s.execute_one("DELETE FROM t WHERE id % 3 = 0")  # enough deleted rows to compact
    assert db.table("t").compact() >= 1
    assert _check_all(s, env["rng"]) > 30
    s.close()
    db.close()
    env["db"] = db = _open(env["path"])
    env["s"] = s = db.connect()
    assert _check_all(s, env["rng"]) > 30


def test_lookups_per_outer_row(env):
    s = env["s"]
    sql = ("SELECT o.id, l.id FROM t o, LATERAL (SELECT id FROM t x WHERE x.i = o.i "
           "ORDER BY id LIMIT 2) l WHERE o.id < 40 ORDER BY 1, 2")
    got = s.execute_one(sql).rows()
    plan = "\n".join(r[0] for r in s.execute_one("EXPLAIN " + sql).rows())
    assert "Seq Scan on t x" in plan and "Index Paths: t_i_idx (chosen per outer row" in plan
    analyzed = "\n".join(r[0] for r in s.execute_one("EXPLAIN ANALYZE " + sql).rows())
    assert "Index Scan using t_i_idx on t x" in analyzed and "Index Cond: (x.i = o.i)" in analyzed
    s.execute_one("SET enable_indexscan = off")
    try:
        assert s.execute_one(sql).rows() == got and len(got) > 30
    finally:
        s.execute_one("RESET enable_indexscan")
