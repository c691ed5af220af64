"""Malformed, truncated and oversized input at every protocol phase: the offending connection
gets an 08P01 ErrorResponse (or is just closed), the server keeps serving everybody else."""

from __future__ import annotations

import random
import struct

import psycopg
import pytest

from tests.e2e.conftest import RawClient
from wire.messages import Bind, ErrorResponse, Execute, Parse, Query, Sync

SEED = 20240601
CASES_PER_PHASE = 30


def errors_in(messages) -> list[ErrorResponse]:
    return [m for m in messages if isinstance(m, ErrorResponse)]


def assert_serving(server, witness) -> None:
    assert server.process.poll() is None, server.log()
    assert witness.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(server.conninfo(), autocommit=True) as fresh:
        assert fresh.execute("SELECT 'still here'").fetchone() == ("still here",)


@pytest.fixture
def witness(server):
    """A well-behaved connection opened before the bad ones, checked after them."""
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        yield conn


def test_oversized_message_is_refused(server, witness):
    client = RawClient(server).ready()
    client.send(b"Q" + struct.pack("!i", 2**31 - 1) + b"SELECT")
    (error,) = errors_in(client.messages(until=b"E"))
    assert error.get("C") == "08P01" and error.get("S") == "FATAL"
    assert client.closed()
    assert_serving(server, witness)


@pytest.mark.parametrize("workers", ["2", "0"])
def test_the_fatal_error_outruns_unread_input(start, workers):
    """A client still sending when refused reads the FATAL error, then the end of the stream:
    the server drains what it will not read before closing, as closing with unread input
    resets the connection and the reset can overtake the error. With workers, the worker
    relays the primary's last words before it closes."""
    server = start("--workers", workers)
    for _ in range(50):
        client = RawClient(server).ready()
        client.send(b"Q" + struct.pack("!i", 2**31 - 1) + b"x" * 100_000)
        (error,) = errors_in(client.messages(until=b"E"))
        assert error.get("C") == "08P01" and error.get("S") == "FATAL"
        assert client.closed()  # the end of the stream, not a reset
        client.close()
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)


def test_oversized_startup_packet_is_refused(server, witness):
    client = RawClient(server)
    client.send(struct.pack("!ii", 20_000, 3 << 16) + b"user\0x\0" * 100)
    (error,) = errors_in(client.messages(until=b"E"))
    assert error.get("C") == "08P01"
    assert error.get("M") == "invalid length of startup packet"
    assert client.closed()
    assert_serving(server, witness)


def test_unknown_message_type(server, witness):
    client = RawClient(server).ready()
    client.send(b"\x01" + struct.pack("!i", 4))
    (error,) = errors_in(client.messages(until=b"E"))
    assert error.get("C") == "08P01"
    assert client.closed()
    assert_serving(server, witness)


def test_truncated_message_body(server, witness):
    client = RawClient(server).ready()
    client.send(b"P" + struct.pack("!i", 10) + b"\0SEL\0\0")  # Parse cut short
    (error,) = errors_in(client.messages(until=b"E"))
    assert error.get("C") == "08P01"
    assert client.closed()
    assert_serving(server, witness)


def test_statement_errors_keep_the_connection(server, witness):
    client = RawClient(server).ready()
    client.send(Query("SELECT * FROM nope_never").encode())
    messages = client.messages()
    assert errors_in(messages)[0].get("C") == "42P01"
    assert messages[-1].status == "I"
    client.send(Parse("", "SELECT $1::int4 + 1").encode() + Bind("", "", (), (b"x",)).encode()
                + Execute().encode() + Sync().encode())
    messages = client.messages()
    assert errors_in(messages)[0].get("C") == "22P02"
    client.send(Query("SELECT 41 + 1").encode())
    messages = client.messages()
    assert any(getattr(m, "values", None) == (b"42",) for m in messages)
    client.close()
    assert_serving(server, witness)


def _random_message(rng: random.Random) -> bytes:
    kind = rng.choice(b"QPBDECHSdcfpFX\x00\xff")
    body = rng.randbytes(rng.randrange(0, 64))
    if rng.random() < 0.2:  # a lying length
        return bytes([kind]) + struct.pack("!i", rng.randrange(-10, 200)) + body
    return bytes([kind]) + struct.pack("!i", len(body) + 4) + body


@pytest.mark.parametrize("phase", ["startup", "ready", "extended", "copy-in"])
def test_random_bytes_at_every_phase(server, witness, table, phase):
    rng = random.Random(f"{SEED}-{phase}")
    completed = 0
    if phase == "copy-in":
        witness.execute(f"CREATE TABLE {table} (id int4, v vector(2))")
    for _ in range(CASES_PER_PHASE):
        client = RawClient(server)
        try:
            if phase == "startup":
                junk = rng.randbytes(rng.randrange(0, 40))
                if rng.random() < 0.5:
                    junk = struct.pack("!i", len(junk) + 4) + junk
                client.send(junk)
            else:
                client.ready()
                if phase == "extended":
                    client.send(Parse("s", "SELECT $1::text").encode())
                elif phase == "copy-in":
                    client.send(Query(f"COPY {table} FROM STDIN").encode())
                    kinds = [m.TYPE for m in client.messages(until=b"G")]
                    assert b"G" in kinds
                    client.send(b"d" + struct.pack("!i", 12) + b"1\t[1,2]\n")
                for _ in range(rng.randrange(1, 4)):
                    client.send(_random_message(rng))
                if rng.random() < 0.5:
                    client.send(Sync().encode())
            answers = client.messages(until=None, timeout=0.3)
            completed += sum(getattr(m, "tag", None) == "COPY 1" for m in answers)
        finally:
            client.close()
    assert_serving(server, witness)
    if phase == "copy-in":
        # only a COPY that was properly finished (CopyDone) wrote its row
        assert witness.execute(f"SELECT count(*) FROM {table}").fetchone() == (completed,)
