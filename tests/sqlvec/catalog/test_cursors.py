"""DECLARE ... CURSOR [WITH HOLD] / FETCH / MOVE / CLOSE, and SHOW forms clients send."""

from __future__ import annotations

import pytest

from sqlvec.errors import SqlVecError
from tests.sqlvec.catalog.conftest import rows


def test_cursor_in_transaction(session):
    session.execute_one("BEGIN")
    assert session.execute_one("DECLARE c CURSOR FOR SELECT name FROM items ORDER BY name").tag \
        == "DECLARE CURSOR"
    first = session.execute_one("FETCH 1 FROM c")
    assert first.tag == "FETCH 1" and first.rows() == [("a",)]
    assert [c.name for c in first.columns] == ["name"]
    assert session.execute_one("FETCH ALL IN c").rows() == [("b",)]
    assert session.execute_one("FETCH NEXT FROM c").tag == "FETCH 0"
    assert session.execute_one("CLOSE c").tag == "CLOSE CURSOR"
    session.execute_one("COMMIT")


def test_cursor_needs_block_unless_with_hold(session):
    with pytest.raises(SqlVecError) as err:
        session.execute_one("DECLARE c CURSOR FOR SELECT 1")
    assert err.value.sqlstate == "25P01"
    session.execute_one("DECLARE h CURSOR WITH HOLD FOR SELECT generate_series(1, 5) AS x")
    assert session.execute_one("MOVE 2 IN h").tag == "MOVE 2"
    assert rows(session, "FETCH FORWARD 2 FROM h") == [(3,), (4,)]
    session.execute_one("CLOSE ALL")
    with pytest.raises(SqlVecError) as err:
        session.execute_one("FETCH h")
    assert err.value.sqlstate == "34000"


def test_cursors_close_at_commit_unless_held(session):
    session.execute_one("BEGIN")
    session.execute_one("DECLARE a CURSOR FOR SELECT 1")
    session.execute_one("DECLARE b CURSOR WITH HOLD FOR SELECT 2")
    session.execute_one("COMMIT")
    assert rows(session, "FETCH b") == [(2,)]
    with pytest.raises(SqlVecError):
        session.execute_one("FETCH a")


def test_show_forms(session):
    assert rows(session, "SHOW TRANSACTION ISOLATION LEVEL") == [("read committed",)]
    everything = session.execute_one("SHOW ALL")
    assert [c.name for c in everything.columns] == ["name", "setting", "description"]
    assert ("search_path", '"$user", public') in [r[:2] for r in everything.rows()]
