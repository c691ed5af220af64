"""`(a, b) IN (SELECT x, y ...)` against a reference evaluation of SQL's definition (the OR over
the subquery's rows of `a = x AND b = y`, in three-valued logic), on random tables full of
NULLs and duplicates: uncorrelated, correlated, NOT IN, and three columns."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.database import Database


def _and(values):
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values):
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _eq(a, b):
    return None if a is None or b is None else a == b


def row_in(probe: tuple, rows: list[tuple]):
    return _or([_and([_eq(a, b) for a, b in zip(probe, r)]) for r in rows])


def _not(v):
    return None if v is None else not v


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("rowin") / "data"))
    s = db.connect()
    rng = np.random.default_rng(3)

    def value():
        return None if rng.random() < 0.25 else int(rng.integers(0, 3))

    probes = [(i, value(), value(), value(), int(rng.integers(0, 3))) for i in range(60)]
    rows = [(value(), value(), value(), int(rng.integers(0, 3))) for _ in range(25)]
    s.execute_one("CREATE TABLE p (id int, a int, b int, c int, g int)")
    s.execute_one("CREATE TABLE r (x int, y int, z int, g int)")
    literal = lambda t: "(" + ", ".join("NULL" if v is None else str(v) for v in t) + ")"  # noqa: E731
    s.execute_one("INSERT INTO p VALUES " + ", ".join(literal(t) for t in probes))
    s.execute_one("INSERT INTO r VALUES " + ", ".join(literal(t) for t in rows))
    yield s, probes, rows
    s.close()
    db.close()


def test_uncorrelated_in_and_not_in(data):
    s, probes, rows = data
    got = s.execute_one("SELECT id, (a, b) IN (SELECT x, y FROM r), (a, b) NOT IN "
                        "(SELECT x, y FROM r) FROM p ORDER BY id").rows()
    for (pid, a, b, _, _), (gid, hit, miss) in zip(probes, got):
        assert gid == pid
        expected = row_in((a, b), [(x, y) for x, y, _, _ in rows])
        assert (hit, miss) == (expected, _not(expected)), (a, b)


def test_correlated(data):
    s, probes, rows = data
    got = s.execute_one("SELECT id, (a, b) IN (SELECT x, y FROM r WHERE r.g = p.g) FROM p "
                        "ORDER BY id").rows()
    for (pid, a, b, _, g), (gid, hit) in zip(probes, got):
        assert gid == pid
        expected = row_in((a, b), [(x, y) for x, y, _, rg in rows if rg == g])
        assert hit == expected, (a, b, g)


def test_three_columns_in_where(data):
    s, probes, rows = data
    got = [r[0] for r in s.execute_one("SELECT id FROM p WHERE (a, b, c) IN "
                                       "(SELECT x, y, z FROM r) ORDER BY id").rows()]
    expected = [pid for pid, a, b, c, _ in probes
                if row_in((a, b, c), [(x, y, z) for x, y, z, _ in rows]) is True]
    assert got == expected


def test_empty_subquery_is_false_even_for_null_probes(data):
    s, _, _ = data
    got = s.execute_one("SELECT DISTINCT (a, b) IN (SELECT x, y FROM r WHERE false) FROM p").rows()
    assert got == [(False,)]


@pytest.mark.parametrize("op", ["=", "<>", "<", "<=", ">", ">="])
def test_row_comparisons_match_the_definition(data, op):
    s, probes, _ = data
    got = s.execute_one(f"SELECT id, (a, b, c) {op} (1, b, 1) FROM p ORDER BY id").rows()
    compare = {"=": lambda u, v: u == v, "<>": lambda u, v: u != v, "<": lambda u, v: u < v,
               "<=": lambda u, v: u <= v, ">": lambda u, v: u > v, ">=": lambda u, v: u >= v}[op]
    for (pid, a, b, c, _), (gid, value) in zip(probes, got):
        assert gid == pid
        left, right = (a, b, c), (1, b, 1)
        if op in ("=", "<>"):
            pairs = [_eq(u, v) for u, v in zip(left, right)]
            expected = _and(pairs) if op == "=" else _not(_and(pairs)) if None not in pairs \
                else (True if False in pairs else None)
        else:
            expected = None
            for i, (u, v) in enumerate(zip(left, right)):
                if u is None or v is None:
                    break
                if u != v or i == 2:
                    expected = compare(u, v)
                    break
        assert value == expected, (left, right)


def test_reference_sanity():
    assert row_in((1, None), [(1, 2)]) is None
    assert row_in((1, None), [(2, 2)]) is False
    assert row_in((1, 2), [(None, 3), (1, 2)]) is True
