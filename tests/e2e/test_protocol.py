"""Protocol details no driver test pins down, spoken byte by byte: negotiation, Describe,
portals and row limits, skip-until-Sync, EmptyQueryResponse, ParameterStatus, cancel keys."""

from __future__ import annotations

import struct
import time

import pytest

from tests.e2e.conftest import RawClient, startup_packet
from wire.messages import (
    BackendKeyData,
    Bind,
    CancelRequest,
    Close,
    CommandComplete,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    Flush,
    FunctionCall,
    GSSENCRequest,
    NegotiateProtocolVersion,
    NoData,
    ParameterDescription,
    ParameterStatus,
    Parse,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    Sync,
)


@pytest.fixture
def client(server):
    raw = RawClient(server).ready()
    yield raw
    raw.close()


def kinds(messages) -> list[str]:
    return [type(m).__name__ for m in messages]


def test_protocol_3_2_is_answered_with_3_0(server):
    raw = RawClient(server)
    raw.send(startup_packet((3 << 16) | 2, **{"_pq_.future_option": "on"}))
    messages = raw.messages()
    assert messages[0] == NegotiateProtocolVersion(0, ("_pq_.future_option",))
    key = next(m for m in messages if isinstance(m, BackendKeyData))
    assert len(key.secret) == 4  # a protocol 3.0 key
    assert messages[-1] == ReadyForQuery("I")
    raw.close()


def test_startup_parameters_are_reported(server):
    raw = RawClient(server)
    raw.send(startup_packet(application_name="raw-test", client_encoding="'utf-8'",
                            DateStyle="ISO", TimeZone="Etc/UTC", extra_float_digits="2"))
    status = {m.name: m.value for m in raw.messages() if isinstance(m, ParameterStatus)}
    assert status["application_name"] == "raw-test"
    assert status["client_encoding"] == "UTF8"
    assert status["server_version"].startswith("16.")
    for name in ("server_encoding", "DateStyle", "IntervalStyle", "TimeZone",
                 "integer_datetimes", "standard_conforming_strings", "is_superuser",
                 "session_authorization", "default_transaction_read_only", "in_hot_standby",
                 "search_path"):
        assert name in status
    raw.send(Query("SET application_name = 'renamed'").encode())
    assert ParameterStatus("application_name", "renamed") in raw.messages()
    raw.close()


@pytest.mark.parametrize("packet, code", [
    (startup_packet(2 << 16), "0A000"),
    (struct.pack("!ii", 8, 3 << 16) + b"\0", "28000"),  # no user
])
def test_bad_startup(server, packet, code):
    raw = RawClient(server)
    raw.send(packet if packet[:4] != struct.pack("!i", 8) else
             struct.pack("!i", 9) + packet[4:])
    (error,) = [m for m in raw.messages(until=b"E") if isinstance(m, ErrorResponse)]
    assert error.get("C") == code and error.get("S") == "FATAL"
    assert raw.closed()


def test_ssl_and_gss_requests_are_declined_without_a_certificate(server):
    raw = RawClient(server)
    raw.send(SSLRequest().encode())
    assert raw.sock.recv(1) == b"N"
    raw.send(GSSENCRequest().encode())
    assert raw.sock.recv(1) == b"N"
    raw.ready()
    raw.close()


def test_describe_statement_reports_types_and_modifiers(client, table):
    client.send(Query(f"CREATE TABLE {table} (id int8, name varchar(10), v vector(3), "
                      "price numeric(10,2))").encode())
    client.messages()
    client.send(Parse("s1", f"SELECT id, name, v, price, $1::text AS p FROM {table} "
                            "WHERE id = $2").encode()
                + Describe("S", "s1").encode() + Sync().encode())
    messages = client.messages()
    params = next(m for m in messages if isinstance(m, ParameterDescription))
    assert params.oids == (25, 20)
    fields = next(m for m in messages if isinstance(m, RowDescription)).fields
    assert [(f.name, f.type_oid, f.typmod) for f in fields] == [
        ("id", 20, -1), ("name", 1043, 14), ("v", 16385, 3),
        ("price", 1700, ((10 << 16) | 2) + 4), ("p", 25, -1)]
    assert fields[0].table_oid > 0 and [f.attnum for f in fields[:4]] == [1, 2, 3, 4]
    assert fields[4].table_oid == 0 and fields[0].typlen == 8
    client.send(Parse("", f"INSERT INTO {table} (id) VALUES (1)").encode()
                + Describe("S", "").encode() + Sync().encode())
    assert NoData() in client.messages()


def test_row_limit_suspends_and_resumes_a_portal(client):
    client.send(Query("BEGIN").encode())
    client.messages()
    client.send(Parse("", "SELECT * FROM generate_series(1, 5) AS g").encode()
                + Bind("cur", "", (), (), (1,)).encode()
                + Execute("cur", 2).encode() + Sync().encode())
    messages = client.messages()
    rows = [m for m in messages if isinstance(m, DataRow)]
    assert [struct.unpack("!i", r.values[0])[0] for r in rows] == [1, 2]  # binary format
    assert PortalSuspended() in messages and messages[-1] == ReadyForQuery("T")
    # A named portal survives Sync inside a transaction block.
    client.send(Execute("cur", 2).encode() + Execute("cur", 0).encode() + Sync().encode())
    messages = client.messages()
    assert kinds(messages) == ["DataRow", "DataRow", "PortalSuspended", "DataRow",
                               "CommandComplete", "ReadyForQuery"]
    assert messages[-2] == CommandComplete("SELECT 1")
    client.send(Query("COMMIT").encode())
    client.messages()
    # Outside a transaction block the portal is gone after Sync.
    client.send(Execute("cur", 0).encode() + Sync().encode())
    (error,) = [m for m in client.messages() if isinstance(m, ErrorResponse)]
    assert error.get("C") == "34000"


def test_error_skips_until_sync(client):
    client.send(Parse("", "SELECT nope FROM nowhere").encode() + Bind().encode()
                + Execute().encode() + Query("SELECT 1").encode() + Sync().encode())
    messages = client.messages()
    assert kinds(messages) == ["ErrorResponse", "ReadyForQuery"]
    assert messages[0].get("C") == "42P01"
    client.send(Query("SELECT 1").encode())
    assert DataRow((b"1",)) in client.messages()


def test_error_is_sent_at_once_before_sync(client):
    client.send(Parse("", "SELEC 1").encode() + Flush().encode())
    (error,) = client.messages(until=b"E")
    assert error.get("C") == "42601"
    client.send(Sync().encode())
    assert client.messages() == [ReadyForQuery("I")]


def test_empty_queries(client):
    client.send(Query("").encode())
    assert client.messages() == [EmptyQueryResponse(), ReadyForQuery("I")]
    client.send(Query(" ; -- nothing\n").encode())
    assert client.messages() == [EmptyQueryResponse(), ReadyForQuery("I")]
    client.send(Parse("", "").encode() + Bind().encode() + Execute().encode()
                + Sync().encode())
    assert kinds(client.messages()) == ["ParseComplete", "BindComplete", "EmptyQueryResponse",
                                        "ReadyForQuery"]


def test_statement_names(client):
    client.send(Parse("a", "SELECT 1").encode() + Parse("a", "SELECT 2").encode()
                + Sync().encode())
    messages = client.messages()
    assert kinds(messages) == ["ParseComplete", "ErrorResponse", "ReadyForQuery"]
    assert messages[1].get("C") == "42P05"
    client.send(Close("S", "a").encode() + Parse("a", "SELECT 3").encode() + Bind("", "a")
                .encode() + Execute().encode() + Sync().encode())
    assert DataRow((b"3",)) in client.messages()
    client.send(Bind("", "missing").encode() + Sync().encode())
    assert client.messages()[0].get("C") == "26000"
    client.send(Parse("", "SELECT $1::int4").encode() + Bind("", "", (), ()).encode()
                + Sync().encode())
    error = [m for m in client.messages() if isinstance(m, ErrorResponse)][0]
    assert error.get("C") == "08P01" and "supplies 0 parameters" in error.get("M")
    client.send(Query("DEALLOCATE a").encode())
    assert CommandComplete("DEALLOCATE") in client.messages()


def test_protocol_statements_share_deallocate_and_discard_with_prepare(client):
    client.send(Parse("a", "SELECT 1").encode() + Sync().encode())
    client.messages()
    client.send(Parse("", "DEALLOCATE a").encode() + Bind().encode() + Execute().encode()
                + Sync().encode())  # the extended protocol reaches them too
    assert CommandComplete("DEALLOCATE") in client.messages()
    client.send(Bind("", "a").encode() + Sync().encode())
    assert client.messages()[0].get("C") == "26000"
    client.send(Parse("b", "SELECT 2").encode() + Sync().encode())
    client.messages()
    client.send(Query("BEGIN; DISCARD ALL").encode())
    messages = client.messages()
    assert next(m for m in messages if isinstance(m, ErrorResponse)).get("C") == "25001"
    client.send(Query("ROLLBACK").encode())
    client.messages()
    client.send(Bind("", "b").encode() + Execute().encode() + Sync().encode())
    assert DataRow((b"2",)) in client.messages()  # a refused DISCARD ALL dropped nothing
    client.send(Query("DISCARD ALL").encode())
    assert CommandComplete("DISCARD ALL") in client.messages()
    client.send(Bind("", "b").encode() + Sync().encode())
    assert client.messages()[0].get("C") == "26000"


def test_parse_of_several_statements_fails_the_block(client):
    client.send(Query("BEGIN").encode())
    client.messages()
    client.send(Parse("", "SELECT 1; SELECT 2").encode() + Sync().encode())
    messages = client.messages()
    error = next(m for m in messages if isinstance(m, ErrorResponse))
    assert (error.get("C"), error.get("M")) == (
        "42601", "cannot insert multiple commands into a prepared statement")
    assert messages[-1] == ReadyForQuery("E")  # as PostgreSQL's Parse
    client.send(Query("ROLLBACK").encode())
    assert client.messages()[-1] == ReadyForQuery("I")


def test_several_statements_and_a_late_error(client):
    client.send(Query("SELECT 1; SELECT 2; SELECT nope_col FROM (SELECT 1 AS a) t; SELECT 4")
                .encode())
    messages = client.messages()
    assert [m.values for m in messages if isinstance(m, DataRow)] == [(b"1",), (b"2",)]
    error = next(m for m in messages if isinstance(m, ErrorResponse))
    assert error.get("C") == "42703"
    assert messages[-1] == ReadyForQuery("I")


def test_function_call_is_refused(client):
    client.send(FunctionCall(b"\0\0\0\1").encode())
    messages = client.messages()
    assert messages[0].get("C") == "0A000" and messages[-1] == ReadyForQuery("I")


def test_cancel_with_a_wrong_key_is_ignored(server, client):
    raw = RawClient(server)
    raw.send(CancelRequest(1, b"\0\0\0\0").encode())
    assert raw.closed()
    client.send(Query("SELECT 5").encode())
    assert DataRow((b"5",)) in client.messages()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_prepared_round_trips_received_whole_answer_as_message_by_message(start, workers):
    """Bind, [Describe], Execute, Sync arriving together (as drivers send a prepared
    statement) are run in one step, in one process and in a worker: the answers, errors
    (each skipping to the Sync) and row limits are those of the messages one by one, also
    when a round trip arrives in pieces or several arrive in one packet."""
    server = start("--workers", workers)
    client = RawClient(server).ready()
    try:
        client.send(Parse("s", "SELECT 10 / $1::int", ()).encode()
                    + Parse("g", "SELECT * FROM generate_series(1, 3)", ()).encode()
                    + Sync().encode())
        assert kinds(client.messages()) == ["ParseComplete", "ParseComplete", "ReadyForQuery"]

        def run(name: str, params: tuple, describe: bool = True, rows: int = 0) -> bytes:
            return (Bind("", name, (), params, ()).encode()
                    + (Describe("P", "").encode() if describe else b"")
                    + Execute("", rows).encode() + Sync().encode())

        def answer() -> list:
            return client.messages()

        client.send(run("s", (b"2",)))
        assert kinds(answer()) == ["BindComplete", "RowDescription", "DataRow",
                                   "CommandComplete", "ReadyForQuery"]
        client.send(run("s", (b"5",)) + run("s", (b"0",)) + run("s", (b"1",), describe=False))
        first, failed, last = answer(), answer(), answer()
        assert first[2] == DataRow((b"2",)) and first[-1] == ReadyForQuery("I")
        assert kinds(failed) == ["BindComplete", "RowDescription", "ErrorResponse",
                                 "ReadyForQuery"]
        assert failed[2].get("C") == "22012"
        assert kinds(last) == ["BindComplete", "DataRow", "CommandComplete", "ReadyForQuery"]
        assert last[1] == DataRow((b"10",))
        client.send(run("s", (b"x",)))  # a bad parameter: Bind fails, the rest is skipped
        failed = answer()
        assert kinds(failed) == ["ErrorResponse", "ReadyForQuery"]
        assert failed[0].get("C") == "22P02"
        client.send(run("missing", ()))
        failed = answer()
        assert kinds(failed) == ["ErrorResponse", "ReadyForQuery"]
        assert failed[0].get("C") == "26000"
        client.send(run("g", (), rows=2))
        assert kinds(answer()) == ["BindComplete", "RowDescription", "DataRow", "DataRow",
                                   "PortalSuspended", "ReadyForQuery"]
        whole = run("s", (b"3",))
        for cut in (1, 9, len(whole) - 1):
            client.send(whole[:cut])
            time.sleep(0.05)
            client.send(whole[cut:])
            assert answer()[2] == DataRow((b"3",))
    finally:
        client.close()


def test_a_repeated_round_trip_in_one_process_answers_as_its_messages(start):
    """In one process, a prepared statement's round trip that repeats the last one but for
    its values is recognised whole in the receive buffer: it still sees its statement as it
    is now (closed: 26000; parsed again under the name: the new one), the transaction
    block's status and its failure (25P02), and a Bind asking other result formats is read
    message by message."""
    server = start("--workers", "0")
    client = RawClient(server).ready()

    def run(name: str, params: tuple, formats: tuple = ()) -> bytes:
        return (Bind("", name, (), params, formats).encode() + Describe("P", "").encode()
                + Execute("", 0).encode() + Sync().encode())

    def rows(answer: list) -> list:
        return [m.values for m in answer if isinstance(m, DataRow)]

    try:
        client.send(Parse("s", "SELECT 24 / $1::int", ()).encode() + Sync().encode())
        client.messages()
        for value in (1, 1, 2, 3):  # (the second run in a row is the one recognised next)
            client.send(run("s", (str(value).encode(),)))
            answer = client.messages()
            assert rows(answer) == [(str(24 // value).encode(),)]
            assert answer[-1] == ReadyForQuery("I")
        client.send(Query("BEGIN").encode())
        client.messages()
        client.send(run("s", (b"4",)))
        answer = client.messages()
        assert rows(answer) == [(b"6",)] and answer[-1] == ReadyForQuery("T")
        client.send(run("s", (b"0",)))
        answer = client.messages()
        assert kinds(answer) == ["BindComplete", "RowDescription", "ErrorResponse",
                                 "ReadyForQuery"]
        assert answer[2].get("C") == "22012" and answer[-1] == ReadyForQuery("E")
        client.send(run("s", (b"5",)))
        answer = client.messages()
        errors = [m.get("C") for m in answer if isinstance(m, ErrorResponse)]
        assert errors == ["25P02"] and answer[-1] == ReadyForQuery("E")
        client.send(Query("ROLLBACK").encode())
        client.messages()
        client.send(run("s", (b"6",), formats=(1,)))  # binary: another Bind, read as such
        assert rows(client.messages()) == [(struct.pack("!i", 4),)]
        client.send(run("s", (b"8",)))
        assert rows(client.messages()) == [(b"3",)]
        client.send(Close("S", "s").encode() + Sync().encode())
        client.messages()
        client.send(run("s", (b"8",)))
        answer = client.messages()
        assert kinds(answer) == ["ErrorResponse", "ReadyForQuery"]
        assert answer[0].get("C") == "26000"
        client.send(Parse("s", "SELECT $1::int + 100", ()).encode() + Sync().encode())
        client.messages()
        for value in (1, 2):
            client.send(run("s", (str(value).encode(),)))
            assert rows(client.messages()) == [(str(value + 100).encode(),)]
    finally:
        client.close()


def test_prepared_statements_taking_turns_are_each_answered_as_their_messages(start):
    """Round trips of several prepared statements taking turns (as psycopg's, which prepares a
    statement once per type of its parameters) are each recognised by their statement's
    name: every answer is its own statement's, also after one of them is closed or parsed
    again under its name while the others keep running."""
    server = start("--workers", "0")
    client = RawClient(server).ready()

    def run(name: str, value: int) -> bytes:
        return (Bind("", name, (), (str(value).encode(),), ()).encode()
                + Describe("P", "").encode() + Execute("", 0).encode() + Sync().encode())

    def value() -> bytes:
        answer = client.messages()
        assert answer[-1] == ReadyForQuery("I")
        return [m.values for m in answer if isinstance(m, DataRow)][0][0]

    try:
        client.send(Parse("a", "SELECT $1::int + 1000", ()).encode()
                    + Parse("b", "SELECT $1::int * 2", ()).encode() + Sync().encode())
        client.messages()
        for i in range(4):
            client.send(run("a", i))
            assert value() == str(i + 1000).encode()
            client.send(run("b", i))
            assert value() == str(i * 2).encode()
        client.send(run("a", 1) + run("b", 2) + run("a", 3))  # several in one packet
        assert [value(), value(), value()] == [b"1001", b"4", b"1003"]
        client.send(Close("S", "a").encode() + Sync().encode())
        client.messages()
        client.send(run("a", 5))
        answer = client.messages()
        assert kinds(answer) == ["ErrorResponse", "ReadyForQuery"]
        assert answer[0].get("C") == "26000"
        client.send(run("b", 5))
        assert value() == b"10"
        client.send(Parse("a", "SELECT $1::int - 1", ()).encode() + Sync().encode())
        client.messages()
        for i in (7, 8):
            client.send(run("a", i))
            assert value() == str(i - 1).encode()
            client.send(run("b", i))
            assert value() == str(i * 2).encode()
    finally:
        client.close()


def test_a_bind_error_fails_the_block_and_a_failed_block_refuses_bind(client):
    """As PostgreSQL: any error fails an open block, the protocol's own included (a parameter
    that does not decode), and in a failed block Bind itself answers 25P02, except for the
    statements that end the block."""
    client.send(Query("BEGIN").encode() + Parse("p", "SELECT $1::int4").encode()
                + Parse("r", "ROLLBACK").encode() + Sync().encode())
    client.messages()
    client.messages()
    client.send(Bind("", "p", (), (b"x",)).encode() + Execute().encode() + Sync().encode())
    messages = client.messages()
    assert [m.get("C") for m in messages if isinstance(m, ErrorResponse)] == ["22P02"]
    assert messages[-1] == ReadyForQuery("E")
    client.send(Bind("", "p", (), (b"1",)).encode() + Execute().encode() + Sync().encode())
    messages = client.messages()
    assert kinds(messages) == ["ErrorResponse", "ReadyForQuery"]  # no BindComplete
    assert messages[0].get("C") == "25P02" and messages[-1] == ReadyForQuery("E")
    client.send(Bind("", "r").encode() + Execute().encode() + Sync().encode())
    assert kinds(client.messages()) == ["BindComplete", "CommandComplete", "ReadyForQuery"]
    client.send(Bind("", "p", (), (b"7",)).encode() + Execute().encode() + Sync().encode())
    messages = client.messages()
    assert DataRow((b"7",)) in messages and messages[-1] == ReadyForQuery("I")


def test_a_bind_error_outside_a_block_leaves_the_connection_idle(client):
    client.send(Parse("p", "SELECT $1::int4").encode()
                + Bind("", "p", (), (b"x",)).encode() + Execute().encode() + Sync().encode())
    messages = client.messages()
    assert [m.get("C") for m in messages if isinstance(m, ErrorResponse)] == ["22P02"]
    assert messages[-1] == ReadyForQuery("I")
    client.send(Bind("", "p", (), (b"5",)).encode() + Execute().encode() + Sync().encode())
    assert DataRow((b"5",)) in client.messages()


@pytest.mark.parametrize("portal, formats, value, code, context", [
    ("", (), b"x", "22P02", "unnamed portal parameter $2 = '...'"),
    ("", (0, 1), b"\0\0\0\0\1", "22P03", "unnamed portal parameter $2"),
    ("c", (), b"x", "22P02", "portal \"c\" parameter $2 = '...'"),
    ("c", (1,), b"\0\0\0\0\1", "22P03", 'portal "c" parameter $2'),
    ("", (), b"\xff", "22021", "unnamed portal parameter $2"),
])
def test_a_parameter_that_does_not_decode_names_its_portal_and_number(
        client, portal, formats, value, code, context):
    """As PostgreSQL: CONTEXT says which portal's which parameter failed, and for a text
    parameter that its value is withheld (log_parameter_max_length_on_error is 0)."""
    first = b"\0\0\0\1" if formats == (1,) else b"1"
    client.send(Parse("two", "SELECT $1::int4, $2::int4").encode()
                + Bind(portal, "two", formats, (first, value)).encode() + Sync().encode())
    errors = [m for m in client.messages() if isinstance(m, ErrorResponse)]
    assert [(m.get("C"), m.get("W")) for m in errors] == [(code, context)]
