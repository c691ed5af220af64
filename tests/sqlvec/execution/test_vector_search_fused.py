"""A prepared vector top-k under pass-through projections and LIMITs runs in one step
(`FusedTopK`): the same rows, order, distances, errors and statistics as its operator tree,
which still runs whenever the one step cannot (no bound vector, NULL, uncommitted writes)."""

from __future__ import annotations

import numpy as np
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.storage.store import StoreOptions
from sqlvec.vectors import Metric

DIM = 8
ROWS = 3000


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    db = Database.open(str(tmp_path_factory.mktemp("fused")),
                       options=StoreOptions(fsync=False, seal_rows=1000))
    s = db.connect()
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vectors[100:110] = vectors[7]  # ties: equal distances, broken by row order
    s.execute_one(f"CREATE TABLE t (id bigint PRIMARY KEY, tag int, emb vector({DIM}))")
    rows = ",".join(f"({i}, {i % 7}, '{_text(v)}')" for i, v in enumerate(vectors))
    s.execute_one(f"INSERT INTO t VALUES {rows}")
    s.execute_one("CREATE INDEX ON t USING hnsw (emb vector_l2_ops)")
    s.execute_one("CREATE INDEX ON t USING hnsw (emb vector_cosine_ops)")
    # One sealed segment alone (its index may settle the order without re-scoring).
    s.execute_one(f"CREATE TABLE one (id bigint, emb vector({DIM}))")
    s.execute_one("INSERT INTO one SELECT id, emb FROM t WHERE id < 1000")
    s.execute_one("CREATE INDEX ON one USING hnsw (emb vector_l2_ops)")
    db.store().wait_idle()
    # Rows in the growing segment, and deleted rows in the sealed ones.
    extra = rng.standard_normal((50, DIM)).astype(np.float32)
    s.execute_one("INSERT INTO t VALUES " + ",".join(
        f"({ROWS + i}, {i % 7}, '{_text(v)}')" for i, v in enumerate(extra)))
    s.execute_one("DELETE FROM t WHERE id % 11 = 0")
    s.execute_one("SET hnsw.ef_search = 40")
    yield s
    s.close()
    db.close()


def _text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def _queries(session, n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    out = list(rng.standard_normal((n, DIM)).astype(np.float32))
    # Queries equal to stored rows (a zero distance, and the ten tied rows).
    stored = session.execute_one("SELECT emb FROM t WHERE id IN (7, 500)").table
    return out + [np.asarray(v, np.float32) for v in stored.column(0).to_pylist()]


def _both(session, prepared, params):
    """The statement's result through the one step, then through its operator tree."""
    assert prepared.fused is not None
    fused = session.run(prepared, params).table
    kept, prepared.fused = prepared.fused, None
    try:
        tree = session.run(prepared, params).table
    finally:
        prepared.fused = kept
    return fused, tree


@pytest.mark.parametrize("sql", [
    "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10",
    "SELECT id FROM one ORDER BY emb <-> $1 LIMIT 10",
    "SELECT id, emb <-> $1 AS d FROM t ORDER BY emb <-> $1 LIMIT 10",
    "SELECT id, emb <-> $1 AS d FROM one ORDER BY emb <-> $1 LIMIT 10",
    "SELECT emb, id FROM t ORDER BY emb <-> $1 LIMIT 4",
    "SELECT id FROM t ORDER BY emb <=> $1 LIMIT 10",
    "SELECT id, tag FROM t WHERE tag = 3 ORDER BY emb <-> $1 LIMIT 10",
    "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 5 OFFSET 3",
    "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 3 OFFSET 40",
    "SELECT * FROM (SELECT id FROM t ORDER BY emb <-> $1 LIMIT 20) s LIMIT 7",
    "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 0",
])
def test_one_step_gives_the_trees_result(session, sql):
    prepared = session.prepare(sql)
    for q in _queries(session):
        fused, tree = _both(session, prepared, [q])
        assert fused.equals(tree, check_metadata=True)
        assert fused.schema.equals(tree.schema, check_metadata=True)
        assert [c.name for c in prepared.columns] == fused.column_names


def test_parameters_for_limit_and_offset(session):
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT $2 OFFSET $3",
                               [0, 20, 20])
    q = _queries(session, 1)[0]
    for limit, offset in ((10, 0), (3, 2), (0, 0), (5, 10_000), (None, 5)):
        fused, tree = _both(session, prepared, [q, limit, offset])
        assert fused.equals(tree)
    assert session.run(prepared, [q, None, 2700]).table.num_rows == \
        session.execute_one("SELECT count(*) FROM t").rows()[0][0] - 2700


@pytest.mark.parametrize("limit, offset, sqlstate", [(-1, 0, "2201W"), (3, -1, "2201X")])
def test_negative_limit_or_offset_fails_as_the_tree_does(session, limit, offset, sqlstate):
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT $2 OFFSET $3",
                               [0, 20, 20])
    q = _queries(session, 1)[0]
    with pytest.raises(SqlVecError) as fused:
        session.run(prepared, [q, limit, offset])
    prepared.fused, kept = None, prepared.fused
    try:
        with pytest.raises(SqlVecError) as tree:
            session.run(prepared, [q, limit, offset])
    finally:
        prepared.fused = kept
    assert (fused.value.sqlstate, str(fused.value)) == (tree.value.sqlstate, str(tree.value))
    assert fused.value.sqlstate == sqlstate


def test_constant_bounds_are_kept_and_their_errors_repeat(session):
    # Constant LIMITs and OFFSETs are worked out once per statement; a negative one fails
    # on every run, as the tree's LimitOp does.
    q = _queries(session, 1)[0]
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 4 OFFSET 2")
    first = session.run(prepared, [q]).table
    assert first.num_rows == 4
    assert session.run(prepared, [q]).table.equals(first)
    assert first.equals(_both(session, prepared, [q])[1])
    bad = session.prepare("SELECT * FROM (SELECT id FROM t ORDER BY emb <-> $1 LIMIT 5) s "
                          "LIMIT -1")
    assert bad.fused is not None
    for _ in range(2):
        with pytest.raises(SqlVecError) as caught:
            session.run(bad, [q])
        assert caught.value.sqlstate == "2201W"


def test_wrong_dimensions_fail_as_the_tree_does(session):
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 3")
    with pytest.raises(SqlVecError) as caught:
        session.run(prepared, [np.ones(DIM + 1, np.float32)])
    assert caught.value.sqlstate == "22000"
    assert "dimensions" in str(caught.value)


@pytest.mark.parametrize("cast", ["$1::vector", f"CAST($1 AS vector({DIM}))"])
def test_a_parameter_cast_to_its_own_type_runs_in_one_step(session, cast):
    # `%s::vector` with a text parameter, as psycopg sends a vector without an adapter: the
    # parameter's type is the cast's, so the cast changes nothing and the bound array is
    # searched. The text arrives as the list of its numbers.
    plain = session.prepare("SELECT id, emb <-> $1 AS d FROM t ORDER BY emb <-> $1 LIMIT 10")
    prepared = session.prepare(f"SELECT id, emb <-> {cast} AS d FROM t "
                               f"ORDER BY emb <-> {cast} LIMIT 10")
    lone = session.prepare(f"SELECT id FROM one ORDER BY emb <-> {cast} LIMIT 10")
    for q in _queries(session):
        for params in ([q], [q.tolist()]):
            fused, tree = _both(session, prepared, params)
            assert fused.equals(tree)
            assert fused.equals(session.run(plain, [q]).table)
            fused, tree = _both(session, lone, params)
            assert fused.equals(tree)
    nulls = session.run(prepared, [None]).table  # a NULL vector: the tree, NULL distances
    assert nulls.num_rows == 10
    assert nulls.column("d").null_count == 10


def test_a_cast_that_checks_dimensions_fails_as_the_tree_does(session):
    # The cast's dimensions are the parameter's own (inferred from it): checked when bound.
    prepared = session.prepare(f"SELECT id FROM t ORDER BY emb <-> $1::vector({DIM + 1}) LIMIT 3")
    with pytest.raises(SqlVecError) as caught:
        session.run(prepared, [np.ones(DIM, np.float32).tolist()])
    assert caught.value.sqlstate == "22000"
    assert f"expected {DIM + 1} dimensions, not {DIM}" in str(caught.value)
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1::vector LIMIT 3")
    assert prepared.fused is not None
    with pytest.raises(SqlVecError) as caught:
        session.run(prepared, [np.ones(DIM + 1, np.float32).tolist()])
    assert caught.value.sqlstate == "22000"
    assert "dimensions" in str(caught.value)


def test_null_query_vector_runs_the_tree(session):
    prepared = session.prepare("SELECT id, emb <-> $1 AS d FROM t ORDER BY emb <-> $1 LIMIT 3")
    result = session.run(prepared, [None]).table
    assert result.num_rows == 3
    assert result.column("d").null_count == 3


def test_uncommitted_writes_run_the_tree(session):
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 3")
    q = _queries(session, 1)[0]
    session.execute_one("BEGIN")
    try:
        session.execute_one(f"INSERT INTO t VALUES (99999, 0, '{_text(q)}')")
        assert session.run(prepared, [q]).rows()[0] == (99999,)
    finally:
        session.execute_one("ROLLBACK")
    assert session.run(prepared, [q]).rows()[0] != (99999,)


def test_settings_reach_the_search(session):
    prepared = session.prepare("SELECT id FROM t ORDER BY emb <-> $1 LIMIT 10")
    q = _queries(session, 1)[0]
    truth = session.execute_one(
        f"SELECT id FROM t ORDER BY emb <-> '{_text(q)}' LIMIT 10").rows()
    try:
        for setting in ("SET sqlvec.exact = on", "SET enable_indexscan = off"):
            session.execute_one(setting)
            fused, tree = _both(session, prepared, [q])
            assert fused.equals(tree)
            plans = session.execute_one(
                "EXPLAIN ANALYZE SELECT id FROM t ORDER BY emb <-> "
                f"'{_text(q)}' LIMIT 10").rows()
            assert not any("hnsw" in line[0] for line in plans)
            session.execute_one("RESET sqlvec.exact")
            session.execute_one("RESET enable_indexscan")
        session.execute_one("SET hnsw.ef_search = 1000")
        assert session.run(prepared, [q]).rows() == truth
        session.execute_one("RESET hnsw.ef_search")
        session.execute_one("SET sqlvec.target_recall = 0.99")
        fused, tree = _both(session, prepared, [q])
        assert fused.equals(tree)
    finally:
        session.execute_one("RESET sqlvec.target_recall")
        session.execute_one("RESET sqlvec.exact")
        session.execute_one("RESET enable_indexscan")
        session.execute_one("SET hnsw.ef_search = 40")


def test_index_use_is_counted_once_per_run(session):
    prepared = session.prepare("SELECT id FROM one ORDER BY emb <-> $1 LIMIT 10")
    q = _queries(session, 1)[0]

    def scans() -> int:
        return session.execute_one(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE relname = 'one'").rows()[0][0]

    before = scans()
    for _ in range(3):
        session.run(prepared, [q])
    assert scans() == before + 3


@pytest.mark.parametrize("sql", [
    "SELECT id, ctid FROM t ORDER BY emb <-> $1 LIMIT 3",  # a system column: computed
    "SELECT id + 1 FROM t ORDER BY emb <-> $1 LIMIT 3",  # a computed column
    "SELECT id::int FROM t ORDER BY emb <-> $1 LIMIT 3",  # a cast
    "SELECT id FROM t ORDER BY emb <-> '[1,2,3,4,5,6,7,8]' LIMIT 3",  # no bound vector
    "SELECT id FROM t ORDER BY emb <-> $1::text::vector LIMIT 3",  # a text parameter, cast
    "SELECT id FROM t ORDER BY emb <-> $1::halfvec LIMIT 3",  # the column's type differs
    "SELECT count(*) FROM (SELECT id FROM t ORDER BY emb <-> $1 LIMIT 3) s",
])
def test_other_shapes_run_the_tree(session, sql):
    assert session.prepare(sql).fused is None


def test_a_lone_segment_is_searched_for_the_order_alone(session, monkeypatch):
    # `one` is a single sealed segment with an index: the query reads no distance, so the
    # index's own distances may settle the order (and the result is still the tree's).
    from sqlvec.storage import search

    plan = session.execute_one(
        "EXPLAIN SELECT id FROM one ORDER BY emb <-> '[1,2,3,4,5,6,7,8]' LIMIT 10").rows()
    assert any("Segments: 1 (1 hnsw)" in line[0] for line in plan)
    settled = []
    real = search._order_settled
    monkeypatch.setattr(search, "_order_settled",
                        lambda *args: settled.append(real(*args)) or settled[-1])
    prepared = session.prepare("SELECT id FROM one ORDER BY emb <-> $1 LIMIT 10")
    for q in _queries(session):
        fused, tree = _both(session, prepared, [q])
        assert fused.equals(tree)
    assert any(settled)


def test_a_repeated_statement_follows_the_knob_as_set(session):
    # The knobs are worked out once per distinct settings: each SET, SET to the same
    # value as the default, and RESET must still reach the next run of the same statement.
    explain = session.prepare("EXPLAIN ANALYZE SELECT id FROM one ORDER BY emb <-> $1 LIMIT 10")
    q = _queries(session, 1)[0]

    def ef() -> str:
        lines = [r[0] for r in session.run(explain, [q]).rows() if "ef=" in r[0]]
        assert len(lines) == 1
        return lines[0].split("ef=")[1].split()[0]

    try:
        for value in ("17", "23", "17"):
            session.execute_one(f"SET hnsw.ef_search = {value}")
            assert ef() == value
        session.execute_one("RESET hnsw.ef_search")
        by_target = ef()  # the default recall target's pick, not the last value set
        session.execute_one("SET sqlvec.max_ef_search = 5")
        assert ef() == "5"
        session.execute_one("RESET sqlvec.max_ef_search")
        assert ef() == by_target
        session.execute_one("SET hnsw.ef_search = 40")  # the default's value, but SET: exact
        assert ef() == "40"
    finally:
        session.execute_one("RESET sqlvec.max_ef_search")
        session.execute_one("SET hnsw.ef_search = 40")


def test_a_lone_search_runs_as_planned_until_its_snapshot_knobs_or_index_change(
        session, monkeypatch):
    # A search one segment's index answers alone runs again without planning
    # (TableSnapshot.search_lone), and answers as the tree does after every change its
    # plan depends on: a delete (a new snapshot), a knob, exactness, the index dropped and
    # built again, a query vector of other dimensions.
    from sqlvec.storage.table import TableSnapshot

    _one_indexed_segment(session, "lone", "id bigint", "id", 800)
    answered = []
    real = TableSnapshot.search_lone
    monkeypatch.setattr(TableSnapshot, "search_lone", _counting(real, answered))
    prepared = session.prepare("SELECT id, emb <-> $1 AS d FROM lone ORDER BY emb <-> $1 LIMIT 5")
    stored = np.asarray(session.execute_one("SELECT emb FROM lone WHERE id = 7").rows()[0][0],
                        np.float32)
    queries = [stored, *_queries(session, 3)]

    def same_as_tree() -> None:
        for q in queries:
            fused, tree = _both(session, prepared, [q])
            assert fused.equals(tree)
            # ... and as the search planned afresh gives it (no planned search run again).
            with monkeypatch.context() as planning:
                planning.setattr(TableSnapshot, "search_lone", lambda *args, **kwargs: None)
                assert session.run(prepared, [q]).table.equals(fused)

    def strategies() -> list[str]:
        return [line[0] for line in session.execute_one(
            f"EXPLAIN ANALYZE SELECT id FROM lone ORDER BY emb <-> '{_text(stored)}' LIMIT 5"
        ).rows() if "Segments:" in line[0]]

    try:
        same_as_tree()
        assert any(answered), "the lone segment's planned search ran again"
        # Rows 100-109 repeat row 7: the graph may find any of the eleven at distance 0.
        first = session.run(prepared, [stored]).rows()[0]
        assert first[1] == 0.0 and (first[0] == 7 or 100 <= first[0] < 110), first
        session.execute_one("DELETE FROM lone WHERE id = 7")
        assert 7 not in [r[0] for r in session.run(prepared, [stored]).rows()]
        same_as_tree()
        session.execute_one("SET hnsw.ef_search = 5")
        assert "ef=5" in " ".join(r[0] for r in session.execute_one(
            f"EXPLAIN ANALYZE SELECT id FROM lone ORDER BY emb <-> '{_text(stored)}' LIMIT 5"
        ).rows())
        same_as_tree()
        session.execute_one("SET sqlvec.exact = on")
        assert not any("hnsw" in line for line in strategies())
        same_as_tree()
        session.execute_one("RESET sqlvec.exact")
        session.execute_one("SET hnsw.ef_search = 40")
        same_as_tree()
        session.execute_one("DROP INDEX lone_emb")
        assert not any("hnsw" in line for line in strategies())
        same_as_tree()
        session.execute_one("CREATE INDEX lone_emb ON lone USING hnsw (emb vector_l2_ops)")
        session.database.store().wait_idle()
        assert any("hnsw" in line for line in strategies())
        same_as_tree()
        # An index detached from the segment in place (a rebuild's or a drop's first step)
        # leaves the same snapshot: its planned search no longer runs as it was.
        snap = session.database.store().find_table("lone").snapshot()
        (segment,) = [view.data for view in snap.views if view.data.n_rows]
        graph = segment.index("lone_emb")
        session.run(prepared, [stored])
        assert snap.search_lone("emb", Metric.L2, stored, 5, settings=session.settings,
                                exact=False, plans=[]) is not None
        segment.detach_index("lone_emb")
        try:
            assert snap.search_lone("emb", Metric.L2, stored, 5, settings=session.settings,
                                    exact=False, plans=[]) is None
        finally:
            segment.attach_index("lone_emb", graph)
        with pytest.raises(SqlVecError) as caught:
            session.run(prepared, [np.ones(DIM + 1, np.float32)])
        assert caught.value.sqlstate == "22000" and "dimensions" in str(caught.value)
    finally:
        session.execute_one("RESET sqlvec.exact")
        session.execute_one("SET hnsw.ef_search = 40")
        session.execute_one("DROP TABLE lone")


def _one_indexed_segment(session, name: str, columns: str, values: str, rows: int) -> None:
    """Table `name` (`columns` and `emb`) of t's first rows below id `rows`, in one sealed
    segment with an HNSW index (`<name>_emb`), built."""
    session.execute_one(f"CREATE TABLE {name} ({columns}, emb vector({DIM}))")
    session.execute_one(f"INSERT INTO {name} SELECT {values}, emb FROM t WHERE id < {rows}")
    session.execute_one(f"CREATE INDEX {name}_emb ON {name} USING hnsw (emb vector_l2_ops)")
    session.database.store().wait_idle()


def _counting(real, answered: list[bool]):
    """`real`, noting whether each call answered (not None)."""
    def call(*args, **kwargs):
        found = real(*args, **kwargs)
        answered.append(found is not None)
        return found
    return call


def test_values_of_a_lone_search_read_from_its_segment_are_the_general_paths(
        session, monkeypatch):
    # `run_values` of a search its snapshot runs as planned reads the winners' cells straight
    # from the segment (`FusedTopK._lone_values`): the same values, order, pg_stat counts and
    # NOTICEs as the general path (and the tree), under constant LIMITs and OFFSETs, and the
    # general path again for a column that is no NumPy view or a changed knob.
    from sqlvec.execution.vector_search import FusedTopK

    _one_indexed_segment(session, "lane", "id bigint, tag int, name text", "id, tag, 'r' || id",
                         900)
    taken = []
    monkeypatch.setattr(FusedTopK, "_lone_values", _counting(FusedTopK._lone_values, taken))
    stored = np.asarray(session.execute_one("SELECT emb FROM lane WHERE id = 7").rows()[0][0],
                        np.float32)
    queries = [stored, *_queries(session, 8)]

    def counts() -> tuple:
        return tuple(session.execute_one(
            "SELECT idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes "
            "WHERE indexrelname = 'lane_emb'").rows()[0])

    def general(prepared, q):
        with monkeypatch.context() as off:
            off.setattr(FusedTopK, "_lone_values", lambda self, ctx: None)
            return session.run_values(prepared, [q])

    def same(sql: str, lone: bool) -> None:
        prepared = session.prepare(sql)
        for q in queries[:2]:  # (k and the LIMITs worked out, the search planned, kept)
            session.run_values(prepared, [q])
        for q in queries:
            taken.clear()
            before = counts()
            result = session.run_values(prepared, [q])
            assert taken == [lone]
            after = counts()
            expected = general(prepared, q)
            assert counts()[0] == after[0] + 1
            assert [a - b for a, b in zip(after, before)] == \
                [a - b for a, b in zip(counts(), after)]
            assert result.values == expected.values
            assert result.values == [c.to_pylist() for c in session.run(prepared, [q]).table.columns]
            assert [n.message for n in result.notices] == [n.message for n in expected.notices]

    try:
        same("SELECT id FROM lane ORDER BY emb <-> $1 LIMIT 10", True)
        same("SELECT tag, id FROM lane ORDER BY emb <-> $1 LIMIT 7 OFFSET 2", True)
        same("SELECT id FROM (SELECT id, tag FROM lane ORDER BY emb <-> $1 LIMIT 8) s "
             "LIMIT 5 OFFSET 1", True)
        same("SELECT id, name FROM lane ORDER BY emb <-> $1 LIMIT 5", False)  # text: no view
        same("SELECT id, emb <-> $1 FROM lane ORDER BY emb <-> $1 LIMIT 5", False)  # distance
        session.execute_one("SET sqlvec.target_recall = 0.9999")  # beyond the cap: NOTICEs
        session.execute_one("SET sqlvec.max_ef_search = 8")
        session.execute_one("RESET hnsw.ef_search")
        same("SELECT id FROM lane ORDER BY emb <-> $1 LIMIT 10", True)
        assert session.run_values(session.prepare(
            "SELECT id FROM lane ORDER BY emb <-> $1 LIMIT 10"), [stored]).notices
    finally:
        session.execute_one("RESET sqlvec.target_recall")
        session.execute_one("RESET sqlvec.max_ef_search")
        session.execute_one("SET hnsw.ef_search = 40")
        session.execute_one("DROP TABLE lane")


def test_what_a_lone_search_reads_besides_its_winners_goes_with_its_snapshot(session):
    # The segment's columns, the index's name and the LIMIT's cut a lone search reads at every
    # run are kept with the snapshot (`FusedTopK._lone_of`), not by the prepared statement,
    # which holds no segment array: once the table changes, the old snapshot and what it kept
    # are freed, and the runs answer as the tree does.
    import gc
    import weakref

    _one_indexed_segment(session, "kept", "id bigint, tag int", "id, tag", 700)
    try:
        prepared = session.prepare("SELECT tag, id FROM kept ORDER BY emb <-> $1 LIMIT 6")
        q = _queries(session, 1)[0]
        for _ in range(3):
            first = session.run_values(prepared, [q]).values
        snap = session.database.store().find_table("kept").snapshot()
        kept = snap.kept(prepared.fused)
        assert kept is not None and kept[2] == "kept_emb" and kept[3] == slice(0, 6)
        tags, ids = kept[1]  # (the segment's columns, one value per row)
        assert len(tags) == len(ids) == kept[0].view.data.n_rows
        assert [tags[ids == i].tolist() for i in first[1]] == [[t] for t in first[0]]
        assert not _arrays_in(vars(prepared.fused))
        old = weakref.ref(snap)
        del snap, kept, tags, ids
        session.execute_one(f"DELETE FROM kept WHERE id = {first[1][0]}")
        second = session.run_values(prepared, [q]).values
        assert first[1][0] not in second[1]
        assert second == [c.to_pylist() for c in session.run(prepared, [q]).table.columns]
        gc.collect()
        assert old() is None
    finally:
        session.execute_one("DROP TABLE kept")


def test_many_sessions_keep_their_lone_searches_and_the_snapshots_plans(session):
    # Each session's prepared statement keeps its own lone search with the snapshot they
    # share: 40 of them must not empty the snapshot's plans (its memo) as they come.
    _one_indexed_segment(session, "many", "id bigint", "id", 700)
    sessions = [session.database.connect() for _ in range(40)]
    try:
        sql = "SELECT id FROM many ORDER BY emb <-> $1 LIMIT 4"
        q = _queries(session, 1)[0]
        prepared = [s.prepare(sql) for s in sessions]
        answers = {str(s.run_values(p, [q]).values) for s, p in zip(sessions, prepared)
                   for _ in range(3)}  # (the first run plans; the next ones are lone)
        assert len(answers) == 1
        snap = session.database.store().find_table("many").snapshot()
        assert all(snap.kept(p.fused) is not None for p in prepared)
        assert any(key[0] == "lone" for key in snap._memo if isinstance(key, tuple))
    finally:
        for s in sessions:
            s.close()
        session.execute_one("DROP TABLE many")


def _arrays_in(value: object, depth: int = 4) -> bool:
    """Whether `value` holds a NumPy array, in containers down to `depth` levels."""
    if isinstance(value, np.ndarray):
        return True
    if depth == 0:
        return False
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return any(_arrays_in(v, depth - 1) for v in value)
    return False
