"""Single-row write fast paths (FastInsert, KeyWrite, ScalarKeyWrite) against the general path.

Two databases receive the same statements with the same parameters: one runs them as prepared
(taking the fast paths where they apply), the other with the fast paths removed from the
prepared statement. Every outcome (result, or SQLSTATE and message) and the tables' contents
must be the same, for well-typed values, NULLs, values of other types or out of range,
duplicate keys and constraint violations.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlvec.database import Database
from sqlvec.errors import SerializationFailure, SqlVecError
from sqlvec.execution.dml import FastInsert, KeyWrite, ScalarKeyWrite
from sqlvec.execution.values import typed_params
from sqlvec.storage.keys import MISSING

SCHEMA = [
    "CREATE SEQUENCE seq",
    "CREATE TABLE t (id bigint PRIMARY KEY, i int, s smallint, f float8, r real, b bool, "
    "tx text, vc varchar(4), by bytea, v vector(3), n numeric(6,2), ts timestamp, "
    "nn text NOT NULL DEFAULT 'd', q bigint DEFAULT nextval('seq'))",
    "CREATE TABLE k (name text PRIMARY KEY, x int)",
    # Every column a parameter of a type the row is kept in as Python values (RowInsertOp).
    "CREATE TABLE w (id bigint PRIMARY KEY, i int, s smallint, f float8, b bool, tx text, "
    "by bytea, u int UNIQUE, nn text NOT NULL)",
]

INT8, INT4, INT2, TEXT, FLOAT8, FLOAT4, BOOL, BYTEA, NUMERIC = 20, 23, 21, 25, 701, 700, 16, 17, 1700

ALL = ("INSERT INTO t (id, i, s, f, r, b, tx, vc, by, v, n, ts) "
       "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
STATEMENTS = {
    "all": ALL,
    "some": "INSERT INTO t (id, i, tx, nn) VALUES ($1, $2, 'const', DEFAULT) "
            "RETURNING id, q, nn, i + 1",
    "expr": "INSERT INTO t (id, i) VALUES ($1, $2 + 1)",
    "swapped": "INSERT INTO t (i, id) VALUES ($2, $1)",
    "defaults": "INSERT INTO t (id, q, ts, nn) VALUES ($1, DEFAULT, DEFAULT, DEFAULT)",
    "key": "INSERT INTO k VALUES ($1, $2)",
    "row": "INSERT INTO w VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    "update": "UPDATE t SET i = i + 1, tx = $2 WHERE id = $1",
    "set_key": "UPDATE t SET id = $2 WHERE id = $1",
    "set_value": "UPDATE t SET i = $2 WHERE id = $1",
    "update_k": "UPDATE k SET x = x * 2 WHERE name = $1",
    "update_mix": "UPDATE t SET s = s - $2, i = 2 * i, tx = tx, q = id * q WHERE id = $1",
    "update_alias": 'UPDATE t AS x SET tx = $2, "i" = x.i - 3 WHERE x.id = $1',
    "delete": "DELETE FROM t WHERE id = $1",
    "update_w": "UPDATE w SET i = i + $2, tx = $3 WHERE id = $1",
    "set_u": "UPDATE w SET u = $2 WHERE id = $1",
    "delete_k": "DELETE FROM k WHERE name = $1",
}
# Parameter types a client may give per statement (0: let the server infer them).
GIVEN_TYPES = {
    "all": [(0, INT8, INT4), (0, INT4, INT8, INT2, TEXT), (0, INT2, INT4), (0, FLOAT8, INT8),
            (0, FLOAT4, FLOAT8), (0, BOOL), (0, TEXT), (0, TEXT), (0, BYTEA), (0,), (0, NUMERIC),
            (0,)],
    "some": [(0, INT8, INT4), (0, INT4, INT8)],
    "expr": [(0, INT8), (0, INT4, INT8)],
    "swapped": [(0, INT8, INT2), (0, INT4)],
    "defaults": [(0, INT8, INT4)],
    "key": [(0, TEXT), (0, INT4, INT8)],
    "row": [(0, INT8, INT4), (0, INT4, INT8), (0, INT2), (0, FLOAT8), (0, BOOL), (0, TEXT),
            (0, BYTEA), (0, INT4), (0, TEXT)],
    "update": [(0, INT8, INT4), (0, TEXT)],
    "set_key": [(0, INT8, INT4), (0, INT8, INT4)],
    "set_value": [(0, INT8), (0, INT4, INT8, TEXT)],
    "update_k": [(0, TEXT)],
    "update_mix": [(0, INT8, INT4), (0, INT2, INT4, INT8)],
    "update_alias": [(0, INT8, INT2), (0, TEXT)],
    "delete": [(0, INT8, INT4, INT2)],
    "update_w": [(0, INT8), (0, INT4, INT2), (0, TEXT)],
    "set_u": [(0, INT8), (0, INT4, INT8)],
    "delete_k": [(0, TEXT)],
}

def mostly(valid, *odd):
    """Valid values seven times in eight; NULL or odd ones (other types, out of range, ...)
    otherwise (a statement has up to 12 parameters: most should still succeed)."""
    other = st.one_of(st.none(), *odd)
    return st.integers(0, 7).flatmap(lambda k: other if k == 0 else valid)


keys = mostly(st.integers(0, 60), st.sampled_from([-1, 2**31, 2**63 - 1, 2**63, True, 3.0, "4"]))
ints = mostly(st.integers(-3, 3) | st.sampled_from([2**31 - 1, -2**31, 2**15 - 1]),
              st.sampled_from([2**31, 2**15, -2**15 - 1, 2**63, True, 2.5, "7", "x"]))
smallints = mostly(st.integers(-2**15, 2**15 - 1), st.sampled_from([2**15, 2**31, "7", 1.0]))
floats = mostly(st.floats(allow_nan=True, allow_infinity=True, width=64),
                st.integers(-5, 5), st.sampled_from([1e300, "1.5", decimal.Decimal("2.5")]))
reals = mostly(st.floats(allow_nan=True, allow_infinity=True, width=32),
               st.integers(-5, 5), st.sampled_from([1e300, 0.1, "1.5"]))
texts = mostly(st.text(max_size=6), st.sampled_from(["a\0b", 5, b"x", "abcde"]))
vectors = mostly(
    st.lists(st.floats(-10, 10, width=32), min_size=3, max_size=3).map(
        lambda xs: np.array(xs, np.float32)),
    st.sampled_from([np.array([1, 2], np.float32), np.array([np.nan, 1, 2], np.float32),
                     np.array([1e39, 1, 2], np.float64), np.array([1, 2, 3], np.float64),
                     np.array([1, 2, 3], np.int64), [1.0, 2.0, 3.0], "[1,2,3]", "[1,2]"]))
values = {
    "id": keys, "i": ints, "s": smallints, "f": floats, "r": reals,
    "b": mostly(st.booleans(), st.sampled_from([1, "t"])),
    "tx": texts, "vc": texts,
    "by": mostly(st.binary(max_size=4), st.sampled_from(["\\x00", 3])),
    "v": vectors,
    "n": mostly(st.decimals(-1000, 1000, places=2, allow_nan=False),
                st.sampled_from([1.5, 3, "2.25", decimal.Decimal("1e10"), decimal.Decimal("1.125")])),
    "ts": mostly(st.just(dt.datetime(2024, 1, 2, 3, 4, 5)),
                 st.sampled_from(["2024-01-02 03:04:05", "nope", 5])),
    "name": mostly(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from([1, "a\0"])),
}
PARAMS = {
    "all": ["id", "i", "s", "f", "r", "b", "tx", "vc", "by", "v", "n", "ts"],
    "some": ["id", "i"], "expr": ["id", "i"], "swapped": ["id", "i"], "key": ["name", "i"],
    "defaults": ["id"], "row": ["id", "i", "s", "f", "b", "tx", "by", "i", "tx"],
    "update": ["id", "tx"], "set_key": ["id", "id"], "set_value": ["id", "i"],
    "update_k": ["name"], "update_mix": ["id", "s"], "update_alias": ["id", "tx"],
    "delete": ["id"], "delete_k": ["name"], "update_w": ["id", "i", "tx"],
    "set_u": ["id", "i"],
}


def general(prepared):
    """The prepared statement without its fast paths: what the general path does with it."""
    write = copy.copy(prepared.compiled)
    write.fast = None
    write.by_key = None
    return dataclasses.replace(prepared, compiled=write)


def outcome(session, prepared, params) -> tuple:
    try:
        result = session.run(prepared, list(params))
    except SqlVecError as exc:
        return ("error", exc.sqlstate, exc.message, exc.detail)
    return ("ok", result.tag, comparable(result.rows()))


def prepared_or_error(session, sql, oids):
    try:
        return session.prepare(sql, list(oids))
    except SqlVecError as exc:
        return ("error", exc.sqlstate, exc.message)


def comparable(rows: list[tuple]) -> list[tuple]:
    """Rows with NaN made equal to itself and lists made tuples."""
    def value(v):
        if isinstance(v, float) and v != v:
            return "NaN"
        return tuple(value(x) for x in v) if isinstance(v, (list, tuple)) else v
    return [tuple(value(v) for v in row) for row in rows]


def contents(session) -> list:
    out = []
    for table in ("t", "k", "w"):
        out.append(comparable(session.execute_one(f"SELECT * FROM {table} ORDER BY 1").rows()))
    out.append(session.execute_one("SELECT nextval('seq')").rows())
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(fast, general): sessions on two databases with the same tables."""
    sessions, dbs = [], []
    for name in ("fast", "general"):
        db = Database.open(str(tmp_path_factory.mktemp(name)))
        s = db.connect()
        for sql in SCHEMA:
            s.execute_one(sql)
        dbs.append(db)
        sessions.append(s)
    yield tuple(sessions)
    for s, db in zip(sessions, dbs):
        s.close()
        db.close()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fast_paths_match_the_general_path(pair, data):
    fast, slow = pair
    for s in pair:  # an earlier example that failed may have left its block open
        if s.transaction_status != "I":
            s.execute_one("ROLLBACK")
    block = data.draw(st.sampled_from([None, None, None, "COMMIT", "ROLLBACK"]), label="block")
    if block is None and data.draw(st.integers(0, 3), label="seal") == 0:
        for s in pair:  # the rows so far into a sealed segment: located there, not growing
            s.execute_one("CHECKPOINT")
    if block:
        for s in pair:
            s.execute_one("BEGIN")
    for _ in range(data.draw(st.integers(1, 6), label="statements")):
        name = data.draw(st.sampled_from(sorted(STATEMENTS)), label="statement")
        oids = [data.draw(st.sampled_from(choices)) for choices in GIVEN_TYPES[name]]
        params = [data.draw(values[p], label=p) for p in PARAMS[name]]
        a = prepared_or_error(fast, STATEMENTS[name], oids)
        b = prepared_or_error(slow, STATEMENTS[name], oids)
        if isinstance(a, tuple) or isinstance(b, tuple):
            assert a == b
            continue
        assert outcome(fast, a, params) == outcome(slow, general(b), params), (name, oids, params)
    if block:
        for s in pair:
            s.execute_one(block)
    assert contents(fast) == contents(slow)


def test_the_benchmark_statements_take_the_fast_paths(pair):
    fast, _ = pair
    insert = fast.prepare("INSERT INTO t (id, i, tx) VALUES ($1, $2, $3)", [INT8, INT2, TEXT])
    assert isinstance(insert.compiled.fast, FastInsert)
    assert [c[0] for c in insert.compiled.fast.columns][:7] == \
        ["param", "param", "default", "default", "default", "default", "param"]
    for sql in ("UPDATE t SET i = i + 1 WHERE id = $1", "DELETE FROM t WHERE id = $1",
                "UPDATE k SET x = x * 2 WHERE name = $1", STATEMENTS["update_w"],
                STATEMENTS["set_u"]):
        by_key = fast.prepare(sql, [TEXT if "name" in sql else INT8]).compiled.by_key
        assert isinstance(by_key, KeyWrite)
        assert isinstance(by_key.scalar, ScalarKeyWrite) and by_key.scalar.ready
    for sql, oids in (("UPDATE t SET i = i + 1.5 WHERE id = $1", [INT8]),  # not integers
                      ("UPDATE t SET n = $2 WHERE id = $1", [INT8, NUMERIC]),
                      ("UPDATE t SET i = abs(i) WHERE id = $1", [INT8]),
                      ("UPDATE t SET tx = vc WHERE id = $1", [INT8])):  # another type
        scalar = fast.prepare(sql, oids).compiled.by_key.scalar
        assert scalar is None or not scalar.ready
    for sql in ("UPDATE t SET i = 1 WHERE id = $1 AND i > 0",  # more than the key in WHERE
                "UPDATE t SET i = 1 WHERE id = $1 RETURNING i",
                "DELETE FROM t WHERE id IN ($1, $2)"):
        assert fast.prepare(sql).compiled.by_key is None
    assert fast.prepare("INSERT INTO k VALUES ($1, 1) ON CONFLICT DO NOTHING").compiled.fast \
        is None
    plan = fast.execute_one("EXPLAIN UPDATE t SET i = i + 1 WHERE id = 5").rows()
    assert any("Index Scan using t_pkey" in line for (line,) in plan)


def test_rows_kept_as_values_are_logged_replayed_and_sealed_as_rows(tmp_path):
    """A single-row INSERT whose every column is a parameter of a scalar type commits its
    row as Python values (`RowInsertOp`): logged, applied and read back as the same rows the
    general path writes, after a restart that replays the log, and once sealed."""
    rows = [(1, 2, 3, 0.5, True, "é\n", b"\x00\xff", 7, "a"),
            (2, None, None, None, None, None, None, None, ""),
            (3, -2**31, -2**15, float("inf"), False, "x" * 300, b"", 2**31 - 1, "z")]
    sql = "INSERT INTO w VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    oids = [INT8, INT4, INT2, FLOAT8, BOOL, TEXT, BYTEA, INT4, TEXT]
    for restart in ("replay", "seal"):
        directory = tmp_path / restart
        with Database.open(str(directory)) as db:
            s = db.connect()
            s.execute_one(SCHEMA[-1])
            prepared = s.prepare(sql, oids)
            assert prepared.compiled.fast.all_params
            for row in rows:
                assert s.run(prepared, list(row)).tag == "INSERT 0 1"
            for bad, state in (((1, *rows[0][1:]), "23505"), ((4, *rows[0][1:7], 7, "b"), "23505"),
                               ((5, *rows[1][1:8], None), "23502")):
                with pytest.raises(SqlVecError) as caught:
                    s.run(prepared, list(bad))
                assert caught.value.sqlstate == state
            before = s.execute_one("SELECT * FROM w ORDER BY id").rows()
            assert comparable(before) == comparable(rows)
            if restart == "seal":
                s.execute_one("CHECKPOINT")
        with Database.open(str(directory)) as db:
            s = db.connect()
            assert comparable(s.execute_one("SELECT * FROM w ORDER BY id").rows()) == \
                comparable(rows)
            with pytest.raises(SqlVecError) as caught:  # the keys are indexed again
                s.execute_one("INSERT INTO w VALUES (9, 0, 0, 0, true, '', '', 7, 'q')")
            assert caught.value.sqlstate == "23505"


def test_the_key_parameter_keeps_its_declared_range_when_set_has_other_ranges(pair):
    """An int4 key parameter of a bigint key, with SET arithmetic of other integer types: a
    value past int4 is 22003 on the key paths too (the range is the parameter's, not one of
    SET's), as the general path and PostgreSQL's Bind say."""
    fast, slow = pair
    sql = "UPDATE t SET s = s - $2, i = 2 * i, q = id * q WHERE id = $1"
    prepared = fast.prepare(sql, [INT4, 0])
    assert prepared.compiled.by_key.scalar.ready
    for session, statement in ((fast, prepared), (slow, general(slow.prepare(sql, [INT4, 0])))):
        assert outcome(session, statement, [2**31, None])[:2] == ("error", "22003")
        assert outcome(session, statement, [2**31 - 1, None])[0] == "ok"


def test_a_fallback_evaluates_defaults_once(tmp_path):
    """A parameter the fast path does not take (text for an integer column) sends the
    statement down the general path before any default runs: nextval advances once."""
    with Database.open(str(tmp_path)) as db:
        s = db.connect()
        for sql in SCHEMA:
            s.execute_one(sql)
        insert = s.prepare("INSERT INTO t (id, i) VALUES ($1, $2)", [INT8, INT4])
        s.run(insert, [1, 5])
        s.run(insert, [2, "7"])  # not an int: the general path parses it
        with pytest.raises(SqlVecError) as caught:
            s.run(insert, [3, 2**31])
        assert caught.value.sqlstate == "22003"
        assert s.execute_one("SELECT id, i, q FROM t ORDER BY id").rows() == \
            [(1, 5, 1), (2, 7, 2)]
        assert s.execute_one("SELECT nextval('seq')").rows() == [(3,)]  # the failure ran none


@pytest.mark.parametrize("where", ["id = $1", "i > $1 - 1000"])  # by key, and by a scan
def test_an_autocommit_update_that_loses_its_row_runs_again_on_the_new_version(tmp_path, where):
    """Another commit updates the row between this UPDATE's read and its commit: the commit
    refuses the stale version (40001 inside), and the statement runs again on the new one, as
    READ COMMITTED re-checks an updated row: both increments count, no error reaches the
    client."""
    with Database.open(str(tmp_path)) as db:
        s, other = db.connect(), db.connect()
        for sql in SCHEMA:
            s.execute_one(sql)
        s.execute_one("INSERT INTO t (id, i) VALUES (1, 10), (2, 20)")
        update = s.prepare(f"UPDATE t SET i = i + 1 WHERE {where}", [INT8])
        store = s.store
        commit, raced = store.commit, []

        def racing(ops):  # the other session's commit lands first, once
            if not raced:
                raced.append(True)
                other.execute_one("UPDATE t SET i = i + 100 WHERE id = 1")
            return commit(ops)

        store.commit = racing
        try:
            result = s.run(update, [1])
        finally:
            del store.commit
        assert raced
        assert result.tag == ("UPDATE 1" if where == "id = $1" else "UPDATE 2")
        expected = [(1, 111), (2, 20)] if where == "id = $1" else [(1, 111), (2, 21)]
        assert s.execute_one("SELECT id, i FROM t ORDER BY id").rows() == expected


def test_concurrent_updates_of_the_same_rows_all_count(tmp_path):
    """Four sessions incrementing ten rows by key at once: a statement that loses its row to
    a commit in flight waits for it and runs again on the new version, so none fails (as in
    PostgreSQL at READ COMMITTED) and no increment is lost."""
    with Database.open(str(tmp_path)) as db:
        setup = db.connect()
        setup.execute_one("CREATE TABLE c (id bigint PRIMARY KEY, n int)")
        setup.execute_one("INSERT INTO c SELECT g, 0 FROM generate_series(0, 9) g")
        failures: list[str] = []

        def writer(j: int) -> None:
            s = db.connect()
            update = s.prepare("UPDATE c SET n = n + 1 WHERE id = $1", [INT8])
            for i in range(150):
                try:
                    s.run(update, [(i * 7 + j) % 10])
                except SqlVecError as exc:
                    failures.append(exc.sqlstate)

        threads = [threading.Thread(target=writer, args=(j,)) for j in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert setup.execute_one("SELECT sum(n) FROM c").rows() == [(600,)]


def test_a_key_write_whose_row_changed_meanwhile_fails_with_40001(tmp_path):
    """The row an UPDATE by key read is deleted by another commit before its own commits:
    the commit refuses it, as for any write that lost its row."""
    with Database.open(str(tmp_path)) as db:
        s, other = db.connect(), db.connect()
        for sql in SCHEMA:
            s.execute_one(sql)
        s.execute_one("INSERT INTO t (id, i) VALUES (1, 10)")
        update = s.prepare("UPDATE t SET i = i + 1 WHERE id = $1", [INT8])
        ops = update.compiled.by_key.ops(s._context(typed_params(update.param_types, [1])))
        other.execute_one("DELETE FROM t WHERE id = 1")
        with pytest.raises(SerializationFailure):
            s.store.commit(ops)
        assert s.execute_one("SELECT count(*) FROM t").rows() == [(0,)]
        table = s.store.table(update.compiled.table.id)
        assert table.find_key(1) == MISSING  # nothing of the failed commit is left claimed


def test_single_row_writes_keep_the_key_index_exact(tmp_path):
    """The commit of a single-row INSERT or UPDATE by key takes the row's keys from what the
    statement already knew (its parameters, the key it located the row by) rather than reading
    them back: every key the index then holds is the row's own. A moved key frees the old one
    and holds the new one; a kept key stays held; a text key as an integer one."""
    with Database.open(str(tmp_path)) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int)")
        s.execute_one("CREATE TABLE k (name text PRIMARY KEY, x int)")
        insert = s.prepare("INSERT INTO t VALUES ($1, $2)", [INT8, INT4])
        insert_k = s.prepare("INSERT INTO k VALUES ($1, $2)", [TEXT, INT4])
        move = s.prepare("UPDATE t SET id = id + 100, v = v + 1 WHERE id = $1", [INT8])
        bump = s.prepare("UPDATE t SET v = v + 1 WHERE id = $1", [INT8])
        bump_k = s.prepare("UPDATE k SET x = x * 2 WHERE name = $1", [TEXT])
        for statement in (move, bump, bump_k):
            assert statement.compiled.by_key.scalar.ready
        for i in range(3):
            s.run(insert, [i, i])
            s.run(insert_k, [f"n{i}", i])
        s.execute_one("CHECKPOINT")  # rows 0-2 sealed; the later ones in the growing segment
        s.run(insert, [3, 3])
        for key in (1, 3):  # one sealed row, one growing
            assert s.run(move, [key]).tag == "UPDATE 1"
            assert s.run(bump, [key + 100]).tag == "UPDATE 1"
        assert s.run(bump_k, ["n1"]).tag == "UPDATE 1"
        for key, moved in ((1, True), (3, True), (0, False), (2, False)):
            new = key + 100 if moved else key
            with pytest.raises(SqlVecError) as held:
                s.run(insert, [new, 0])
            assert held.value.sqlstate == "23505"
            if moved:  # the old key is free again
                assert s.run(insert, [key, 9]).tag == "INSERT 0 1"
        with pytest.raises(SqlVecError) as held:
            s.run(insert_k, ["n1", 0])
        assert held.value.sqlstate == "23505"
        assert s.execute_one("SELECT id, v FROM t ORDER BY id").rows() == [
            (0, 0), (1, 9), (2, 2), (3, 9), (101, 3), (103, 5)]
        assert s.execute_one("SELECT x FROM k WHERE name = 'n1'").rows() == [(2,)]
        for key in (101, 103, 0):  # found through the index
            assert s.execute_one(f"SELECT count(*) FROM t WHERE id = {key}").rows() == [(1,)]


def test_updates_by_key_of_rows_earlier_updates_wrote_read_and_replay_right(tmp_path):
    """UPDATEs by key over Python values of the same few rows, again and again: each reads
    the row an earlier one wrote (queued, folded into chunks of the growing segment, then in a
    sealed segment with gaps in its row ids once deletes passed a seal), and the table after
    them, and after a restart that replays the log, is the Python model's."""
    with Database.open(str(tmp_path)) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE u (id bigint PRIMARY KEY, v int, s text)")
        s.execute_one("INSERT INTO u SELECT g, g * 10, 'r' || g FROM generate_series(0, 39) g")
        s.execute_one("CHECKPOINT")  # a dense sealed segment first
        add = s.prepare("UPDATE u SET v = v + $2 WHERE id = $1", [INT8, INT4])
        name = s.prepare("UPDATE u SET s = $2 WHERE id = $1", [INT8, TEXT])
        assert add.compiled.by_key.scalar.ready and name.compiled.by_key.scalar.ready
        model = {i: [i * 10, f"r{i}"] for i in range(40)}
        rng = np.random.default_rng(3)
        for step in range(600):
            key = int(rng.integers(0, 45))  # a few keys no row holds
            if step % 3:
                tag = s.run(add, [key, step]).tag
                if key in model:
                    model[key][0] += step
            else:
                tag = s.run(name, [key, f"n{step}"]).tag
                if key in model:
                    model[key][1] = f"n{step}"
            assert tag == f"UPDATE {1 if key in model else 0}"
            if step % 53 == 0:  # a reader folds the queue
                assert s.execute_one("SELECT count(*) FROM u").rows() == [(40,)]
            if step == 300:
                s.execute_one("CHECKPOINT")
        expected = [(k, v, t) for k, (v, t) in sorted(model.items())]
        assert s.execute_one("SELECT * FROM u ORDER BY id").rows() == expected
    with Database.open(str(tmp_path)) as db:
        assert db.connect().execute_one("SELECT * FROM u ORDER BY id").rows() == expected


@pytest.mark.parametrize("sql", [
    "WITH x AS (UPDATE c SET n = 1 WHERE id = 2 RETURNING id) UPDATE c SET n = 1 WHERE id = 1",
    "WITH x AS (DELETE FROM c WHERE id = 2 RETURNING id) DELETE FROM c WHERE id = 1",
    "WITH x AS (INSERT INTO c VALUES (3, 0) RETURNING id) INSERT INTO c VALUES (4, 0)",
])
def test_a_write_with_a_writing_cte_is_refused_and_changes_nothing(tmp_path, sql):
    """A data-modifying CTE does not run here: the statement is 0A000 rather than the outer
    write alone (which lost the CTE's writes)."""
    with Database.open(str(tmp_path)) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE c (id int PRIMARY KEY, n int)")
        s.execute_one("INSERT INTO c VALUES (1, 0), (2, 0)")
        with pytest.raises(SqlVecError) as caught:
            s.execute_one(sql)
        assert caught.value.sqlstate == "0A000"
        assert s.execute_one("SELECT id, n FROM c ORDER BY id").table.to_pylist() == \
            [{"id": 1, "n": 0}, {"id": 2, "n": 0}]
