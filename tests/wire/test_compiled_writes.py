"""A prepared write's compiled round trip (wire/compiled.py, `CompiledWrite`) against the
general path: a server `Connection` over a socketpair, driven with the bytes psycopg sends
(Bind, Describe, Execute, Sync). Each answer through the compiled path must be the bytes the
general path gives for the same round trip in a twin database (a second connection receives
it there in two pieces, its Bind first, so each message is handled on its own)."""

from __future__ import annotations

import struct

import pytest

from sqlvec.database import Database
from tests.wire.test_compiled import Client
from wire.messages import Bind, Close, Describe, Execute, Parse, Sync

INT2, INT4, INT8, TEXT = 21, 23, 20, 25


def database(path: str) -> Database:
    opened = Database.open(path)
    session = opened.connect()
    session.execute_one("CREATE TABLE t (id bigint PRIMARY KEY, v int, s text)")
    session.execute_one("INSERT INTO t SELECT g, 0, 'x' FROM generate_series(0, 99) g")
    session.close()
    return opened


@pytest.fixture
def dbs(tmp_path):
    opened = database(str(tmp_path / "fast")), database(str(tmp_path / "general"))
    yield opened
    for db in opened:
        db.close()


class Twins:
    """The same statements prepared on two connections, each to its own database."""

    def __init__(self, dbs: tuple[Database, Database], *statements: tuple[str, str, tuple]):
        self.fast, self.general = Client(dbs[0]), Client(dbs[1])
        for client in (self.fast, self.general):
            for name, sql, oids in (*statements, ("one", "SELECT 1", ())):
                client.send(Parse(name, sql, oids).encode() + Sync().encode())

    def query(self, sql: str) -> tuple[bytes, bytes]:
        return self.fast.query(sql), self.general.query(sql)

    def both(self, name: str, params: tuple, binary: tuple = ()) -> tuple[bytes, bytes]:
        """The round trip's answer through the compiled path (kept since the statement's
        first run) and through the general one."""
        bind = Bind("", name, binary, params, ()).encode()
        rest = Describe("P", "").encode() + Execute("", 0).encode() + Sync().encode()
        general = self.general.send(bind) + self.general.send(rest)
        return self.fast.send(bind + rest), general

    def writes(self) -> int:
        return self.fast.conn.compiled_writes


def int8(i: int) -> bytes:
    return struct.pack("!q", i)


def test_updates_inserts_and_deletes_answer_the_general_paths_bytes(dbs):
    twins = Twins(dbs, ("u", "UPDATE t SET v = v + $2 WHERE id = $1", (INT8, INT4)),
                  ("i", "INSERT INTO t VALUES ($1, $2, $3)", (INT8, INT4, TEXT)),
                  ("d", "DELETE FROM t WHERE id = $1", (INT8,)))
    for i in range(6):
        fast, general = twins.both("u", (int8(i), struct.pack("!i", 5)), (1,))
        assert fast == general and b"UPDATE 1" in fast
        fast, general = twins.both("i", (str(1000 + i).encode(), b"7", "é".encode()))
        assert fast == general and b"INSERT 0 1" in fast
        fast, general = twins.both("d", (int8(50 + i),), (1,))
        assert fast == general and b"DELETE 1" in fast
    fast, general = twins.both("u", (int8(-1), struct.pack("!i", 5)), (1,))  # no such row
    assert fast == general and b"UPDATE 0" in fast
    fast, general = twins.both("i", (b"2000", None, None))  # NULLs
    assert fast == general and b"INSERT 0 1" in fast
    # A named statement's round trip is kept at its first run, compiled from the second on.
    assert twins.writes() == 7 - 1 + 7 - 1 + 6 - 1 and twins.general.conn.compiled_writes == 0
    fast, general = twins.query("SELECT id, v, s FROM t WHERE id IN (0, 5, 1005, 2000) "
                                "OR id BETWEEN 50 AND 59 ORDER BY id")
    assert fast == general and fast.count(b"D\x00") == 8 and "é".encode() in fast


def test_psycopgs_statements_per_integer_size_taking_turns(dbs):
    """psycopg prepares a statement per parameter type (int2 / int4 / int8 by the value's
    size, in text): random ids take turns between them, each compiled."""
    sql = "UPDATE t SET v = v + 1 WHERE id = $1"
    twins = Twins(dbs, ("p2", sql, (INT2,)), ("p4", sql, (INT4,)), ("p8", sql, (INT8,)))
    for i in range(4):
        for name, value in (("p2", 7), ("p4", 40_000), ("p8", 1 << 40), ("p2", 9)):
            fast, general = twins.both(name, (str(value + i).encode(),))
            assert fast == general
    assert twins.writes() == 3 * 4 + 4 - 3  # the first of each statement ran in full


def test_errors_are_the_general_paths(dbs):
    twins = Twins(dbs, ("i", "INSERT INTO t VALUES ($1, $2, $3)", (INT8, INT2, TEXT)))
    twins.both("i", (b"500", b"1", b"x"))
    twins.both("i", (b"501", b"1", b"x"))
    writes = twins.writes()
    fast, general = twins.both("i", (b"501", b"1", b"x"))  # a duplicate key: the statement's
    assert fast == general and b"23505" in fast and twins.writes() == writes + 1
    assert fast.endswith(b"Z\x00\x00\x00\x05I")
    # Values the compiled decoders leave to the general path, which reports them.
    for params in ((b"502", b"40000", b"x"),  # out of smallint's range
                   (b"abc", b"1", b"x"),  # not an integer
                   (b"503", b"1", b"\xff")):  # not UTF-8
        fast, general = twins.both("i", params)
        assert fast == general and fast[:1] == b"E" and twins.writes() == writes + 1
    fast, general = twins.both("i", (b"504", b"-32768", b"x"))  # smallint's least, compiled
    assert fast == general and b"INSERT 0 1" in fast and twins.writes() == writes + 2


def test_a_block_a_new_plan_and_a_new_statement_of_the_name(dbs):
    twins = Twins(dbs, ("u", "UPDATE t SET v = v + 1 WHERE id = $1", (INT8,)))
    for _ in range(3):
        twins.both("u", (b"1",))
    writes = twins.writes()
    twins.query("BEGIN")  # in a block: compiled too
    fast, general = twins.both("u", (b"2",))
    assert fast == general and fast.endswith(b"Z\x00\x00\x00\x05T")
    assert twins.writes() == writes + 1
    twins.query("COMMIT")
    twins.query("ALTER TABLE t ADD COLUMN w int DEFAULT 3")  # planned again, then compiled
    fast, general = twins.both("u", (b"3",))
    assert fast == general and b"UPDATE 1" in fast and twins.writes() == writes + 1
    twins.both("u", (b"3",))
    assert twins.writes() == writes + 2
    # The name closed and prepared again as another statement: that one runs.
    for client in (twins.fast, twins.general):
        client.send(Close("S", "u").encode() + Parse(
            "u", "DELETE FROM t WHERE id = $1", (INT8,)).encode() + Sync().encode())
    fast, general = twins.both("u", (b"4",))
    assert fast == general and b"DELETE 1" in fast
    fast, general = twins.both("u", (b"5",))
    assert fast == general and b"DELETE 1" in fast


def test_a_blocks_updates_inserts_and_deletes_answer_the_general_paths_bytes(dbs):
    """In a transaction block the compiled round trip writes into the block's transaction:
    the same answers, the same rows seen by the block's later statements and after COMMIT."""
    twins = Twins(dbs, ("u", "UPDATE t SET v = v + $2 WHERE id = $1", (INT8, INT4)),
                  ("i", "INSERT INTO t VALUES ($1, $2, $3)", (INT8, INT4, TEXT)),
                  ("d", "DELETE FROM t WHERE id = $1", (INT8,)))
    twins.query("BEGIN")
    for i in range(5):
        fast, general = twins.both("u", (int8(i), struct.pack("!i", 5)), (1,))
        assert fast == general and b"UPDATE 1" in fast and fast.endswith(b"Z\x00\x00\x00\x05T")
        fast, general = twins.both("i", (str(3000 + i).encode(), b"7", b"y"))
        assert fast == general and b"INSERT 0 1" in fast
        fast, general = twins.both("u", (int8(3000 + i), struct.pack("!i", 1)), (1,))  # its own
        assert fast == general and b"UPDATE 1" in fast
        fast, general = twins.both("d", (int8(60 + i),), (1,))
        assert fast == general and b"DELETE 1" in fast
        fast, general = twins.both("d", (int8(60 + i),), (1,))  # deleted already in the block
        assert fast == general and b"DELETE 0" in fast
    assert twins.writes() == 5 * 5 - 3 and twins.general.conn.compiled_writes == 0
    read = "SELECT id, v FROM t WHERE id < 5 OR id BETWEEN 60 AND 64 OR id >= 3000 ORDER BY id"
    fast, general = twins.query(read)
    assert fast == general and fast.count(b"D\x00") == 10
    fast, general = twins.query("COMMIT")
    assert fast == general and fast.endswith(b"Z\x00\x00\x00\x05I")
    fast, general = twins.query(read)
    assert fast == general and b"3008" not in fast and fast.count(b"D\x00") == 10


def test_a_blocks_error_fails_it_as_the_general_path_does(dbs):
    """A compiled statement's error in a block aborts the block: what follows is 25P02
    until ROLLBACK (through the general path: the compiled one takes no failed block)."""
    twins = Twins(dbs, ("i", "INSERT INTO t VALUES ($1, $2, $3)", (INT8, INT4, TEXT)))
    twins.query("BEGIN")
    for i in range(3):
        assert twins.both("i", (str(4000 + i).encode(), b"1", b"x"))[0].count(b"INSERT 0 1")
    writes = twins.writes()
    fast, general = twins.both("i", (b"4001", b"1", b"x"))  # a duplicate key
    assert fast == general and b"23505" in fast and fast.endswith(b"Z\x00\x00\x00\x05E")
    assert twins.writes() == writes + 1
    fast, general = twins.both("i", (b"4100", b"1", b"x"))
    assert fast == general and b"25P02" in fast and twins.writes() == writes + 1
    fast, general = twins.query("ROLLBACK")
    assert fast == general and fast.endswith(b"Z\x00\x00\x00\x05I")
    fast, general = twins.query("SELECT count(*) FROM t WHERE id >= 4000")
    assert fast == general and b"\x00\x00\x00\x010" in fast


def test_a_blocks_portal_stays_as_the_general_paths_does(dbs):
    """The unnamed portal a compiled round trip stands for lives on in the block: an Execute
    of it alone answers as after the general path's Bind."""
    twins = Twins(dbs, ("u", "UPDATE t SET v = v + 1 WHERE id = $1", (INT8,)))
    twins.query("BEGIN")
    for i in range(3):
        fast, general = twins.both("u", (int8(i),), (1,))
        assert fast == general
    assert twins.writes() == 2
    again = Execute("", 0).encode() + Sync().encode()
    fast, general = twins.fast.send(again), twins.general.send(again)
    assert fast == general and b"UPDATE 1" in fast
    twins.query("COMMIT")
    fast, general = twins.query("SELECT v FROM t WHERE id = 2")
    assert fast == general and b"\x00\x00\x00\x011" in fast


def test_a_blocks_named_portal_is_taken_at_its_second_bind(dbs):
    """A round trip binding a named portal in a block: the portal stays, so the next such
    Bind is 42P03 (checked before the failed block's 25P02), through either path."""
    twins = Twins(dbs, ("u", "UPDATE t SET v = v + 1 WHERE id = $1", (INT8,)))
    twins.query("BEGIN")
    answers = []
    for i in range(3):
        bind = Bind("p", "u", (1,), (int8(i),), ()).encode()
        rest = Describe("P", "p").encode() + Execute("p", 0).encode() + Sync().encode()
        general = twins.general.send(bind) + twins.general.send(rest)
        fast = twins.fast.send(bind + rest)
        assert fast == general
        answers.append(fast)
    assert b"UPDATE 1" in answers[0] and b"42P03" in answers[1] and b"42P03" in answers[2]
