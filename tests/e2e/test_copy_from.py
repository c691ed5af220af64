"""COPY FROM STDIN through psycopg against the real server: the bulk paths (text decoded over the
whole stream, binary over the whole buffer) give exactly the values the exact decoders give,
fail a bad row with pgvector's error and its line, and load nothing unless the COPY completes."""

from __future__ import annotations

import signal
import struct
import time

import numpy as np
import psycopg
import pytest
from psycopg import errors

from tests.e2e.conftest import RawClient, start_server
from wire.messages import CopyData, Query

ROWS = 3000
DIM = 8


@pytest.fixture
def conn(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        yield connection


def vectors(n: int = ROWS, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def text_rows(matrix: np.ndarray) -> bytes:
    """The plain stream clients send: `id<TAB>category<TAB>[v1,...]`, floats written as
    Python's shortest repr of each float4 (exponents included)."""
    return "".join(f"{i}\t{i % 10}\t[{','.join(repr(float(x)) for x in row)}]\n"
                   for i, row in enumerate(matrix)).encode()


def binary_rows(matrix: np.ndarray) -> bytes:
    parts = [b"PGCOPY\n\xff\r\n\x00", struct.pack("!ii", 0, 0)]
    for i, row in enumerate(matrix):
        parts.append(struct.pack("!hiqiiiHH", 3, 8, i, 4, i % 10, 4 + 4 * DIM, DIM, 0)
                     + row.astype(">f4").tobytes())
    parts.append(struct.pack("!h", -1))
    return b"".join(parts)


def create(conn, table: str) -> None:
    conn.execute(f"CREATE TABLE {table} (id bigint, category int, embedding vector({DIM}))")


def copy(conn, sql: str, data: bytes) -> None:
    with conn.cursor().copy(sql) as cp:
        for at in range(0, len(data), 1 << 16):
            cp.write(data[at:at + (1 << 16)])


def stored(conn, table: str) -> np.ndarray:
    rows = conn.cursor(binary=True).execute(
        f"SELECT embedding FROM {table} ORDER BY id").fetchall()
    return np.stack([np.frombuffer(raw, ">f4", offset=4) for (raw,) in rows])


def test_text_and_binary_copy_store_the_same_float4_bits(conn, table):
    matrix = vectors()
    matrix[0, :3] = [1e-30, -3.4e38, 1.5e-45]  # exponents, the extremes, a denormal
    create(conn, f"{table}_t")
    create(conn, f"{table}_b")
    copy(conn, f"COPY {table}_t FROM STDIN", text_rows(matrix))
    copy(conn, f"COPY {table}_b FROM STDIN (FORMAT binary)", binary_rows(matrix))
    for name in (f"{table}_t", f"{table}_b"):
        assert conn.execute(f"SELECT count(*), sum(category) FROM {name}").fetchone() == \
            (ROWS, sum(i % 10 for i in range(ROWS)))
        np.testing.assert_array_equal(stored(conn, name).view(np.uint32),
                                      matrix.view(np.uint32))


def test_text_copy_values_come_back_exactly(conn, table):
    conn.execute(f"CREATE TABLE {table} (id bigint, note text, v vector(3))")
    long_note = "é" * 100_000 + "x"
    data = "".join([
        "1\tplain\t[1,2,3]\n",
        "2\t\\N\t\\N\n",  # NULLs
        "3\t\t[1e-3,-2.5E+2,0]\n",  # an empty string, exponents
        "4\t\"quoted\" 'too'\t[ 1 , 2 ,3 ]\n",  # quotes are data; spaces around numbers
        "5\tnon-ASCII: ☃ 𝄞\t[+1,.5,5.]\n",
        f"6\t{long_note}\t[4,5,6]\n",  # a very long line
    ]).encode()
    copy(conn, f"COPY {table} FROM STDIN", data)
    escaped = b"7\ttab\\there\\\\back\\nline\\x41\\101\t[7,8,9]\n8\t\\\\N\t[0,0,0]\n"
    copy(conn, f"COPY {table} FROM STDIN", escaped)  # escapes: the exact decoder's work
    rows = conn.execute(f"SELECT id, note, v::text FROM {table} ORDER BY id").fetchall()
    assert rows == [
        (1, "plain", "[1,2,3]"),
        (2, None, None),
        (3, "", "[0.001,-250,0]"),
        (4, "\"quoted\" 'too'", "[1,2,3]"),
        (5, "non-ASCII: ☃ 𝄞", "[1,0.5,5]"),
        (6, long_note, "[4,5,6]"),
        (7, "tab\there\\back\nlineAA", "[7,8,9]"),
        (8, "\\N", "[0,0,0]"),
    ]


@pytest.mark.parametrize("bad, error, message", [
    ("[1,2,3]", errors.DataException, f"expected {DIM} dimensions, not 3"),
    ("[1,x,3,4,5,6,7,8]", errors.InvalidTextRepresentation,
     'invalid input syntax for type vector: "[1,x,3,4,5,6,7,8]"'),
    ("[1,2,3,4,5,6,7,NaN]", errors.DataException, "NaN not allowed in vector"),
    ("[1,2,3,4,5,6,7,1e39]", errors.NumericValueOutOfRange, "out of range for type vector"),
])
def test_a_bad_vector_fails_the_whole_text_copy_with_its_line(conn, table, bad, error, message):
    create(conn, table)
    lines = text_rows(vectors()).split(b"\n")
    lines[1233] = f"1233\t3\t{bad}".encode()
    with pytest.raises(error) as info:
        copy(conn, f"COPY {table} FROM STDIN", b"\n".join(lines))
    assert message in info.value.diag.message_primary
    assert info.value.diag.context.startswith(f"COPY {table}, line 1234, column embedding: ")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_a_bad_vector_fails_the_whole_binary_copy_with_its_line(conn, table):
    create(conn, table)
    data = bytearray(binary_rows(vectors()))
    row = 2 + 4 + 8 + 4 + 4 + 4 + 4 + 4 * DIM
    at = 19 + 1500 * row + 2 + 12 + 8 + 4  # row 1501's vector: its dim word
    data[at:at + 2] = struct.pack("!H", DIM - 1)
    with pytest.raises(psycopg.Error) as info:
        copy(conn, f"COPY {table} FROM STDIN (FORMAT binary)", bytes(data))
    assert info.value.sqlstate in ("22P03", "22000")
    assert info.value.diag.context.startswith(f"COPY {table}, line 1501, column embedding")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_a_client_that_disconnects_mid_copy_loses_nothing_committed(start, conn, table):
    running = start()
    with psycopg.connect(running.conninfo(), autocommit=True) as first:
        create(first, table)
        copy(first, f"COPY {table} FROM STDIN", text_rows(vectors()))
    for payload in (text_rows(vectors(500, seed=8)), binary_rows(vectors(500, seed=8))):
        client = RawClient(running).ready()
        fmt = " (FORMAT binary)" if payload.startswith(b"PGCOPY") else ""
        client.send(Query(f"COPY {table} FROM STDIN{fmt}").encode())
        assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
        client.send(CopyData(payload[: len(payload) // 2]).encode())
        client.close()  # gone without CopyDone
    data_dir = running.data_dir
    with psycopg.connect(running.conninfo(), autocommit=True) as after:
        assert after.execute(f"SELECT count(*) FROM {table}").fetchone() == (ROWS,)
    assert running.stop() == 0
    again = start(data_dir=data_dir)
    with psycopg.connect(again.conninfo(), autocommit=True) as restarted:
        assert restarted.execute(f"SELECT count(*) FROM {table}").fetchone() == (ROWS,)
        np.testing.assert_array_equal(stored(restarted, table), vectors())


def large_text(n: int, dim: int) -> tuple[np.ndarray, bytes]:
    """n rows of `id<TAB>category<TAB>[...]` with dim-d vectors: over 8 MiB, so the server
    decodes it in pieces while it arrives."""
    import pyarrow as pa
    import pyarrow.compute as pc

    matrix = np.random.default_rng(3).standard_normal((n, dim)).astype(np.float32)
    floats = pc.cast(pa.array(matrix.reshape(-1)), pa.string())
    lists = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * dim), floats)
    vec = pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")
    ids = pa.array(np.arange(n)).cast(pa.string())
    cats = pa.array(np.arange(n) % 10).cast(pa.string())
    lines = pc.binary_join_element_wise(ids, cats, vec, "\t").to_pylist()
    return matrix, ("\n".join(lines) + "\n").encode()


def test_a_large_text_copy_is_exact_and_a_late_bad_row_loads_nothing(conn, table):
    matrix, data = large_text(9000, 128)
    assert len(data) > 9 << 20
    conn.execute(f"CREATE TABLE {table} (id bigint, category int, embedding vector(128))")
    conn.execute(f"CREATE TABLE {table}_bad (id bigint, category int, embedding vector(128))")
    copy(conn, f"COPY {table} FROM STDIN", data)
    rows = conn.cursor(binary=True).execute(
        f"SELECT embedding FROM {table} ORDER BY id").fetchall()
    got = np.stack([np.frombuffer(raw, ">f4", offset=4) for (raw,) in rows])
    np.testing.assert_array_equal(got.view(np.uint32), matrix.view(np.uint32))
    lines = data.split(b"\n")
    lines[8500] = b"8500\t0\t[1,2]"
    with pytest.raises(errors.DataException) as info:
        copy(conn, f"COPY {table}_bad FROM STDIN", b"\n".join(lines))
    assert info.value.diag.message_primary == "expected 128 dimensions, not 2"
    assert info.value.diag.context == f'COPY {table}_bad, line 8501, column embedding: "[1,2]"'
    assert conn.execute(f"SELECT count(*) FROM {table}_bad").fetchone() == (0,)


def test_a_large_binary_copy_is_exact_and_a_late_bad_row_loads_nothing(conn, table):
    n, dim = 20000, 128
    matrix = np.random.default_rng(4).standard_normal((n, dim)).astype(np.float32)
    rec = np.zeros(n, dtype=[("count", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"),
                             ("dim", ">u2"), ("unused", ">u2"), ("v", ">f4", (dim,))])
    rec["count"], rec["l1"], rec["id"], rec["l2"], rec["dim"] = 2, 8, np.arange(n), 4 + 4 * dim, dim
    rec["v"] = matrix
    data = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + rec.tobytes() + b"\xff\xff"
    assert len(data) > 9 << 20
    for name in (table, f"{table}_bad"):
        conn.execute(f"CREATE TABLE {name} (id bigint, embedding vector({dim}))")
    copy(conn, f"COPY {table} FROM STDIN (FORMAT binary)", data)
    rows = conn.cursor(binary=True).execute(
        f"SELECT embedding FROM {table} ORDER BY id").fetchall()
    got = np.stack([np.frombuffer(raw, ">f4", offset=4) for (raw,) in rows])
    np.testing.assert_array_equal(got.view(np.uint32), matrix.view(np.uint32))
    rec["v"][19000, 5] = np.nan
    with pytest.raises(errors.DataException) as info:
        copy(conn, f"COPY {table}_bad FROM STDIN (FORMAT binary)",
             b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + rec.tobytes() + b"\xff\xff")
    assert info.value.diag.message_primary == "NaN not allowed in vector"
    assert info.value.diag.context.startswith(f"COPY {table}_bad, line 19001, column embedding")
    assert conn.execute(f"SELECT count(*) FROM {table}_bad").fetchone() == (0,)


def test_a_large_binary_copy_with_a_key_float_and_text_columns_is_exact(server, conn,
                                                                          table):
    """The benchmark suite's table, as psycopg's `write_row` sends it: rows of varying size
    (a text column, NULLs), decoded in pieces while they arrive; a duplicate key near the end
    fails the COPY with 23505 and loads nothing."""
    n, dim = 12000, 128
    matrix = np.random.default_rng(5).standard_normal((n, dim)).astype(np.float32)
    tags = ["red", "green", "", "bl\tue\\", "é"]
    rows = [(i, i % 97 - 40, None if i % 7 == 0 else (i - 6000) / 3,
             None if i % 5 == 0 else tags[i % len(tags)], matrix[i]) for i in range(n)]
    for name in (table, f"{table}_bad"):
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, category int, price float8, "
                     f"tag text, embedding vector({dim}))")

    def send(name: str, data: list) -> None:
        from pgvector.psycopg import register_vector

        with psycopg.connect(server.conninfo(), autocommit=True) as sender:
            register_vector(sender)
            write(sender, name, data)

    def write(sender, name: str, data: list) -> None:
        with sender.cursor().copy(f"COPY {name} (id, category, price, tag, embedding) FROM STDIN "
                                "WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int8", "int4", "float8", "text", "vector"])
            for row in data:
                cp.write_row(row)

    send(table, rows)
    got = conn.execute(f"SELECT id, category, price, tag FROM {table} ORDER BY id").fetchall()
    assert got == [row[:4] for row in rows]
    np.testing.assert_array_equal(stored(conn, table).view(np.uint32), matrix.view(np.uint32))
    bad = list(rows)
    bad[11000] = (5,) + bad[11000][1:]
    with pytest.raises(errors.UniqueViolation):
        send(f"{table}_bad", bad)
    assert conn.execute(f"SELECT count(*) FROM {table}_bad").fetchone() == (0,)


def test_a_large_binary_copy_with_null_vectors_in_a_late_piece_is_exact(server, conn, table):
    """NULL vectors in the middle of a COPY logged piece by piece: the pieces joined while
    they arrive keep every value and every NULL where it was."""
    n, dim = 20000, 128
    matrix = np.random.default_rng(8).standard_normal((n, dim)).astype(np.float32)
    null = (np.arange(n) % 13 == 0) & (np.arange(n) > 15000)
    parts = [b"PGCOPY\n\xff\r\n\x00", struct.pack("!ii", 0, 0)]
    for i in range(n):
        parts.append(struct.pack("!hiq", 2, 8, i))
        parts.append(struct.pack("!i", -1) if null[i] else
                     struct.pack("!iHH", 4 + 4 * dim, dim, 0) + matrix[i].astype(">f4").tobytes())
    parts.append(struct.pack("!h", -1))
    conn.execute(f"CREATE TABLE {table} (id bigint, embedding vector({dim}))")
    copy(conn, f"COPY {table} FROM STDIN (FORMAT binary)", b"".join(parts))
    assert f"COPY {table}: 20000 rows" in server.log()
    got = conn.cursor(binary=True).execute(
        f"SELECT id, embedding FROM {table} ORDER BY id").fetchall()
    assert [i for i, raw in got if raw is None] == np.flatnonzero(null).tolist()
    values = np.stack([np.frombuffer(raw, ">f4", offset=4) for _, raw in got if raw is not None])
    np.testing.assert_array_equal(values.view(np.uint32), matrix[~null].view(np.uint32))


def test_a_server_killed_mid_copy_after_pieces_were_logged_shows_nothing(tmp_path, reap):
    """SIGKILL while a COPY is arriving, its first pieces in the log already (no commit, no
    abort record): after a restart the table has none of its rows and takes a COPY again."""
    running, data_dir = server_of_its_own(tmp_path, reap)
    _, data = suite_binary(20000, 128)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, price float8, tag text, "
                     "embedding vector(128))")
        wal = data_dir / "postgres" / "wal"
        before = sum(f.stat().st_size for f in wal.iterdir())
        client = RawClient(running).ready()
        client.send(Query("COPY big FROM STDIN (FORMAT binary)").encode())
        assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
        for at in range(0, len(data) - 100, 1 << 20):
            client.send(CopyData(data[at:min(at + (1 << 20), len(data) - 100)]).encode())
        deadline = time.monotonic() + 30
        while sum(f.stat().st_size for f in wal.iterdir()) < before + (4 << 20):
            assert time.monotonic() < deadline, "no piece reached the log"
            time.sleep(0.05)
        running.stop(signal.SIGKILL)
        client.close()
    again, _ = server_of_its_own(tmp_path, reap, name="s1")
    with psycopg.connect(again.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (0,)
        copy(conn, "COPY big FROM STDIN (FORMAT binary)", suite_binary(3, 128, seed=1)[1])
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (3,)
    assert again.stop() == 0


def suite_binary(n: int, dim: int, seed: int = 6) -> tuple[list[tuple], bytes]:
    """n rows of `(id bigint, price float8, tag text, embedding vector(dim))` in the binary
    format, with NULLs and a text column (rows of varying size), and the rows."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((n, dim)).astype(np.float32)
    rows, parts = [], [b"PGCOPY\n\xff\r\n\x00", struct.pack("!ii", 0, 0)]
    for i in range(n):
        price = None if i % 9 == 0 else i / 4
        tag = None if i % 11 == 0 else "é" * (i % 4) + str(i)
        rows.append((i, price, tag, matrix[i]))
        field = struct.pack("!hiq", 4, 8, i)
        field += struct.pack("!i", -1) if price is None else struct.pack("!id", 8, price)
        if tag is None:
            field += struct.pack("!i", -1)
        else:
            raw = tag.encode()
            field += struct.pack("!i", len(raw)) + raw
        field += struct.pack("!iHH", 4 + 4 * dim, dim, 0) + matrix[i].astype(">f4").tobytes()
        parts.append(field)
    parts.append(struct.pack("!h", -1))
    return rows, b"".join(parts)


def suite_text(rows: list[tuple]) -> bytes:
    """`suite_binary`'s rows in the text format, the vectors' numbers as pgvector's psycopg
    dumper writes them (each float4 as Python's float: 17 digits)."""
    def field(value) -> str:
        return "\\N" if value is None else repr(value) if isinstance(value, float) else str(value)

    return "".join(
        f"{i}\t{field(price)}\t{field(tag)}\t[{','.join(str(float(v)) for v in vector)}]\n"
        for i, price, tag, vector in rows).encode()


def server_of_its_own(tmp_path, reap, *args: str, name: str = "s0"):
    """A server on a data directory of its own (tmp_path / "data"), for a test that kills it
    and starts another (`name`) on the same directory; (the server, the directory)."""
    data_dir = tmp_path / "data"
    running = start_server(tmp_path / name, *args, data_dir=data_dir)
    reap(running)
    return running, data_dir


def test_a_large_copy_logged_while_it_arrives_survives_a_crash(tmp_path, reap):
    """A COPY big enough to be staged for the log piece by piece (several 4 MiB chunks) is
    committed as one record: after SIGKILL and a restart it is all there, exactly."""
    running, data_dir = server_of_its_own(tmp_path, reap, "--log-level", "debug")
    rows, data = suite_binary(20000, 128)
    assert len(data) > 10 << 20
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, price float8, tag text, "
                     "embedding vector(128) NOT NULL, CHECK (id >= 0))")
        copy(conn, "COPY big FROM STDIN (FORMAT binary)", data)
    assert "COPY big: 20000 rows" in running.log()
    assert "(logged while arriving)" in running.log()
    running.stop(signal.SIGKILL)
    again, _ = server_of_its_own(tmp_path, reap, name="s1")
    with psycopg.connect(again.conninfo(), autocommit=True) as conn:
        got = conn.execute("SELECT id, price, tag FROM big ORDER BY id").fetchall()
        assert got == [row[:3] for row in rows]
        np.testing.assert_array_equal(stored(conn, "big").view(np.uint32),
                                      np.stack([r[3] for r in rows]).view(np.uint32))
        # the key index knows the rows the run brought
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO big VALUES (19999, 1, 'x', %s)", (f"[{','.join(['0'] * 128)}]",))
        conn.execute("INSERT INTO big VALUES (20000, 1, 'x', %s)", (f"[{','.join(['0'] * 128)}]",))
    assert again.stop() == 0


def test_copies_one_after_the_other_reuse_memory_and_survive_a_crash_exactly(tmp_path, reap):
    """The second COPY is received and serialized into the memory the first one gave back,
    and the third, text, serializes its pieces (about 1 MB each) one after another into
    shared buffers: every table holds exactly its rows, also after SIGKILL and a restart (the
    log's pieces were written from that memory)."""
    running, _ = server_of_its_own(tmp_path, reap, "--log-level", "debug")
    first, first_data = suite_binary(12000, 128, seed=2)
    second, second_data = suite_binary(12000, 128, seed=3)
    third, _ = suite_binary(4000, 128, seed=4)
    third_data = suite_text(third)
    assert len(third_data) > 2 * (4 << 20)  # three pieces, in one buffer
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        for name, data, options in (("one", first_data, " (FORMAT binary)"),
                                    ("two", second_data, " (FORMAT binary)"),
                                    ("three", third_data, "")):
            conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, price float8, tag text, "
                         "embedding vector(128))")
            copy(conn, f"COPY {name} FROM STDIN{options}", data)
    assert running.log().count("(logged while arriving)") == 3
    running.stop(signal.SIGKILL)
    again, _ = server_of_its_own(tmp_path, reap, name="s1")
    with psycopg.connect(again.conninfo(), autocommit=True) as conn:
        for name, rows in (("one", first), ("two", second), ("three", third)):
            got = conn.execute(f"SELECT id, price, tag FROM {name} ORDER BY id").fetchall()
            assert got == [row[:3] for row in rows]
            np.testing.assert_array_equal(stored(conn, name).view(np.uint32),
                                          np.stack([r[3] for r in rows]).view(np.uint32))
    assert again.stop() == 0


@pytest.mark.parametrize("problem", ["duplicate key", "check", "disconnect"])
def test_a_large_copy_that_fails_after_pieces_were_staged_leaves_nothing(tmp_path, reap,
                                                                        problem):
    """Pieces staged for the log are only written by the commit: a COPY that fails late (a
    key already in the table, a CHECK) or whose client goes away leaves no row, also after
    SIGKILL and a restart."""
    running, data_dir = server_of_its_own(tmp_path, reap)
    rows, data = suite_binary(20000, 128)
    with psycopg.connect(running.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, price float8, tag text, "
                     "embedding vector(128), CHECK (price IS NULL OR price < 6000))")
        conn.execute("INSERT INTO big (id) VALUES (-1), (19990)" if problem == "duplicate key"
                      else "INSERT INTO big (id) VALUES (-1)")
        if problem == "disconnect":
            client = RawClient(running).ready()
            client.send(Query("COPY big FROM STDIN (FORMAT binary)").encode())
            assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
            for at in range(0, len(data) - 100, 1 << 20):
                client.send(CopyData(data[at:min(at + (1 << 20), len(data) - 100)]).encode())
            client.close()  # gone without CopyDone, after every piece but the last
        else:
            bad = data if problem == "duplicate key" else data.replace(
                struct.pack("!id", 8, 19600 / 4), struct.pack("!id", 8, 7000.0))
            error = errors.UniqueViolation if problem == "duplicate key" \
                else errors.CheckViolation
            with pytest.raises(error):
                copy(conn, "COPY big FROM STDIN (FORMAT binary)", bad)
        assert conn.execute("SELECT count(*) FROM big").fetchone()[0] == \
            (2 if problem == "duplicate key" else 1)
    running.stop(signal.SIGKILL)
    again, _ = server_of_its_own(tmp_path, reap, name="s1")
    with psycopg.connect(again.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone()[0] == \
            (2 if problem == "duplicate key" else 1)
        copy(conn, "COPY big FROM STDIN (FORMAT binary)", suite_binary(3, 128, seed=1)[1]) \
            if problem != "duplicate key" else None
    assert again.stop() == 0
