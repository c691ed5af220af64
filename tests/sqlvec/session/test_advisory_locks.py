"""session/advisory_locks.py: pg_advisory_lock and its family across the sessions of a database."""

from __future__ import annotations

import threading

import pytest

from sqlvec.errors import SqlVecError


@pytest.fixture
def two(db):
    a, b = db.connect(), db.connect()
    yield a, b
    a.close()
    b.close()


def value(session, sql: str):
    return session.execute_one(sql).rows()[0][0]


def test_a_session_lock_excludes_other_sessions_until_unlocked(two):
    a, b = two
    assert value(a, "SELECT pg_advisory_lock(42)") == ""
    assert value(a, "SELECT pg_try_advisory_lock(42)") is True  # reentrant: held twice now
    assert value(b, "SELECT pg_try_advisory_lock(42)") is False
    assert value(b, "SELECT pg_try_advisory_lock(43)") is True
    assert value(a, "SELECT pg_advisory_unlock(42)") is True
    assert value(b, "SELECT pg_try_advisory_lock(42)") is False  # one hold left
    assert value(a, "SELECT pg_advisory_unlock(42)") is True
    assert value(b, "SELECT pg_try_advisory_lock(42)") is True


def test_the_two_key_forms_are_separate_key_spaces(two):
    a, b = two
    value(a, "SELECT pg_advisory_lock(1)")
    assert value(b, "SELECT pg_try_advisory_lock(0, 1)") is True
    assert value(b, "SELECT pg_try_advisory_lock(1)") is False
    assert value(a, "SELECT pg_try_advisory_lock(0, 1)") is False


def test_unlocking_a_lock_not_held_warns_and_is_false(two):
    a, b = two
    value(a, "SELECT pg_advisory_lock(7)")
    result = b.execute_one("SELECT pg_advisory_unlock(7)")
    assert result.rows() == [(False,)]
    assert [(n.severity, n.sqlstate, n.message) for n in result.notices] == [
        ("WARNING", "01000", "you don't own a lock of type ExclusiveLock")]


def test_unlock_all_and_session_end_release_session_locks(db, two):
    a, b = two
    value(a, "SELECT pg_advisory_lock(1), pg_advisory_lock(2, 3)")
    value(a, "SELECT pg_advisory_unlock_all()")
    assert value(b, "SELECT pg_try_advisory_lock(1)") is True
    assert value(b, "SELECT pg_try_advisory_lock(2, 3)") is True
    c = db.connect()
    assert value(c, "SELECT pg_try_advisory_lock(1)") is False
    b.close()
    assert value(c, "SELECT pg_try_advisory_lock(1)") is True
    c.close()


def test_transaction_locks_last_until_commit_or_rollback(two):
    a, b = two
    assert value(a, "SELECT pg_try_advisory_xact_lock(5)") is True  # implicit: ends at once
    assert value(b, "SELECT pg_try_advisory_lock(5)") is True
    value(b, "SELECT pg_advisory_unlock(5)")
    for end in ("COMMIT", "ROLLBACK"):
        a.execute_one("BEGIN")
        value(a, "SELECT pg_advisory_xact_lock(5)")
        assert value(b, "SELECT pg_try_advisory_xact_lock(5)") is False
        a.execute_one(end)
        assert value(b, "SELECT pg_try_advisory_xact_lock(5)") is True


def test_an_xact_lock_is_not_released_by_unlock(two):
    a, b = two
    a.execute_one("BEGIN")
    value(a, "SELECT pg_advisory_xact_lock(9)")
    assert value(a, "SELECT pg_advisory_unlock(9)") is False
    assert value(b, "SELECT pg_try_advisory_lock(9)") is False
    a.execute_one("COMMIT")


def test_a_blocked_lock_waits_until_the_holder_unlocks(two):
    a, b = two
    value(a, "SELECT pg_advisory_lock(11)")
    waiting = threading.Thread(target=lambda: value(b, "SELECT pg_advisory_lock(11)"))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()  # still waiting while a holds the key
    value(a, "SELECT pg_advisory_unlock(11)")
    waiting.join(10)
    assert not waiting.is_alive()
    assert value(a, "SELECT pg_try_advisory_lock(11)") is False  # b holds it now


def test_a_blocked_lock_respects_statement_timeout_and_cancel(two):
    a, b = two
    value(a, "SELECT pg_advisory_lock(12)")
    b.execute_one("SET statement_timeout = '100ms'")
    with pytest.raises(SqlVecError) as caught:
        b.execute_one("SELECT pg_advisory_lock(12)")
    assert caught.value.sqlstate == "57014"
    assert "statement timeout" in str(caught.value)
    b.execute_one("SET statement_timeout = 0")
    errors: list[SqlVecError] = []

    def wait() -> None:
        try:
            b.execute_one("SELECT pg_advisory_lock(12)")
        except SqlVecError as exc:
            errors.append(exc)
    waiting = threading.Thread(target=wait)
    waiting.start()
    while waiting.is_alive():  # cancel until the wait ends (a cancel before it starts is lost)
        b.cancel()
        waiting.join(0.05)
    assert [e.sqlstate for e in errors] == ["57014"]
    assert value(b, "SELECT pg_try_advisory_lock(12)") is False  # the failed waits took nothing


def test_databases_have_separate_lock_tables(db):
    db.create_database("other")
    a, b = db.connect(), db.connect("other")
    try:
        value(a, "SELECT pg_advisory_lock(1)")
        assert value(b, "SELECT pg_try_advisory_lock(1)") is True
    finally:
        a.close()
        b.close()
