"""session/utility.py and core.py: the handler tables, the front end's share of DEALLOCATE and
DISCARD ALL, COPY handed to the front end, notices with their SQLSTATEs."""

from __future__ import annotations

import pytest

from sqlvec.database import Database
from sqlvec.errors import Notice, SqlVecError
from sqlvec.session import CopyCommand, StatementKind
from sqlvec.session.core import RUNNERS
from sqlvec.session.utility import HANDLERS
from sqlvec.sql.utility import UtilityKind


@pytest.fixture
def session(tmp_path):
    database = Database.open(str(tmp_path / "db"))
    s = database.connect()
    yield s
    s.close()
    database.close()


def sqlstate(session, sql: str) -> str:
    with pytest.raises(SqlVecError) as caught:
        session.execute_one(sql)
    return caught.value.sqlstate


def test_every_kind_has_a_handler():
    assert set(RUNNERS) == set(StatementKind)
    # EXPLAIN is planned as a statement kind of its own, never run as a utility statement.
    assert set(HANDLERS) == set(UtilityKind) - {UtilityKind.EXPLAIN}


def test_deallocate_asks_the_front_end_first(session):
    held = {"p1"}
    asked = []

    def deallocate(name):
        asked.append(name)
        if name is None:
            held.clear()
            return False
        if name in held:
            held.discard(name)
            return True
        return False

    session.on_deallocate = deallocate
    assert session.execute_one("DEALLOCATE p1").tag == "DEALLOCATE"
    assert held == set()
    assert sqlstate(session, "DEALLOCATE p1") == "26000"  # in neither namespace
    session.execute_one("PREPARE q AS SELECT 1")
    assert session.execute_one("DEALLOCATE q").tag == "DEALLOCATE"
    held.add("p2")
    assert session.execute_one("DEALLOCATE ALL").tag == "DEALLOCATE ALL"
    assert held == set() and asked[-1] is None


def test_discard_all_is_refused_in_a_block_before_anything_is_dropped(session):
    discarded = []
    session.on_discard_all = lambda: discarded.append(True)
    session.execute_one("PREPARE q AS SELECT 1")
    session.execute_one("BEGIN")
    assert sqlstate(session, "DISCARD ALL") == "25001"
    session.execute_one("ROLLBACK")
    assert discarded == [] and "q" in session.prepared
    assert session.execute_one("DISCARD ALL").tag == "DISCARD ALL"
    assert discarded == [True] and session.prepared == {}


def test_copy_is_carried_out_by_the_front_end(session):
    session.execute_one("CREATE TABLE t (id int, note text)")
    assert sqlstate(session, "COPY t FROM STDIN") == "0A000"  # no client to take data from
    seen: list[CopyCommand] = []

    def transfer(command: CopyCommand) -> str:
        seen.append(command)
        return "COPY 0"

    results = list(session.execute("SELECT 1; COPY t (id) FROM STDIN (FORMAT csv)",
                                   copy=transfer))
    assert [r.tag for r in results] == ["SELECT 1", "COPY 0"]
    assert (seen[0].table_name, seen[0].columns, seen[0].options.format) == ("t", ("id",), "csv")
    assert [c.name for c in session.copy_columns(seen[0])] == ["id"]
    with pytest.raises(SqlVecError) as caught:
        list(session.execute("SELECT 1; COPY t FROM", copy=transfer))
    assert caught.value.sqlstate == "42601"
    assert caught.value.position == len("SELECT 1; COPY t FROM") + 1  # counted from the start


def test_prepare_refuses_several_statements_and_fails_the_block(session):
    session.execute_one("BEGIN")
    with pytest.raises(SqlVecError) as caught:
        session.prepare("SELECT 1; SELECT 2")
    assert caught.value.sqlstate == "42601"
    assert caught.value.message == "cannot insert multiple commands into a prepared statement"
    assert session.transaction_status == "E"  # as PostgreSQL's Parse
    session.execute_one("ROLLBACK")


@pytest.mark.parametrize("setup, sql, notice", [
    ([], "COMMIT", Notice("WARNING", "25P01", "there is no transaction in progress")),
    ([], "ROLLBACK", Notice("WARNING", "25P01", "there is no transaction in progress")),
    (["BEGIN"], "BEGIN", Notice("WARNING", "25001", "there is already a transaction in progress")),
    (["CREATE TABLE t (a int)"], "CREATE TABLE IF NOT EXISTS t (a int)",
     Notice("NOTICE", "42P07", 'relation "t" already exists, skipping')),
    (["CREATE TABLE t (a int)", "CREATE INDEX ti ON t (a)"],
     "CREATE INDEX IF NOT EXISTS ti ON t (a)",
     Notice("NOTICE", "42P07", 'relation "ti" already exists, skipping')),
    (["CREATE SEQUENCE s"], "CREATE SEQUENCE IF NOT EXISTS s",
     Notice("NOTICE", "42P07", 'relation "s" already exists, skipping')),
    (["CREATE SCHEMA sc"], "CREATE SCHEMA IF NOT EXISTS sc",
     Notice("NOTICE", "42P06", 'schema "sc" already exists, skipping')),
    (["CREATE EXTENSION vector"], "CREATE EXTENSION IF NOT EXISTS vector",
     Notice("NOTICE", "42710", 'extension "vector" already exists, skipping')),
    ([], "SELECT pg_cancel_backend(999999)",
     Notice("WARNING", "01000", "PID 999999 is not a PostgreSQL backend process")),
])
def test_notices_carry_postgresqls_sqlstates(session, setup, sql, notice):
    for statement in setup:
        session.execute_one(statement)
    assert session.execute_one(sql).notices == [notice]
