"""A block's statements by primary key read its own writes through its own index of their keys
(TableOverlay.found_by_key) rather than merging all of them: every answer is checked against
the same query through a full scan (`id + 0`, which no key lookup serves)."""

from __future__ import annotations

import pytest

from sqlvec.errors import SqlVecError


def rows(session, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in session.execute_one(sql).table.to_pylist()]


def same_by_key_and_scan(s, ids: list[int]) -> list[tuple]:
    """The rows holding `ids`, by key and by a full scan, which must agree."""
    listed = ", ".join(map(str, ids))
    by_key = sorted(rows(s, f"SELECT id, v FROM t WHERE id IN ({listed})"))
    scanned = sorted(rows(s, f"SELECT id, v FROM t WHERE id + 0 IN ({listed})"))
    assert by_key == scanned
    if len(ids) == 1:
        assert sorted(rows(s, f"SELECT id, v FROM t WHERE id = {ids[0]}")) == scanned
    return by_key


@pytest.fixture
def s(db):
    session = db.connect()
    session.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int)")
    session.execute_one("INSERT INTO t SELECT g, 0 FROM generate_series(1, 50) g")
    return session


def test_own_insert_then_update_by_key(s):
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (100, 1), (101, 1)")
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 100")
    s.execute_one("UPDATE t SET v = v + 10 WHERE id = 100")
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 7")
    assert same_by_key_and_scan(s, [100]) == [(100, 12)]
    assert same_by_key_and_scan(s, [7, 100, 101, 999]) == [(7, 1), (100, 12), (101, 1)]
    s.execute_one("COMMIT")
    assert same_by_key_and_scan(s, [7, 100, 101]) == [(7, 1), (100, 12), (101, 1)]
    assert rows(s, "SELECT count(*) FROM t") == [(52,)]


def test_delete_then_insert_the_same_key(s):
    s.execute_one("BEGIN")
    s.execute_one("DELETE FROM t WHERE id = 5")
    assert same_by_key_and_scan(s, [5]) == []
    s.execute_one("INSERT INTO t VALUES (5, 50)")
    assert same_by_key_and_scan(s, [5]) == [(5, 50)]
    s.execute_one("DELETE FROM t WHERE id = 5")  # the block's own row this time
    assert same_by_key_and_scan(s, [5]) == []
    s.execute_one("INSERT INTO t VALUES (5, 51)")
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 5")
    assert same_by_key_and_scan(s, [4, 5, 6]) == [(4, 0), (5, 52), (6, 0)]
    with pytest.raises(SqlVecError) as err:
        s.execute_one("INSERT INTO t VALUES (5, 0)")
    assert err.value.sqlstate == "23505"
    s.execute_one("ROLLBACK")
    assert same_by_key_and_scan(s, [5]) == [(5, 0)]


def test_savepoint_rollback_between_updates(s):
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (200, 0)")
    s.execute_one("UPDATE t SET v = 1 WHERE id = 200")
    s.execute_one("UPDATE t SET v = 1 WHERE id = 3")
    s.execute_one("SAVEPOINT a")
    s.execute_one("UPDATE t SET v = 2 WHERE id = 200")
    s.execute_one("DELETE FROM t WHERE id = 3")
    s.execute_one("INSERT INTO t VALUES (201, 2)")
    assert same_by_key_and_scan(s, [3, 200, 201]) == [(200, 2), (201, 2)]
    s.execute_one("ROLLBACK TO SAVEPOINT a")
    assert same_by_key_and_scan(s, [3, 200, 201]) == [(3, 1), (200, 1)]
    s.execute_one("UPDATE t SET v = v + 1 WHERE id = 200")
    s.execute_one("COMMIT")
    assert same_by_key_and_scan(s, [3, 200, 201]) == [(3, 1), (200, 2)]


def test_a_failed_statement_leaves_the_lookups_right(s):
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (300, 0), (301, 0)")
    s.execute_one("SAVEPOINT a")
    with pytest.raises(SqlVecError):  # 300 becomes 301: the statement fails, undone
        s.execute_one("UPDATE t SET id = 301 WHERE id = 300")
    s.execute_one("ROLLBACK TO SAVEPOINT a")
    assert same_by_key_and_scan(s, [300, 301]) == [(300, 0), (301, 0)]
    s.execute_one("UPDATE t SET id = 302 WHERE id = 300")  # a key change of its own row
    assert same_by_key_and_scan(s, [300, 301, 302]) == [(301, 0), (302, 0)]
    s.execute_one("COMMIT")


def test_deferrable_key_repeated_in_the_block(db):
    s = db.connect()
    s.execute_one("CREATE TABLE t (id bigint UNIQUE DEFERRABLE INITIALLY DEFERRED, v int)")
    s.execute_one("INSERT INTO t VALUES (1, 0)")
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (1, 1), (1, 2)")  # legal until COMMIT
    assert same_by_key_and_scan(s, [1]) == [(1, 0), (1, 1), (1, 2)]
    s.execute_one("DELETE FROM t WHERE id = 1 AND v = 1")
    assert same_by_key_and_scan(s, [1]) == [(1, 0), (1, 2)]
    s.execute_one("ROLLBACK")


def test_another_sessions_uncommitted_rows_stay_unseen(db, s):
    other = db.connect()
    other.execute_one("BEGIN")
    other.execute_one("INSERT INTO t VALUES (400, 4)")
    s.execute_one("BEGIN")
    s.execute_one("INSERT INTO t VALUES (401, 4)")
    assert same_by_key_and_scan(s, [400, 401]) == [(401, 4)]
    assert same_by_key_and_scan(other, [400, 401]) == [(400, 4)]
    other.execute_one("ROLLBACK")
    s.execute_one("COMMIT")


# Prepared single-row writes by key (the block's scalar path) against the general path ------

INT8, INT4, TEXT = 20, 23, 25
# Each statement prepared (`$n`: the scalar path) and as literals (the general path).
STATEMENTS = {
    "add": ("UPDATE {t} SET v = v + $2 WHERE id = $1", [INT8, INT4],
            "UPDATE {t} SET v = v + {1} WHERE id = {0}"),
    "note": ("UPDATE {t} SET note = $2 WHERE id = $1", [INT8, TEXT],
             "UPDATE {t} SET note = '{1}' WHERE id = {0}"),
    "rekey": ("UPDATE {t} SET id = $2 WHERE id = $1", [INT8, INT8],
              "UPDATE {t} SET id = {1} WHERE id = {0}"),
    "delete": ("DELETE FROM {t} WHERE id = $1", [INT8], "DELETE FROM {t} WHERE id = {0}"),
    "insert": ("INSERT INTO {t} VALUES ($1, $2, 'new')", [INT8, INT4],
               "INSERT INTO {t} VALUES ({0}, {1}, 'new')"),
}


def keyed_tables(db, names=("a", "b")):
    s = db.connect()
    for name in names:
        s.execute_one(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v int NOT NULL, note text,"
                      " CHECK (v < 1000))")
        s.execute_one(f"INSERT INTO {name} SELECT g, g, 'n' FROM generate_series(1, 20) g")
    return s


def outcome(run, *args) -> str:
    """The command tag of `run(*args)`, or the SQLSTATE it failed with."""
    try:
        return run(*args).tag
    except SqlVecError as exc:
        return exc.sqlstate


def contents(s, table: str) -> list[tuple]:
    return rows(s, f"SELECT id, v, note FROM {table} ORDER BY id")


def test_prepared_writes_by_key_match_the_general_path(db):
    """Random single-row writes in one block, each in a savepoint (rolled back when it
    fails, now and then anyway): table a by prepared statements, b by the same as literals;
    every outcome and the rows after each must agree, and after COMMIT, and so must the
    tables' counters (index scans, rows updated and deleted)."""
    import random

    from sqlvec.session.writes import _block_keyed

    s = keyed_tables(db)
    prepared = {kind: s.prepare(sql.format(t="a"), types)
                for kind, (sql, types, _literal) in STATEMENTS.items()}
    rng = random.Random(7)
    s.execute_one("BEGIN")
    for step in range(300):
        kind = rng.choice(list(STATEMENTS))
        params = [rng.randrange(1, 30), rng.choice([1, 5, 600])]
        if kind == "note":
            params[1] = f"s{step}"
        if kind == "rekey":
            params[1] = rng.randrange(1, 30)
        literal = STATEMENTS[kind][2].format(*params, t="b")
        if kind != "insert":
            assert _block_keyed(s, prepared[kind].compiled)
        s.execute_one("SAVEPOINT p")
        by_key = outcome(s.run, prepared[kind], params[:len(STATEMENTS[kind][1])])
        s.execute_one("ROLLBACK TO SAVEPOINT p" if by_key[0].isdigit() else "RELEASE p")
        s.execute_one("SAVEPOINT p")
        general = outcome(s.execute_one, literal)
        s.execute_one("ROLLBACK TO SAVEPOINT p" if general[0].isdigit() else "RELEASE p")
        assert by_key == general, (step, kind, params)
        assert contents(s, "a") == contents(s, "b"), (step, kind, params)
        if step % 50 == 49:
            s.execute_one("SAVEPOINT q")
            key = rng.randrange(1, 30)
            s.run(prepared["delete"], [key])
            s.execute_one(STATEMENTS["delete"][2].format(key, t="b"))
            s.execute_one("ROLLBACK TO SAVEPOINT q")
    s.execute_one("COMMIT")
    assert contents(s, "a") == contents(s, "b")
    assert rows(s, "SELECT relname, idx_scan, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                   " WHERE relname = 'a'")[0][1:] == \
        rows(s, "SELECT relname, idx_scan, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                " WHERE relname = 'b'")[0][1:]


def test_block_key_writes_lock_in_the_mode_of_their_change(db):
    """A block's prepared UPDATE keeping the key holds its row FOR NO KEY UPDATE (a FOR KEY
    SHARE reader goes on, FOR SHARE does not); one changing the key, or a DELETE, FOR
    UPDATE."""
    s = keyed_tables(db, ["a"])
    other = db.connect()
    note = s.prepare(STATEMENTS["note"][0].format(t="a"), STATEMENTS["note"][1])
    rekey = s.prepare(STATEMENTS["rekey"][0].format(t="a"), STATEMENTS["rekey"][1])
    delete = s.prepare(STATEMENTS["delete"][0].format(t="a"), STATEMENTS["delete"][1])
    s.execute_one("BEGIN")
    assert s.run(note, [1, "x"]).tag == "UPDATE 1"
    assert s.run(rekey, [2, 2]).tag == "UPDATE 1"  # the same value: no key change
    assert s.run(rekey, [3, 103]).tag == "UPDATE 1"
    assert s.run(delete, [4]).tag == "DELETE 1"
    other.execute_one("BEGIN")
    for key, key_share in ((1, True), (2, True), (3, False), (4, False)):
        share = f"SELECT id FROM a WHERE id = {key} FOR KEY SHARE NOWAIT"
        assert outcome(other.execute_one, share) == ("SELECT 1" if key_share
                                                              else "55P03"), key
        other.execute_one("ROLLBACK")
        other.execute_one("BEGIN")
        assert outcome(other.execute_one,
                       f"SELECT id FROM a WHERE id = {key} FOR SHARE NOWAIT") == "55P03"
        other.execute_one("ROLLBACK")
        other.execute_one("BEGIN")
    other.execute_one("ROLLBACK")
    s.execute_one("COMMIT")
    assert contents(s, "a")[:3] == [(1, 1, "x"), (2, 2, "n"), (5, 5, "n")]


@pytest.mark.parametrize("first", ["UPDATE {t} SET v = 100 WHERE id = 5",
                                   "DELETE FROM {t} WHERE id = 5",
                                   "UPDATE {t} SET id = 105 WHERE id = 5"])
def test_a_write_that_waited_rechecks_as_the_general_path(db, first):
    """A block's UPDATE by key waits for the block holding its row, then runs on the row's
    newest version (or finds it gone): prepared and as a literal, the same outcome."""
    import threading
    import time

    s = keyed_tables(db)
    second = db.connect()
    add = second.prepare(STATEMENTS["add"][0].format(t="a"), STATEMENTS["add"][1])
    runs = {"a": lambda: second.run(add, [5, 1]),
            "b": lambda: second.execute_one("UPDATE b SET v = v + 1 WHERE id = 5")}
    for table, run in runs.items():
        s.execute_one("BEGIN")
        s.execute_one(first.format(t=table))
        second.execute_one("BEGIN")
        got: list[str] = []
        waiter = threading.Thread(target=lambda run=run, got=got: got.append(outcome(run)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()
        s.execute_one("COMMIT")
        waiter.join(10)
        second.execute_one("COMMIT")
        assert got == ["UPDATE 1" if first.startswith("UPDATE {t} SET v") else "UPDATE 0"]
    assert contents(s, "a") == contents(s, "b")
    assert rows(s, "SELECT v FROM a WHERE id = 5") == ([(101,)] if "v = 100" in first else [])


def test_statement_timeout_ends_a_block_key_write_waiting_for_a_row(db):
    s = keyed_tables(db, ["a"])
    second = db.connect()
    add = second.prepare(STATEMENTS["add"][0].format(t="a"), STATEMENTS["add"][1])
    s.execute_one("BEGIN")
    s.execute_one("UPDATE a SET v = 0 WHERE id = 5")
    second.execute_one("BEGIN")
    second.execute_one("SET LOCAL statement_timeout = '200ms'")
    assert outcome(lambda: second.run(add, [5, 1])) == "57014"
    assert outcome(lambda: second.run(add, [6, 1])) == "25P02"
    second.execute_one("ROLLBACK")
    s.execute_one("COMMIT")
    assert rows(s, "SELECT id, v FROM a WHERE id IN (5, 6) ORDER BY id") == [(5, 0), (6, 6)]


def test_block_key_writes_after_truncate_and_alter_match_the_general_path(db):
    """After TRUNCATE in the block a committed row is gone to its writes by key, its own
    rows are not; after ALTER TABLE the statement is planned again. Prepared on a, literals
    on b: the same outcomes and rows."""
    s = keyed_tables(db)
    add = s.prepare(STATEMENTS["add"][0].format(t="a"), STATEMENTS["add"][1])
    delete = s.prepare(STATEMENTS["delete"][0].format(t="a"), STATEMENTS["delete"][1])
    s.execute_one("BEGIN")
    for table in ("a", "b"):
        s.execute_one(f"TRUNCATE {table}")
        s.execute_one(f"INSERT INTO {table} VALUES (3, 3, 'own'), (4, 4, 'own')")
    steps = [(add, [3, 1], "UPDATE b SET v = v + 1 WHERE id = 3"),
             (add, [5, 1], "UPDATE b SET v = v + 1 WHERE id = 5"),
             (delete, [4], "DELETE FROM b WHERE id = 4"),
             (delete, [6], "DELETE FROM b WHERE id = 6")]
    for prepared, params, literal in steps:
        assert s.run(prepared, params).tag == s.execute_one(literal).tag, literal
    for table in ("a", "b"):
        s.execute_one(f"ALTER TABLE {table} ADD COLUMN w int DEFAULT 7")
    assert s.run(add, [3, 10]).tag == s.execute_one(
        "UPDATE b SET v = v + 10 WHERE id = 3").tag == "UPDATE 1"
    s.execute_one("COMMIT")
    assert rows(s, "SELECT id, v, note, w FROM a ORDER BY id") == \
        rows(s, "SELECT id, v, note, w FROM b ORDER BY id") == [(3, 14, "own", 7)]


@pytest.mark.parametrize("swap", [True, False])
def test_a_deferred_second_key_is_checked_at_commit_on_both_paths(db, swap):
    """SET of a DEFERRABLE INITIALLY DEFERRED unique column by primary key: a value two rows
    hold for a while is legal until COMMIT, which fails (23505) if they still do."""
    s = db.connect()
    outcomes = []
    for table in ("a", "b"):
        s.execute_one(f"CREATE TABLE {table} (id bigint PRIMARY KEY,"
                      " u int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
        s.execute_one(f"INSERT INTO {table} VALUES (1, 1), (2, 2)")
    setu = s.prepare("UPDATE a SET u = $2 WHERE id = $1", [INT8, INT4])
    runs = {"a": lambda key, u: s.run(setu, [key, u]),
            "b": lambda key, u: s.execute_one(f"UPDATE b SET u = {u} WHERE id = {key}")}
    for table, run in runs.items():
        s.execute_one("BEGIN")
        assert run(1, 2).tag == "UPDATE 1"
        if swap:
            assert run(2, 1).tag == "UPDATE 1"
        outcomes.append(outcome(lambda: s.execute_one("COMMIT")))
        outcomes.append(rows(s, f"SELECT id, u FROM {table} ORDER BY id"))
    assert outcomes[:2] == outcomes[2:]
    assert outcomes[0] == ("COMMIT" if swap else "23505")
