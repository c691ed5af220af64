"""Sequence options: PostgreSQL's defaults and checks, nextval at the bounds (2200H, or wrapping
around with CYCLE), setval's bounds, and the durable reservation across a clean reopen and a
kill -9 (values may be skipped, never repeated, never past the bound)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sqlvec.catalog import sequences as rules
from sqlvec.catalog.catalog import SEQUENCE_BLOCK
from sqlvec.catalog.sequences import SequenceOptions
from sqlvec.database import Database
from sqlvec.errors import SqlVecError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def configured(**given) -> dict:
    return rules.configured(None, SequenceOptions(given), None)


def one(session, sql: str):
    return session.execute_one(sql).rows()[0][0]


def error_of(session, sql: str) -> tuple[str, str]:
    with pytest.raises(SqlVecError) as caught:
        session.execute_one(sql).rows()
    return caught.value.sqlstate, str(caught.value)


@pytest.mark.parametrize("given, expected", [
    ({}, ("int8", 1, 2**63 - 1, 1)),
    ({"increment": -1}, ("int8", -2**63, -1, -1)),
    ({"type": "int2"}, ("int2", 1, 32767, 1)),
    ({"type": "int4", "increment": -3}, ("int4", -2**31, -1, -1)),
    ({"min": -5, "max": 0, "increment": -2}, ("int8", -5, 0, 0)),
])
def test_defaults_follow_the_type_and_the_direction(given, expected):
    entry = configured(**given)
    assert (entry["type"], entry["min"], entry["max"], entry["start"]) == expected


@pytest.mark.parametrize("given, message", [
    ({"start": 0}, "START value (0) cannot be less than MINVALUE (1)"),
    ({"start": 10, "max": 5}, "START value (10) cannot be greater than MAXVALUE (5)"),
    ({"min": 5, "max": 5}, "MINVALUE (5) must be less than MAXVALUE (5)"),
    ({"type": "int2", "max": 40000},
     "MAXVALUE (40000) is out of range for sequence data type smallint"),
    ({"increment": 0}, "INCREMENT must not be zero"),
    ({"cache": 0}, "CACHE (0) must be greater than zero"),
])
def test_invalid_options_are_postgres_errors(given, message):
    with pytest.raises(SqlVecError) as caught:
        configured(**given)
    assert (caught.value.sqlstate, str(caught.value)) == ("22023", message)


def test_a_new_type_resets_the_bounds_that_were_the_old_types():
    small = configured(type="int2")
    assert rules.bounds(rules.configured(small, SequenceOptions({"type": "int4"}), None)) == \
        (1, 2**31 - 1)
    capped = rules.configured(small, SequenceOptions({"max": 10}), None)
    assert rules.bounds(rules.configured(capped, SequenceOptions({"type": "int8"}), None)) == \
        (1, 10)


def test_altering_checks_the_current_value():
    entry = configured(max=10)
    with pytest.raises(SqlVecError, match=r"RESTART value \(8\) cannot be greater than "
                                          r"MAXVALUE \(5\)"):
        rules.configured(entry, SequenceOptions({"max": 5}), 8)
    assert rules.configured(entry, SequenceOptions({"max": 5, "restart": 2}), 8)["next"] == 2


def test_cycling_wraps_to_the_other_bound():
    up = configured(min=1, max=3, cycle=True)
    assert rules.advance(up, "s", 2, 4)[:2] == ([3, 1, 2, 3], True)
    down = configured(min=-5, max=0, increment=-2, start=-1, cycle=True)
    assert rules.advance(down, "s", None, 5)[0] == [-1, -3, -5, 0, -2]


def test_the_reservation_stops_at_the_bound():
    assert rules.reservation(configured(max=40), 10, SEQUENCE_BLOCK) == 40
    assert rules.reservation(configured(increment=-1, min=-20), -3, SEQUENCE_BLOCK) == -20
    assert rules.reservation(configured(), 10, SEQUENCE_BLOCK) == 10 + SEQUENCE_BLOCK


def test_nextval_at_the_bound_takes_the_values_before_it(tmp_path):
    with Database.open(str(tmp_path / "data")) as db:
        s = db.connect()
        s.execute_one("CREATE SEQUENCE s MAXVALUE 3")
        assert error_of(s, "SELECT nextval('s') FROM generate_series(1, 5)") == \
            ("2200H", 'nextval: reached maximum value of sequence "s" (3)')
        assert one(s, "SELECT last_value FROM s") == 3
        assert error_of(s, "SELECT setval('s', 0)") == \
            ("22003", 'setval: value 0 is out of bounds for sequence "s" (1..3)')
        assert one(s, "SELECT setval('s', 2, false)") == 2
        assert s.execute_one("SELECT last_value, is_called FROM s").rows() == [(2, False)]
        other = db.connect()  # a plan cached with the pending value does not outlive it
        other.execute_one("SELECT setval('s', 3, false)")
        assert s.execute_one("SELECT last_value, is_called FROM s").rows() == [(3, False)]
        other.execute_one("SELECT setval('s', 2, false)")
        assert one(s, "SELECT nextval('s')") == 2


def test_restart_and_options_survive_a_clean_reopen(tmp_path):
    path = str(tmp_path / "data")
    with Database.open(path) as db:
        s = db.connect()
        s.execute_one("CREATE SEQUENCE s INCREMENT 2 MAXVALUE 100 CYCLE")
        s.execute_one("SELECT nextval('s')")
        s.execute_one("ALTER SEQUENCE s RESTART WITH 95")
    with Database.open(path) as db:
        s = db.connect()
        assert [one(s, "SELECT nextval('s')") for _ in range(5)] == [95, 97, 99, 1, 3]
        assert s.execute_one("SELECT increment_by, max_value, cycle FROM pg_sequences "
                             "WHERE sequencename = 's'").rows() == [(2, 100, True)]


def _killed_after(path: str, statements: list[str]) -> list:
    """Run `statements` in a child process that is killed with SIGKILL right after; the first
    column of each statement's result, as it printed them."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from sqlvec.database import Database
        db = Database.open({path!r})
        s = db.connect()
        for sql in {statements!r}:
            rows = s.execute_one(sql).rows()
            print(rows[0][0] if rows else None, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    return [None if v == "None" else int(v) for v in child.stdout.split()]


def test_after_a_kill_nextval_never_repeats_nor_passes_the_bound(tmp_path):
    path = str(tmp_path / "data")
    taken = _killed_after(path, ["CREATE SEQUENCE up MAXVALUE 20",
                                 "CREATE SEQUENCE round MAXVALUE 40 CYCLE",
                                 "CREATE SEQUENCE again",
                                 *["SELECT nextval('up')"] * 10,
                                 "SELECT max(nextval('round')) FROM generate_series(1, 45)",
                                 "SELECT nextval('again')", "SELECT nextval('again')",
                                 "ALTER SEQUENCE again RESTART WITH 7"])
    assert taken[3:13] == list(range(1, 11)) and taken[13] == 40
    with Database.open(path) as db:
        s = db.connect()
        # The reservation ended at the bound: the values up to it count as taken.
        assert error_of(s, "SELECT nextval('up')") == \
            ("2200H", 'nextval: reached maximum value of sequence "up" (20)')
        # 1..5 were handed out in the second lap: counting resumes after them, within bounds.
        assert 5 < one(s, "SELECT nextval('round')") <= 40
        assert one(s, "SELECT nextval('again')") == 7


def test_values_taken_in_a_schema_changing_block_survive_a_kill(tmp_path):
    """The block writes no manifest until COMMIT; the sequence's reservations are durable
    all the same, as nextval is not transactional."""
    path = str(tmp_path / "data")
    taken = _killed_after(path, ["CREATE SEQUENCE s", "CREATE SEQUENCE t",
                                 "SELECT nextval('t')", "BEGIN", "CREATE TABLE x (a int)",
                                 *["SELECT nextval('s')"] * (SEQUENCE_BLOCK + 3),
                                 "SELECT max(nextval('t')) FROM generate_series(1, 40)"])
    handed_out = taken[5:5 + SEQUENCE_BLOCK + 3]
    assert handed_out == list(range(1, SEQUENCE_BLOCK + 4)) and taken[-1] == 41
    with Database.open(path) as db:
        s = db.connect()
        assert one(s, "SELECT nextval('s')") > max(handed_out)
        assert one(s, "SELECT nextval('t')") > 41
        assert error_of(s, "SELECT 1 FROM x")[0] == "42P01"  # the block itself is gone


def test_values_taken_in_a_rolled_back_block_survive_a_kill(tmp_path):
    path = str(tmp_path / "data")
    taken = _killed_after(path, ["CREATE SEQUENCE s", "SELECT nextval('s')", "BEGIN",
                                 "CREATE TABLE x (a int)",
                                 "SELECT max(nextval('s')) FROM generate_series(1, 40)",
                                 "SAVEPOINT p", "DROP SEQUENCE s",
                                 "ROLLBACK TO SAVEPOINT p",
                                 "SELECT nextval('s')", "ROLLBACK"])
    assert taken[4] == 41 and taken[8] == 42
    with Database.open(path) as db:
        s = db.connect()
        assert one(s, "SELECT nextval('s')") > 42


def test_a_rolled_back_block_keeps_the_values_and_setval(tmp_path):
    """As in PostgreSQL, ROLLBACK gives back neither nextval's values nor setval's, in this
    process nor after a reopen."""
    path = str(tmp_path / "data")
    with Database.open(path) as db:
        s = db.connect()
        s.execute_one("CREATE SEQUENCE s")
        s.execute_one("CREATE SEQUENCE t")
        s.execute_one("BEGIN")
        s.execute_one("CREATE TABLE x (a int)")
        assert [one(s, "SELECT nextval('s')") for _ in range(3)] == [1, 2, 3]
        s.execute_one("SELECT setval('t', 100)")
        s.execute_one("ROLLBACK")
        assert one(s, "SELECT nextval('s')") == 4
        assert s.execute_one("SELECT last_value FROM pg_sequences "
                             "WHERE sequencename = 't'").rows() == [(100,)]
    with Database.open(path) as db:
        s = db.connect()
        assert one(s, "SELECT nextval('s')") > 4
        assert one(s, "SELECT nextval('t')") == 101


def test_an_unlogged_sequence_starts_afresh_after_a_kill_only(tmp_path):
    """As PostgreSQL resets unlogged relations after a crash: an unlogged sequence hands out
    its start value next after a kill, a logged one and a clean close keep counting."""
    path = str(tmp_path / "data")
    taken = _killed_after(path, ["CREATE UNLOGGED SEQUENCE u START 5",
                                 "CREATE SEQUENCE kept", "CREATE SEQUENCE was_u",
                                 "ALTER SEQUENCE was_u SET UNLOGGED",
                                 "ALTER SEQUENCE was_u SET LOGGED",
                                 "SELECT nextval('u')", "SELECT nextval('u')",
                                 "SELECT nextval('kept')", "SELECT nextval('was_u')"])
    assert taken[-4:] == [5, 6, 1, 1]
    with Database.open(path) as db:
        s = db.connect()
        assert one(s, "SELECT relpersistence FROM pg_class WHERE relname = 'u'") == "u"
        assert one(s, "SELECT last_value FROM pg_sequences WHERE sequencename = 'u'") is None
        assert [one(s, "SELECT nextval('u')") for _ in range(2)] == [5, 6]
        assert one(s, "SELECT nextval('kept')") > 1 and one(s, "SELECT nextval('was_u')") > 1
    with Database.open(path) as db:  # closed cleanly: counting goes on
        assert one(db.connect(), "SELECT nextval('u')") > 6


def test_the_clean_close_note_is_durable_when_written_and_when_taken_away(tmp_path, monkeypatch):
    """A note of a clean close that a power loss could bring back would hide a later crash
    from the unlogged sequences: the note and the directory entry (made or removed) are
    fsynced, after which no entry changes."""
    path = str(tmp_path / "data")
    stats = os.path.join(path, "pg_stat")
    note = os.path.join(stats, "postgres.closed")
    synced: list[tuple[str, bool]] = []  # (what was fsynced, whether the note was there then)
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), os.path.exists(note)))
    with Database.open(path) as db:
        db.connect().execute_one("CREATE UNLOGGED SEQUENCE u")
        monkeypatch.setattr(os, "fsync", recording_fsync)
    assert (note, True) in synced and (stats, True) in synced
    synced.clear()
    with Database.open(path) as db:
        assert not os.path.exists(note) and (stats, False) in synced
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert one(db.connect(), "SELECT nextval('u')") == 1
