"""A prepared vector top-k's compiled round trip (wire/compiled.py) against the general path:
a server `Connection` over a socketpair, driven with the protocol's bytes as a driver sends
them (Bind, Describe, Execute, Sync). Each answer through the compiled path must be the bytes
the general path gives for the same round trip (a second connection runs it first there)."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.wire_profile import Harness
from sqlvec.database import Database
from wire.messages import Bind, CopyData, CopyDone, Describe, Execute, Parse, Query, Sync

DIM = 8


class Client:
    """One server connection over a socketpair, run in the calling thread (the profiling
    harness's), its answers read whatever they hold."""

    def __init__(self, db: Database) -> None:
        self.harness = Harness(db)
        self.conn = self.harness.conn

    def send(self, data: bytes) -> bytes:
        self.harness.client.sendall(data)
        self.conn.serve_next()
        while self.conn.stream.buffered:
            self.conn.serve_next()
        return self.harness.drain()

    def query(self, sql: str) -> bytes:
        return self.send(Query(sql).encode())

    def bound(self, name: str, params: tuple, binary: tuple = (1,), results: tuple = ()) -> bytes:
        return self.send(Bind("", name, binary, params, results).encode()
                         + Describe("P", "").encode() + Execute("", 0).encode() + Sync().encode())

    def runs(self) -> int:
        return self.conn.compiled_runs


def binary_vector(v: np.ndarray) -> bytes:
    return struct.pack("!HH", v.size, 0) + v.astype(">f4").tobytes()


def text_vector(v: np.ndarray) -> bytes:
    return ("[" + ",".join(repr(float(x)) for x in v) + "]").encode()


@pytest.fixture
def db(tmp_path):
    opened = Database.open(str(tmp_path / "data"))
    session = opened.connect()
    rng = np.random.default_rng(7)
    session.execute_one(f"CREATE TABLE t (id bigint PRIMARY KEY, emb vector({DIM}))")
    session.copy_in("t", None, pa.table({
        "id": np.arange(400, dtype=np.int64),
        "emb": pa.FixedSizeListArray.from_arrays(
            pa.array(rng.standard_normal(400 * DIM).astype(np.float32)), DIM)}))
    session.execute_one("CREATE INDEX ON t USING hnsw (emb vector_l2_ops)")
    session.close()
    yield opened
    opened.close()


def pair(db: Database, *statements: tuple[str, str, tuple]) -> tuple[Client, Client]:
    """Two connections with the same prepared statements and ef_search."""
    clients = Client(db), Client(db)
    for c in clients:
        c.query("SET hnsw.ef_search = 1000")
        for name, sql, oids in (*statements, ("one", "SELECT 1", ())):
            c.send(Parse(name, sql, oids).encode() + Sync().encode())
    return clients


def general_path(client: Client, name: str, params: tuple, *formats: tuple) -> bytes:
    """A round trip's answer by the general path: the statement run last is another one (a
    round trip of `SELECT 1`), so nothing compiled fits."""
    client.bound("one", ())
    return client.bound(name, params, *formats)


QUERIES = np.random.default_rng(11).standard_normal((6, DIM)).astype(np.float32)


@pytest.mark.parametrize("op", ["<->", "<#>", "<=>"])
@pytest.mark.parametrize("form", ["binary", "text"])
def test_compiled_answers_are_the_general_paths_bytes(db, op, form):
    sql = f"SELECT id FROM t ORDER BY emb {op} $1 LIMIT 7" if form == "binary" else \
        f"SELECT id FROM t ORDER BY emb {op} $1::vector LIMIT 7"
    fast, general = pair(db, ("s", sql, ()))
    encode, fmt = (binary_vector, (1,)) if form == "binary" else (text_vector, ())
    for results in ((), (1,)):  # ids as text, then in binary
        for q in QUERIES:
            expected = general_path(general, "s", (encode(q),), fmt, results)
            assert fast.bound("s", (encode(q),), fmt, results) == expected
            assert expected[:1] == b"2" and b"D" in expected
    # (compiled at the first run of each result format, taken from the second on)
    assert fast.runs() == 2 * (len(QUERIES) - 1) and general.runs() == 0


def test_a_distance_in_binary_and_an_error_are_the_general_paths(db):
    sql = "SELECT id, emb <-> $1 AS d FROM t ORDER BY emb <-> $1 LIMIT 5"
    fast, general = pair(db, ("s", sql, ()))
    for q in QUERIES:
        expected = general_path(general, "s", (binary_vector(q),), (1,), (1,))
        assert fast.bound("s", (binary_vector(q),), (1,), (1,)) == expected
    runs = fast.runs()
    assert runs == len(QUERIES) - 1
    wrong = binary_vector(np.ones(DIM + 1, np.float32))  # decodes; the search refuses it
    expected = general_path(general, "s", (wrong,), (1,), (1,))
    assert b"22000" in expected or b"different vector dimensions" in expected
    assert fast.bound("s", (wrong,), (1,), (1,)) == expected and fast.runs() == runs + 1
    # A NULL vector, a malformed one and one parameter too many take the general path.
    runs = fast.runs()
    for params in ((None,), (b"\x00\x01",), (binary_vector(QUERIES[0]), b"")):
        expected = general_path(general, "s", params, (1,), (1,))
        assert fast.bound("s", params, (1,), (1,)) == expected and fast.runs() == runs
        fast.bound("s", (binary_vector(QUERIES[0]),), (1,), (1,))
        runs = fast.runs()


def test_rows_written_since_and_settings_changed_since_are_seen(db):
    sql = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 3"
    fast, general = pair(db, ("s", sql, ()))
    q = QUERIES[0]
    first = fast.bound("s", (binary_vector(q),))
    fast.bound("s", (binary_vector(q),))
    runs = fast.runs()
    general.query(f"INSERT INTO t VALUES (1000, '{text_vector(q).decode()}')")
    assert b"\x00\x00\x00\x041000" in fast.bound("s", (binary_vector(q),))
    general.query("DELETE FROM t WHERE id = 1000")
    assert fast.bound("s", (binary_vector(q),)) == first and fast.runs() == runs + 2
    fast.query("SET hnsw.ef_search = 1")  # a new knob: the same compiled round trip reads it
    general.query("SET hnsw.ef_search = 1")
    for q in QUERIES:
        expected = general_path(general, "s", (binary_vector(q),))
        assert fast.bound("s", (binary_vector(q),)) == expected
    assert fast.runs() == runs + 2 + len(QUERIES)
    general.query("DELETE FROM t")  # no row left: an answer of no DataRow
    expected = general_path(general, "s", (binary_vector(q),))
    assert fast.bound("s", (binary_vector(q),)) == expected and b"SELECT 0" in expected
    assert fast.runs() == runs + 3 + len(QUERIES)


def test_inside_a_block_and_after_ddl_the_general_path_answers(db):
    sql = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 4"
    fast, general = pair(db, ("s", sql, ()))
    q = binary_vector(QUERIES[1])
    idle = fast.bound("s", (q,))
    fast.bound("s", (q,))
    runs = fast.runs()
    assert runs == 1
    fast.query("BEGIN")
    in_block = fast.bound("s", (q,))
    assert in_block[:-1] == idle[:-1] and in_block[-1:] == b"T" and fast.runs() == runs
    fast.query("COMMIT")
    general.query("CREATE INDEX ON t USING hnsw (emb vector_ip_ops)")  # a new catalog generation
    again = fast.bound("s", (q,))
    assert again == idle and fast.runs() == runs


def test_each_compiled_run_logs_its_duration_when_asked(db, caplog):
    sql = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 3"
    fast, _ = pair(db, ("s", sql, ()))
    fast.query("SET log_min_duration_statement = 0")
    with caplog.at_level(logging.INFO, logger="sqlvec"):
        for q in QUERIES:
            fast.bound("s", (binary_vector(q),))
    durations = [r for r in caplog.records if r.getMessage().startswith("duration:")
                 and sql in r.getMessage()]
    assert fast.runs() == len(QUERIES) - 1 and len(durations) == len(QUERIES)


def test_a_limit_bound_as_a_parameter_is_the_general_paths_bytes(db):
    sql = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT $2"
    fast, general = pair(db, ("s", sql, (0, 20)))
    for q, limit in zip(QUERIES, (4, 4, 9, 0, 4, 2)):
        params = (binary_vector(q), struct.pack("!q", limit))
        expected = general_path(general, "s", params, (1, 1))
        assert fast.bound("s", params, (1, 1)) == expected
        assert expected.count(b"D\x00") == limit
    assert fast.runs() == len(QUERIES) - 1 and general.runs() == 0


@pytest.mark.parametrize("where, value", [
    ("id < $1", struct.pack("!q", 200)), ("id >= $1 AND id < 390", struct.pack("!q", 350)),
    ("id < $1", None)])
def test_a_filter_bound_beside_the_vector_is_the_general_paths_bytes(db, where, value):
    """A filtered top-k (the vector its second parameter) is compiled too: the same bytes
    (a NULL bound in the filter included), each run with its own values."""
    sql = f"SELECT id FROM t WHERE {where} ORDER BY emb <-> $2 LIMIT 7"
    fast, general = pair(db, ("s", sql, (20, 0)))
    for q in QUERIES:
        params = (value, binary_vector(q))
        expected = general_path(general, "s", params, (1, 1))
        assert fast.bound("s", params, (1, 1)) == expected
        assert expected.count(b"D\x00") == (0 if value is None else 7)
    assert fast.runs() == len(QUERIES) - 1 and general.runs() == 0


@pytest.fixture
def wide(db):
    """`t` with columns of other types beside the id: int4, real, a text column with NULLs,
    and rows written after the index (a growing segment beside the indexed one)."""
    session = db.connect()
    session.execute_one("ALTER TABLE t ADD COLUMN n integer")
    session.execute_one("ALTER TABLE t ADD COLUMN r real")
    session.execute_one("ALTER TABLE t ADD COLUMN s text")
    session.execute_one("UPDATE t SET n = id * 3, r = id / 7.0, s = CASE WHEN id % 3 = 0 "
                        "THEN NULL ELSE 'row ' || id END WHERE id < 200")
    for i, q in enumerate(QUERIES[:3]):
        session.execute_one(f"INSERT INTO t VALUES ({500 + i}, '{text_vector(q).decode()}', "
                            f"{i}, 0.5, NULL)")
    session.close()
    return db


@pytest.mark.parametrize("columns", ["id, n, r", "n, id, emb <-> $1 AS d", "id, s, r, n",
                                     "emb <=> $1 AS d, id"])
def test_other_columns_and_segments_are_the_general_paths_bytes(wide, columns):
    op = "<=>" if "<=>" in columns else "<->"
    sql = f"SELECT {columns} FROM t ORDER BY emb {op} $1 LIMIT 9"
    fast, general = pair(wide, ("s", sql, ()))
    for results in ((), (1,)):
        for q in QUERIES:
            expected = general_path(general, "s", (binary_vector(q),), (1,), results)
            assert fast.bound("s", (binary_vector(q),), (1,), results) == expected
            assert expected.count(b"D\x00") == 9
    assert fast.runs() >= len(QUERIES) - 1  # (text at least: some binary cells are not short)


def test_a_result_longer_than_a_short_one_is_the_general_paths(wide):
    sql = "SELECT id, r FROM t ORDER BY emb <-> $1 LIMIT 100"
    fast, general = pair(wide, ("s", sql, ()))
    for q in QUERIES:
        expected = general_path(general, "s", (binary_vector(q),), (1,), (1,))
        assert fast.bound("s", (binary_vector(q),), (1,), (1,)) == expected
        assert b"SELECT 100\x00" in expected
    assert fast.runs() == len(QUERIES) - 1


def test_counters_and_explain_are_the_general_paths(db):
    sql = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 5"
    fast, general = pair(db, ("s", sql, ()))
    fast.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    explain = f"EXPLAIN {sql.replace('$1', repr(text_vector(QUERIES[0]).decode()))}"
    plan = fast.query(explain)
    observer = db.connect()

    def counted() -> list[int]:
        scans = observer.execute_one("SELECT idx_scan, seq_scan, idx_tup_fetch FROM "
                                     "pg_stat_user_tables WHERE relname = 't'").rows()
        calls = observer.execute_one("SELECT calls, rows FROM pg_stat_statements "
                                     "WHERE query LIKE 'SELECT id FROM t ORDER BY emb <-> $1 LIMIT%'").rows()
        return [*scans[0], *(calls[0] if calls else (0, 0))]

    before = counted()
    for q in QUERIES:
        general_path(general, "s", (binary_vector(q),))
    by_general = counted()
    for q in QUERIES:
        fast.bound("s", (binary_vector(q),))
    by_fast = counted()
    observer.close()
    assert fast.runs() == len(QUERIES) - 1
    general_delta = [b - a for a, b in zip(before, by_general)]
    assert general_delta[0] == len(QUERIES) and general_delta[3:] == [len(QUERIES), 5 * 6]
    assert [b - a for a, b in zip(by_general, by_fast)] == general_delta
    assert fast.query(explain) == plan


def parsed_each_run(client: Client, sql: str, params: tuple) -> bytes:
    """A round trip as a driver that keeps no prepared statement sends it (node-postgres):
    the unnamed statement's Parse, then Bind, Describe, Execute, Sync."""
    return client.send(Parse("", sql, ()).encode() + Bind("", "", (1,), params, ()).encode()
                       + Describe("P", "").encode() + Execute("", 0).encode()
                       + Sync().encode())


def test_a_statement_parsed_again_each_run_is_compiled_and_the_general_paths_bytes(db):
    """The unnamed statement parsed again as it was stays the same statement, so its round
    trips after the first run compiled; the answers are the general path's (ParseComplete
    first), across a write, a schema change and a statement that does not parse."""
    sql = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 5"
    fast, general = pair(db, ("s", sql, ()))
    for q in QUERIES:
        expected = general_path(general, "s", (binary_vector(q),))
        assert parsed_each_run(fast, sql, (binary_vector(q),)) == b"1\x00\x00\x00\x04" + expected
    assert fast.runs() == len(QUERIES) - 1  # (the first run compiles it)
    q = binary_vector(QUERIES[0])
    general.query(f"INSERT INTO t VALUES (1000, '{text_vector(QUERIES[0]).decode()}')")
    assert b"\x00\x00\x00\x041000" in parsed_each_run(fast, sql, (q,))
    assert fast.runs() == len(QUERIES)
    general.query("CREATE INDEX ON t USING hnsw (emb vector_ip_ops)")  # planned again
    assert parsed_each_run(fast, sql, (q,)) == b"1\x00\x00\x00\x04" + general_path(
        general, "s", (q,))
    broken = parsed_each_run(fast, "SELEC id FROM t", (q,))
    assert broken[:1] == b"E" and b"42601" in broken and broken.endswith(b"Z\x00\x00\x00\x05I")
    other = "SELECT id FROM t ORDER BY emb <-> $1 LIMIT 2"  # another text: another statement
    assert parsed_each_run(fast, other, (q,)).count(b"D\x00") == 2
    assert parsed_each_run(fast, sql, (q,)).count(b"D\x00") == 5


def message_types(answer: bytes) -> list[bytes]:
    """The type bytes of the backend messages in `answer`, in order."""
    types, pos = [], 0
    while pos < len(answer):
        types.append(answer[pos:pos + 1])
        pos += 1 + struct.unpack_from("!i", answer, pos + 1)[0]
    return types


@pytest.mark.parametrize("named", [False, True])
def test_a_copy_sent_with_its_sync_and_its_data_answers_ready_once(db, named):
    """libpq's PQexecParams of COPY FROM STDIN: Parse, Bind, Describe, Execute, Sync at once,
    then the data, CopyDone and another Sync. The Sync in between is ignored in copy-in mode,
    as PostgreSQL does: one ReadyForQuery, after the COPY's CommandComplete."""
    client = Client(db)
    sql = "COPY t (id, emb) FROM STDIN"
    if named:
        client.send(Parse("cp", sql, ()).encode() + Sync().encode())
    row = f"{5000 + named}\t{text_vector(QUERIES[0]).decode()}\n".encode()
    answer = client.send(
        (b"" if named else Parse("", sql, ()).encode())
        + Bind("", "cp" if named else "", (), (), ()).encode() + Describe("P", "").encode()
        + Execute("", 0).encode() + Sync().encode() + CopyData(row).encode()
        + CopyDone().encode() + Sync().encode())
    types = message_types(answer)
    assert types[-2:] == [b"C", b"Z"] and types.count(b"Z") == 1 and b"G" in types
    assert b"COPY 1" in answer
    count = client.query(f"SELECT count(*) FROM t WHERE id = {5000 + named}")
    assert b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011" in count


def test_a_parse_of_the_unnamed_statement_that_fails_leaves_none(db):
    """PostgreSQL drops the unnamed statement before parsing its replacement: a Bind of it
    after a Parse that failed is 26000, not a run of the statement before."""
    client = Client(db)
    assert client.send(Parse("", "SELECT 1", ()).encode() + Sync().encode())[:1] == b"1"
    assert client.send(Parse("", "SELEC 2", ()).encode() + Sync().encode())[:1] == b"E"
    answer = client.send(Bind("", "", (), (), ()).encode() + Execute("", 0).encode()
                         + Sync().encode())
    assert answer[:1] == b"E" and b"26000" in answer and b"Z" in answer


def test_a_parse_in_a_failed_block_is_refused_but_its_rollback(db):
    """PostgreSQL's Parse answers 25P02 in a failed block (the statement is not made), but
    for COMMIT and ROLLBACK, which end it."""
    client = Client(db)
    client.query("BEGIN")
    assert b"22012" in client.query("SELECT 1 / 0")
    refused = client.send(Parse("s2", "SELECT 2", ()).encode() + Sync().encode())
    assert refused[:1] == b"E" and b"25P02" in refused and refused.endswith(b"Z\x00\x00\x00\x05E")
    ended = client.send(Parse("", "ROLLBACK", ()).encode() + Bind("", "", (), (), ()).encode()
                        + Execute("", 0).encode() + Sync().encode())
    assert ended[:1] == b"1" and b"ROLLBACK" in ended and ended.endswith(b"Z\x00\x00\x00\x05I")
    gone = client.send(Bind("", "s2", (), (), ()).encode() + Execute("", 0).encode()
                       + Sync().encode())
    assert gone[:1] == b"E" and b"26000" in gone
