"""session/core.py: transaction blocks, two sessions racing on a primary key, parameters, cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from sqlvec.errors import SqlVecError

LONG_QUERY = ("SELECT count(*) FROM generate_series(1, 10000) a, generate_series(1, 10000) b "
              "WHERE (a * b) % 7 = 3")


@pytest.fixture
def two(db):
    a, b = db.connect(), db.connect()
    a.execute_one("CREATE TABLE t (id int PRIMARY KEY, v text)")
    yield a, b
    a.close()
    b.close()


def rows(session, sql: str, params: list | None = None) -> list[tuple]:
    return session.execute_one(sql, params).rows()


def sqlstate(session, sql: str) -> str:
    with pytest.raises(SqlVecError) as caught:
        session.execute_one(sql)
    return caught.value.sqlstate


def test_commit_makes_writes_visible_to_other_sessions(two):
    a, b = two
    a.execute_one("BEGIN")
    a.execute_one("INSERT INTO t VALUES (1, 'x')")
    assert a.transaction_status == "T"
    assert rows(a, "SELECT id FROM t") == [(1,)]
    assert rows(b, "SELECT id FROM t") == []  # uncommitted: invisible elsewhere
    assert a.execute_one("COMMIT").tag == "COMMIT"
    assert a.transaction_status == "I"
    assert rows(b, "SELECT id, v FROM t") == [(1, "x")]


def test_rollback_discards_the_block(two):
    a, b = two
    a.execute_one("INSERT INTO t VALUES (1, 'kept')")
    a.execute_one("BEGIN")
    a.execute_one("UPDATE t SET v = 'changed'")
    a.execute_one("INSERT INTO t VALUES (2, 'gone')")
    a.execute_one("DELETE FROM t WHERE id = 1")
    assert rows(a, "SELECT id, v FROM t") == [(2, "gone")]
    a.execute_one("ROLLBACK")
    assert rows(a, "SELECT id, v FROM t") == [(1, "kept")]
    assert rows(b, "SELECT id, v FROM t") == [(1, "kept")]


def test_an_error_fails_the_block_until_rollback(two):
    a, _ = two
    a.execute_one("BEGIN")
    a.execute_one("INSERT INTO t VALUES (1, 'x')")
    assert sqlstate(a, "SELECT 1 / 0") == "22012"
    assert a.transaction_status == "E"
    assert sqlstate(a, "SELECT 1") == "25P02"
    assert sqlstate(a, "INSERT INTO t VALUES (2, 'y')") == "25P02"
    assert a.execute_one("ROLLBACK").tag == "ROLLBACK"
    assert a.transaction_status == "I"
    assert rows(a, "SELECT count(*) FROM t") == [(0,)]


def test_commit_of_a_failed_block_rolls_back(two):
    a, _ = two
    a.execute_one("BEGIN")
    a.execute_one("INSERT INTO t VALUES (1, 'x')")
    assert sqlstate(a, "SELECT nope FROM t") == "42703"
    assert a.execute_one("COMMIT").tag == "ROLLBACK"
    assert rows(a, "SELECT count(*) FROM t") == [(0,)]


def test_autocommit_statement_error_leaves_no_trace(two):
    a, _ = two
    assert sqlstate(a, "INSERT INTO t VALUES (1, 'a'), (1, 'b')") == "23505"
    assert a.transaction_status == "I"
    assert rows(a, "SELECT count(*) FROM t") == [(0,)]


def test_concurrent_primary_key_second_inserter_waits_then_loses(two):
    """As PostgreSQL: an INSERT of a key another open block inserted waits for that block,
    then fails with 23505 once it commits."""
    a, b = two
    a.execute_one("BEGIN")
    b.execute_one("BEGIN")
    a.execute_one("INSERT INTO t VALUES (1, 'from a')")
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            b.execute_one("INSERT INTO t VALUES (1, 'from b')")
            outcome["ok"] = True
        except SqlVecError as error:
            outcome["error"] = error

    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # it waits for a's block
    a.execute_one("COMMIT")
    waiter.join(10)
    assert not waiter.is_alive()
    error = outcome["error"]
    assert isinstance(error, SqlVecError) and error.sqlstate == "23505"
    assert "duplicate key value violates unique constraint" in error.message
    assert b.transaction_status == "E"
    b.execute_one("ROLLBACK")
    assert rows(b, "SELECT id, v FROM t") == [(1, "from a")]


def test_concurrent_primary_key_in_threads(db):
    """Many sessions insert the same key at once: exactly one succeeds (the others wait for
    its block, then fail with 23505)."""
    setup = db.connect()
    setup.execute_one("CREATE TABLE t (id int PRIMARY KEY, who int)")
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def worker(i: int) -> None:
        s = db.connect()
        s.execute_one("BEGIN")
        barrier.wait(10)
        try:
            s.execute_one(f"INSERT INTO t VALUES (1, {i})")
            s.execute_one("COMMIT")
            outcomes.append("ok")
        except SqlVecError as error:
            outcomes.append(error.sqlstate)
            s.execute_one("ROLLBACK")
        s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert sorted(outcomes) == ["23505"] * 5 + ["ok"]
    assert rows(setup, "SELECT count(*) FROM t") == [(1,)]


def test_statement_timeout_cancels_a_long_query(db):
    s = db.connect()
    s.execute_one("SET statement_timeout = '100ms'")
    start = time.monotonic()
    with pytest.raises(SqlVecError) as caught:
        s.execute_one(LONG_QUERY)
    assert caught.value.sqlstate == "57014"
    assert "statement timeout" in caught.value.message
    assert time.monotonic() - start < 5
    s.execute_one("SET statement_timeout = 0")
    assert rows(s, "SELECT 1") == [(1,)]  # the session goes on


def test_cancel_from_another_thread(db):
    s = db.connect()
    timer = threading.Timer(0.2, s.cancel)
    timer.start()
    try:
        with pytest.raises(SqlVecError) as caught:
            s.execute_one(LONG_QUERY)
    finally:
        timer.cancel()
    assert caught.value.sqlstate == "57014"
    assert "user request" in caught.value.message
    assert rows(s, "SELECT 2") == [(2,)]  # a cancel affects the running statement only


def test_cancel_inside_a_block_fails_the_block(db):
    s = db.connect()
    s.execute_one("BEGIN")
    threading.Timer(0.2, s.cancel).start()
    with pytest.raises(SqlVecError):
        s.execute_one(LONG_QUERY)
    assert s.transaction_status == "E"
    s.execute_one("ROLLBACK")


@pytest.mark.parametrize("sql, types", [
    ("SELECT * FROM p WHERE id = $1", ["int4"]),
    ("SELECT * FROM p WHERE name LIKE $1 AND score > $2", ["text", "float8"]),
    ("SELECT * FROM p ORDER BY embedding <-> $1 LIMIT $2", ["vector", "int8"]),
    ("INSERT INTO p VALUES ($1, $2, $3, $4)", ["int4", "text", "float8", "vector"]),
    ("UPDATE p SET score = $1 WHERE id = $2", ["float8", "int4"]),
    ("SELECT $1::date + 1", ["date"]),
])
def test_parameter_types_are_inferred(db, sql, types):
    s = db.connect()
    s.execute_one("CREATE TABLE p (id int, name text, score float8, embedding vector(2))")
    prepared = s.prepare(sql)
    assert [t.name for t in prepared.param_types] == types


def test_prepared_statement_runs_with_decoded_parameters(db):
    s = db.connect()
    s.execute_one("CREATE TABLE p (id int, embedding vector(2))")
    insert = s.prepare("INSERT INTO p VALUES ($1, $2)")
    for i in range(5):
        s.run(insert, [i, [float(i), 0.0]])
    query = s.prepare("SELECT id FROM p ORDER BY embedding <-> $1 LIMIT $2")
    assert s.run(query, ["[3.2, 0]", 2]).rows() == [(3,), (4,)]
    assert s.run(query, [[0.1, 0.0], 1]).rows() == [(0,)]


def test_explain_and_explain_analyze(db):
    s = db.connect()
    s.execute_one("CREATE TABLE e (id int, v vector(2))")
    s.execute_one("INSERT INTO e VALUES (1, '[1,0]'), (2, '[0,1]')")
    plan = [r[0] for r in s.execute_one("EXPLAIN SELECT id FROM e WHERE id > 1").rows()]
    assert any("Seq Scan on e" in line for line in plan)
    analyzed = [r[0] for r in s.execute_one(
        "EXPLAIN ANALYZE SELECT id FROM e ORDER BY v <-> '[1,0]' LIMIT 1").rows()]
    assert any("actual time=" in line for line in analyzed)
    assert any(line.startswith("Execution Time:") for line in analyzed)


def test_settings_given_at_connection_apply_and_are_not_reported_as_changes(db):
    session = db.connect("postgres", "alice", {"application_name": "x", "search_path": "a"})
    assert session.settings["application_name"] == "x"
    assert session.search_path == ["a"]
    assert session.drain_changed_settings() == {}
    session.close()


def test_a_numeric_literal_beyond_numeric_precision_is_an_overflow(db):
    session = db.connect()
    session.execute_one("CREATE TABLE n (x numeric)")
    for sql in ("SELECT 1e300::numeric", "INSERT INTO n VALUES (1e300)",
                "SELECT 12345678901234567890123456789012345678901.5"):
        with pytest.raises(SqlVecError, match="numeric field overflow") as caught:
            session.execute_one(sql)
        assert caught.value.sqlstate == "22003"
    assert rows(session, "SELECT 1e30::numeric")[0][0] == 10**30
    session.close()


def test_a_pool_reset_runs_with_postgresql_command_tags(db):
    """asyncpg releases a pooled connection with these four statements."""
    s = db.connect()
    s.execute_one("BEGIN")
    s.execute_one("DECLARE c CURSOR WITH HOLD FOR SELECT 1")
    s.execute_one("COMMIT")
    s.execute_one("SET application_name = 'pooled'")
    results = list(s.execute("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL"))
    assert [r.tag for r in results] == ["SELECT 1", "CLOSE CURSOR ALL", "UNLISTEN", "RESET"]
    assert results[0].rows() == [("",)]
    assert s.execute_one("SHOW application_name").rows() != [("pooled",)]
    with pytest.raises(SqlVecError) as err:
        s.execute_one("FETCH c")
    assert err.value.sqlstate == "34000"
    assert s.execute_one("UNLISTEN channel").tag == "UNLISTEN"
    with pytest.raises(SqlVecError) as err:
        s.execute_one("LISTEN channel")
    assert err.value.sqlstate == "0A000"


@pytest.mark.parametrize("sql, word", [
    ("SELECT 1; SELECT nosuchcol FROM pg_class", "nosuchcol"),
    ("SELECT 1;\n\nSELECT * FROM nosuchtable", "nosuchtable"),
    ("  SELECT nosuchcol", "nosuchcol"),
])
def test_error_positions_count_from_the_start_of_the_whole_query_string(db, sql, word):
    s = db.connect()
    with pytest.raises(SqlVecError) as err:
        list(s.execute(sql))
    assert err.value.position == sql.index(word) + 1


def test_terminate_ends_the_session_for_good(db):
    s, other = db.connect(), db.connect()
    ended = []
    s.on_terminate = lambda: ended.append(True)  # what the wire hooks in to close the socket
    assert rows(other, f"SELECT pg_terminate_backend({s.pid})") == [(True,)]
    assert ended == [True]
    for _ in range(2):  # the next statement, and every one after, is refused
        with pytest.raises(SqlVecError) as caught:
            s.execute_one("SELECT 1")
        assert (caught.value.sqlstate, caught.value.severity) == ("57P01", "FATAL")


def test_terminate_interrupts_a_running_statement(db):
    s = db.connect()
    threading.Timer(0.2, s.terminate).start()
    with pytest.raises(SqlVecError) as caught:
        s.execute_one(LONG_QUERY)
    assert caught.value.sqlstate == "57P01"
    assert caught.value.message == "terminating connection due to administrator command"


def test_settings_fixed_at_server_start_refuse_set_and_reset(db):
    s = db.connect()
    assert rows(s, "SHOW data_directory") == [(db.server_settings["data_directory"],)]
    for statement in ("SET data_directory = '/x'", "SET max_connections = 1",
                      "RESET port", "SET server_version = '1'", "SET ssl = on"):
        assert sqlstate(s, statement) == "55P02"
    s.execute_one("SET work_mem = '64MB'")
    s.execute_one("RESET ALL")  # resets what may change, and leaves the rest
    assert rows(s, "SHOW work_mem") == [("1GB",)]  # the default again
    assert rows(s, "SHOW data_directory") == [(db.server_settings["data_directory"],)]


# Deep and wide statements (sqlvec/stack.py) ------------------------------------------------------


def test_deep_statements_from_an_ordinary_thread(db):
    """This test thread has a default stack: long statements are handed to an engine thread."""
    s = db.connect()
    assert rows(s, "SELECT " + "(" * 1000 + "1" + ")" * 1000) == [(1,)]
    assert rows(s, "SELECT " + "coalesce(" * 1000 + "NULL::int" + ", NULL)" * 999 + ", 3)") == [(3,)]
    prepared = s.prepare("SELECT " + "(" * 1000 + "$1::int * 2" + ")" * 1000)
    assert s.run(prepared, [21]).rows() == [(42,)]


def test_too_deep_is_54001_and_fails_the_block_like_any_error(db):
    s = db.connect()
    too_deep = "SELECT " + "(" * 10_000 + "1" + ")" * 10_000
    with pytest.raises(SqlVecError) as err:
        s.execute_one(too_deep)
    assert (err.value.sqlstate, err.value.message) == ("54001", "stack depth limit exceeded")
    assert err.value.__cause__ is None and err.value.__context__ is None  # no frames kept
    s.execute_one("BEGIN")
    with pytest.raises(SqlVecError):
        s.prepare(too_deep)
    assert sqlstate(s, "SELECT 1") == "25P02"
    s.execute_one("ROLLBACK")
    assert rows(s, "SELECT 1") == [(1,)]


def test_plan_cache_is_bounded_by_the_text_it_holds(db):
    s = db.connect()
    cache = s._plan_cache
    small = [s.prepare(f"SELECT {i} AS {'x' * 2000}") for i in range(100)]
    assert cache.get((small[-1].sql, (), s.settings["search_path"])) is small[-1]
    assert sum(len(key[0]) for key in cache._entries) <= cache.TEXT
    assert len(cache) < 100  # the oldest were evicted
    huge = "SELECT count(*) FROM generate_series(1, 10) g WHERE g::text <> '" + \
        "x" * (cache.TEXT + 1) + "'"  # longer than the cache's whole budget
    first = s.prepare(huge)
    assert s.prepare(huge) is first  # Parse then Execute plan it once
    other = huge.replace("count(*)", "count(g)")
    s.prepare(other)
    assert cache.get((huge, (), s.settings["search_path"])) is None  # one slot for long ones
    assert s.run(first).rows() == [(10,)]


def test_a_plan_is_current_until_the_catalog_or_the_search_path_changes(db):
    s = db.connect()
    s.execute_one("CREATE TABLE pc (v int)")
    prepared = s.prepare("SELECT v FROM pc")
    assert s.plan_is_current(prepared) and s.prepare("SELECT v FROM pc") is prepared
    s.execute_one("CREATE TABLE pc2 (v int)")  # any catalog change
    assert not s.plan_is_current(prepared)
    again = s.prepare("SELECT v FROM pc")
    assert again is not prepared and s.plan_is_current(again)
    s.execute_one("SET search_path = pg_catalog, public")
    assert not s.plan_is_current(again)
    s.execute_one("RESET search_path")
    third = s.prepare("SELECT v FROM pc")
    assert s.plan_is_current(third)
    s.execute_one("TRUNCATE pc")  # empties the plan cache: plans are made again after it
    assert not s.plan_is_current(third)
    # A cursor statement depends on the session's open cursors: never cached, never current.
    assert not s.plan_is_current(s.prepare("DECLARE c CURSOR FOR SELECT 1"))
    s.close()


def test_a_key_lookup_keeps_no_segment_alive_once_its_statement_is_over(tmp_path):
    """A single-row UPDATE by key leaves where it found the row for its commit (a per-thread
    hint). A block rolled back never commits it: the hint must not keep the segment it names
    alive on the idle connection's thread after a compaction merged that segment away."""
    import gc
    import weakref

    from sqlvec.database import Database
    from sqlvec.storage.compaction import CompactionPolicy
    from sqlvec.storage.store import StoreOptions

    db = Database.open(str(tmp_path / "db"), options=StoreOptions(
        background=False, compaction=CompactionPolicy(min_merge=2)))
    try:
        s = db.connect()
        s.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int)")
        for first in (1, 51):
            s.execute_one(f"INSERT INTO t SELECT g, 0 FROM generate_series({first}, {first + 49}) g")
            s.execute_one("CHECKPOINT")  # sealed: two segments, merged below
        store = db.store()
        table = next(t for t in store.tables.values() if t.def_.name == "t")
        old = [weakref.ref(segment) for segment in table.sealed]
        assert len(old) == 2
        s.execute_one("BEGIN")
        s.run(s.prepare("UPDATE t SET v = v + 1 WHERE id = $1"), [7])  # (by the key's index)
        s.execute_one("ROLLBACK")
        assert store.compact(table.id) == 1
        gc.collect()
        assert [ref() for ref in old] == [None, None]
        assert s.execute_one("SELECT count(*), sum(v) FROM t").table.to_pylist() == \
            [{"count": 100, "sum": 0}]
    finally:
        db.close()


def test_a_late_report_of_a_statement_run_elsewhere_never_replaces_a_newer_one(db):
    """A worker's reports reach a session from two threads (the relayed connection's reader,
    the statistics batch): whichever comes last, pg_stat_activity shows the newest."""
    worked_for, watcher = db.connect(), db.connect()
    sql = "SELECT state, query, extract(epoch FROM state_change) FROM pg_stat_activity WHERE pid = $1"

    def shown() -> tuple:
        state, query, changed = rows(watcher, sql, [worked_for.pid])[0]
        return state, query, float(changed)
    worked_for.ran_elsewhere("SELECT 2", 2000.0, 2001.5)
    worked_for.ran_elsewhere("SELECT 2", 2000.0, None)  # its start, reported after its end
    worked_for.ran_elsewhere("SELECT 1", 1000.0, 1001.0)  # an earlier statement
    assert shown() == ("idle", "SELECT 2", 2001.5)
    worked_for.ran_elsewhere("SELECT 3", 3000.0, None)
    assert shown() == ("active", "SELECT 3", 3000.0)
    worked_for.close()
    watcher.close()
