"""A prepared one-row statement over no table (`SELECT $1::int`) computed in Python
(sqlvec/execution/scalar_row.py) and answered by its compiled round trip (wire/compiled.py
`CompiledRead`), against the general path: a server `Connection` over a socketpair driven
with the bytes a driver sends (Bind, Describe, Execute, Sync). For each statement and each
parameter value — in range, at its type's bounds, NULL, out of range, not readable — and
results in text and in binary, the compiled answer must be the general path's bytes, an
error with its SQLSTATE included; and the engine's one-row table made from the Python row
(what the general path sends) must be the operator tree's, or its error."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from tests.wire.test_compiled import Client, general_path
from wire import pgtypes
from wire.messages import Parse, Sync
from wire.pgtypes import decode_param

INT2, INT4, INT8, TEXT, BOOL, FLOAT8, UNKNOWN = 21, 23, 20, 25, 16, 701, 0

# (SQL, parameter type OIDs as psycopg gives them, parameter formats, values to bind, whether
# a valid row of them is computed in Python).
CASES = [
    ("SELECT $1::int", (INT2,), (), [b"1", b"-32768", b"32767", None], True),
    ("SELECT $1::int", (INT8,), (), [b"2147483647", b"-2147483648", b"2147483648"], True),
    ("SELECT $1::int", (), (1,), [struct.pack("!i", -5), struct.pack("!i", 1 << 30)], True),
    ("SELECT $1::int2", (INT4,), (), [b"-32768", b"70000"], True),
    ("SELECT $1::int + 1", (INT4,), (), [b"41", b"2147483646", b"2147483647", None], True),
    ("SELECT $1::int8 * $2, $1 - 3", (INT8, INT8), (),
     [(b"3", b"-7"), (b"4611686018427387904", b"2"), (b"-9223372036854775805", b"1")], True),
    ("SELECT -$1::int, $1 + 1 + 2 + 3", (INT4,), (), [b"-2147483647", b"-2147483648"], True),
    ("SELECT $1::int + $2::int8, $2::int", (INT2, INT8), (),
     [(b"1", b"2"), (b"-1", b"3000000000"), (None, b"5")], True),
    ("SELECT $1::text", (UNKNOWN,), (), [b"h\xc3\xa9llo", b"", None], True),
    ("SELECT $1", (TEXT,), (), [b"abc", b"12"], True),
    ("SELECT $1, 'x', NULL, 2::int8, true", (INT4,), (), [b"7"], True),
    ("SELECT $1::text::int", (TEXT,), (), [b" 12 ", b"x", b"99999999999"], True),
    ("SELECT $1::int::text, $2::bool::text, $2", (INT4, BOOL), (),
     [(b"-12", b"t"), (b"0", b"false")], True),
    ("SELECT $1::int::bool", (INT4,), (), [b"0", b"-3"], True),
    ("SELECT $1::float8::int", (FLOAT8,), (), [b"2.5", b"3.5", b"-0.5", b"1e20", b"NaN"], True),
    ("SELECT $1::float8 * 2, $1::float8 + 1", (FLOAT8,), (),
     [b"1.25", b"1e308", b"-0", b"Infinity"], True),
    ("SELECT $1::int::float8", (INT8,), (), [b"9007199254740993", b"123"], True),
    ("SELECT $1::float8::text", (FLOAT8,), (), [b"0.1", b"1e100"], True),
    ("SELECT $1::bool", (BOOL,), (1,), [b"\x01", b"\x00", None], True),
    ("SELECT $1::float8", (FLOAT8,), (),
     [b"0.1", b"123456.789", b"1e15", b"1e14", b"1e-5", b"-0.0001", b"100", b"NaN",
      b"-Infinity", b"1.7976931348623157e308", b"5e-324"], True),
    ("SELECT $1::int + 1.5", (INT4,), (), [b"1"], False),  # numeric
    ("SELECT $1::varchar(2)", (TEXT,), (), [b"abc"], False),
    ("SELECT $1::vector", (UNKNOWN,), (), [b"[1,2,3]", b"[1,2"], False),
    ("SELECT $1 / 2, $1 % 2", (INT4,), (), [b"7"], False),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    opened = Database.open(str(tmp_path_factory.mktemp("rows") / "data"))
    yield opened
    opened.close()


def prepared_pair(db: Database, sql: str, oids: tuple) -> tuple[Client, Client]:
    clients = Client(db), Client(db)
    for c in clients:
        for name, text, types in (("s", sql, oids), ("one", "SELECT 1", ())):
            assert c.send(Parse(name, text, types).encode() + Sync().encode())[:1] == b"1"
    return clients


@pytest.mark.parametrize("sql, oids, formats, values, computed", CASES,
                         ids=[case[0] for case in CASES])
def test_compiled_rows_are_the_general_paths_bytes(db, sql, oids, formats, values, computed):
    fast, general = prepared_pair(db, sql, oids)
    bound = [v if isinstance(v, tuple) else (v,) for v in values]
    for results in ((), (1,)):
        fast.bound("s", bound[0], formats, results)  # (compiled by this first run)
        for params in bound:
            expected = general_path(general, "s", params, formats, results)
            assert fast.bound("s", params, formats, results) == expected
    assert general.runs() == 0 and (fast.runs() > 0) is computed
    scalar = db.connect()
    try:
        statement = scalar.prepare(sql, list(oids))
        assert (statement.scalar is not None) is computed
    finally:
        scalar.close()


def test_rows_in_python_answer_values_and_leave_errors_to_the_tree(db):
    """The Python row is taken for valid values (the compiled round trips ran, the tree did
    not); a value out of range gets the tree's error, 22003 with PostgreSQL's words."""
    fast, general = prepared_pair(db, "SELECT $1::int + 1", (INT8,))
    answers = [fast.bound("s", (str(v).encode(),), ()) for v in (1, 2, 3)]
    assert [b"\x00\x00\x00\x01%d" % v in a for v, a in zip((2, 3, 4), answers)] == [True] * 3
    assert fast.runs() == 2
    overflow = fast.bound("s", (b"2147483647",), ())
    assert b"C22003\x00" in overflow and b"Minteger out of range\x00" in overflow
    assert overflow == general_path(general, "s", (b"2147483647",), ())
    session = db.connect()
    try:
        statement = session.prepare("SELECT $1::int + 1", [INT8])
        assert statement.scalar.values([5]) == [[6]]
        assert statement.scalar.values([2147483647]) is None  # (the tree reports it)
        assert statement.scalar.values(["5"]) is None  # not the type's Python value
        assert statement.scalar.values([5, 6]) is None
        assert session.prepare("SELECT 1").scalar is None  # constant: its table is kept
    finally:
        session.close()


def outcome(session, prepared, params: list) -> object:
    """A run's table (schema, and values as written: NaN, -0.0), or its error's SQLSTATE and
    words."""
    try:
        table = session.run(prepared, params).table
    except SqlVecError as error:
        return error.sqlstate, error.message
    return table.schema, repr(table.to_pylist())


@pytest.mark.parametrize("sql, oids, formats, values, computed", CASES,
                         ids=[case[0] for case in CASES])
def test_rows_computed_in_python_are_the_operator_trees(db, sql, oids, formats, values,
                                                        computed):
    """`Session.run` makes the one-row table from the Python row too (the general path of a
    statement parsed anew each time): the same table, or error, as the operator tree's."""
    session = db.connect()
    try:
        prepared = session.prepare(sql, list(oids))
        tree = dataclasses.replace(prepared, scalar=None)
        types = prepared.param_types
        for value in values:
            bound = value if isinstance(value, tuple) else (value,)
            try:
                params = [decode_param(v, t, pgtypes.param_format(formats, i))
                          for i, (v, t) in enumerate(zip(bound, types))]
            except SqlVecError:
                continue  # (refused at Bind, before either runs)
            assert outcome(session, prepared, params) == outcome(session, tree, params)
    finally:
        session.close()


def test_float_text_follows_extra_float_digits(db):
    """float8 cells in text are written as extra_float_digits says: a compiled round trip
    made under one value is not taken under another."""
    fast, general = prepared_pair(db, "SELECT $1::float8, $1::float8 / 3", (FLOAT8,))
    values = [(b"0.1",), (b"2.5",), (b"1e20",)]
    for digits in ("1", "0", "-3", "3", "1"):
        for c in (fast, general):
            assert b"ZI" not in c.query(f"SET extra_float_digits = {digits}")[:1]
        for params in values:
            expected = general_path(general, "s", params, ())
            assert fast.bound("s", params, ()) == expected
    assert fast.runs() == 0  # (a division: the general path's, whose cells are the reference)
    fast, general = prepared_pair(db, "SELECT $1::float8 * 3", (FLOAT8,))
    runs = 0
    for digits in ("1", "0", "-3", "1"):
        for c in (fast, general):
            c.query(f"SET extra_float_digits = {digits}")
        for params in values:
            expected = general_path(general, "s", params, ())
            assert fast.bound("s", params, ()) == expected
        assert fast.runs() == runs + len(values) - 1  # (compiled again at each new value)
        runs = fast.runs()
