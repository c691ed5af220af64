"""COPY FROM STDIN through a worker: the rows arrive whole, CopyFail and a bad row leave
nothing, messages pipelined behind CopyDone are answered in order, stray CopyData is ignored,
shutdown mid-COPY keeps what was committed, and the connection's next reads are still answered
by its worker."""

from __future__ import annotations

import struct
import time

import numpy as np
import psycopg
import pytest

from tests.e2e.conftest import RawClient, RunningServer, serve_while_used, start_server
from wire.messages import (
    Bind,
    CopyData,
    CopyDone,
    CopyFail,
    Execute,
    Flush,
    Parse,
    Query,
    Sync,
)

WHERE_RUN = "SELECT current_setting('sqlvec.worker', true)"
DIM = 4


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    yield from serve_while_used(tmp_path_factory, "sqlvec-copy-worker", "--workers", "2")


def connect(server: RunningServer) -> psycopg.Connection:
    return psycopg.connect(server.conninfo(), autocommit=True)


def rows(n: int, first: int = 0) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(first)
    return [(first + i, rng.standard_normal(DIM).astype(np.float32)) for i in range(n)]


def binary_copy(data: list[tuple[int, np.ndarray]]) -> bytes:
    out = [b"PGCOPY\n\xff\r\n\x00", struct.pack("!ii", 0, 0)]
    for i, v in data:
        out.append(struct.pack("!hiqiHH", 2, 8, i, 4 + 4 * DIM, DIM, 0) + v.astype(">f4").tobytes())
    out.append(struct.pack("!h", -1))
    return b"".join(out)


def test_write_row_copy_then_reads_in_the_worker(pool_server, table):
    """psycopg's `write_row`: every row arrives, and the same connection's next read is
    answered by its worker, in and out of a transaction block."""
    data = rows(3000)
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, v vector({DIM}))")
        with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy:
            for i, v in data:
                copy.write_row((i, "[" + ",".join(map(str, v.tolist())) + "]"))
        assert conn.execute(WHERE_RUN).fetchone()[0] is not None
        assert conn.execute(f"SELECT count(*), sum(id) FROM {table}").fetchone() \
            == (3000, sum(range(3000)))
        with conn.transaction():
            with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
                copy.write(binary_copy(rows(500, 3000)))
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3500,)
        assert conn.execute(WHERE_RUN).fetchone()[0] is not None
        got = conn.execute(f"SELECT v FROM {table} WHERE id = 3499").fetchone()[0]
        assert np.array_equal(np.array(got.strip("[]").split(","), np.float32),
                              rows(500, 3000)[-1][1])


def test_copy_fail_and_a_bad_row_leave_nothing_and_the_connection_usable(pool_server, table):
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, v vector({DIM}))")
        client = RawClient(pool_server).ready()
        client.send(Query(f"COPY {table} FROM STDIN (FORMAT binary)").encode())
        assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
        data = binary_copy(rows(2000))
        for at in range(0, len(data), 4096):
            client.send(CopyData(data[at:at + 4096]).encode())
        client.send(CopyFail("changed my mind").encode())
        answer = client.messages(until=b"Z")
        assert [dict(m.fields)["C"] for m in answer if m.TYPE == b"E"] == ["57014"]
        client.send(Query(f"SELECT count(*) FROM {table}").encode())
        assert [m.values for m in client.messages(until=b"Z") if m.TYPE == b"D"] == [(b"0",)]
        client.close()
        bad = bytearray(binary_copy(rows(2000)))
        at = 19 + 1200 * (2 + 4 + 8 + 4 + 4 + 4 * DIM) + 2 + 12 + 4  # row 1201's dim word
        bad[at:at + 2] = struct.pack("!H", DIM + 1)
        with pytest.raises(psycopg.Error) as info:
            with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
                copy.write(bytes(bad))
        assert info.value.sqlstate in ("22P03", "22000")
        assert info.value.diag.context.startswith(f"COPY {table}, line 1201")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        assert conn.execute(WHERE_RUN).fetchone()[0] is not None


def test_messages_pipelined_behind_copy_done_are_answered_in_order(pool_server, table):
    """Extended protocol: CopyDone, Sync and a Query sent in one piece right behind the data
    are answered in order."""
    with connect(pool_server) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, v vector({DIM}))")
    client = RawClient(pool_server).ready()
    client.send(Parse("", f"COPY {table} FROM STDIN (FORMAT binary)").encode()
                + Bind().encode() + Execute().encode() + Flush().encode())
    assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
    data = binary_copy(rows(100))
    client.send(b"".join(CopyData(data[at:at + 512]).encode() for at in range(0, len(data), 512))
                + CopyDone().encode() + Sync().encode()
                + Query(f"SELECT count(*) FROM {table}").encode())
    first = client.messages(until=b"Z")
    assert "COPY 100" in [getattr(m, "tag", None) for m in first]
    second = client.messages(until=b"Z")
    assert [m.values for m in second if m.TYPE == b"D"] == [(b"100",)]
    client.close()


def test_copy_data_outside_a_copy_is_ignored(pool_server, table):
    """CopyData with no COPY running is ignored (as PostgreSQL does) without losing the
    connection."""
    client = RawClient(pool_server).ready()
    client.send(CopyData(b"stray").encode() + CopyData(b"more").encode()
                + Query("SELECT 7").encode())
    assert [m.values for m in client.messages(until=b"Z") if m.TYPE == b"D"] == [(b"7",)]
    client.close()


def test_shutdown_during_a_copy_ends_it_and_keeps_what_was_committed(tmp_path, reap):
    """A COPY waiting for data is ended by shutdown like any other read: the server exits
    cleanly, the COPY loads nothing, the committed rows stay."""
    server = start_server(tmp_path, "--workers", "2")
    reap(server)
    with connect(server) as conn:
        conn.execute(f"CREATE TABLE t (id bigint, v vector({DIM}))")
        with conn.cursor().copy("COPY t FROM STDIN (FORMAT binary)") as copy:
            copy.write(binary_copy(rows(300)))
    client = RawClient(server).ready()
    client.send(Query("COPY t FROM STDIN (FORMAT binary)").encode())
    assert b"G" in [m.TYPE for m in client.messages(until=b"G")]
    client.send(CopyData(binary_copy(rows(200, 300))[:-2]).encode())  # no trailer, no CopyDone
    time.sleep(0.3)
    assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log(), server.log()
    assert client.closed()
    client.close()
    again = start_server(tmp_path, "--workers", "2", data_dir=server.data_dir)
    reap(again)
    with connect(again) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (300,)
    assert again.stop() == 0
