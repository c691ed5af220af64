"""sql/copy.py: the COPY statement and its options, both spellings."""

from __future__ import annotations

import pytest

from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.sql.copy import parse_copy

# Statements ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql, direction, table, columns, query, fmt", [
    ("COPY t FROM STDIN", "from", "t", None, None, "text"),
    ('copy public."Items" (id, "Note") from stdin with (format csv, header true)', "from",
     'public."Items"', ("id", '"Note"'), None, "csv"),
    ("COPY t TO STDOUT WITH CSV HEADER", "to", "t", None, None, "csv"),
    ("COPY (SELECT 1, ')') TO STDOUT (FORMAT binary);", "to", None, None, "SELECT 1, ')'",
     "binary"),
    ("COPY t FROM STDIN BINARY", "from", "t", None, None, "binary"),
])
def test_parse_copy(sql, direction, table, columns, query, fmt):
    command = parse_copy(sql)
    assert (command.direction, command.table, command.columns, command.query,
            command.options.format) == (direction, table, columns, query, fmt)


def test_copy_options():
    options = parse_copy("COPY t FROM STDIN (FORMAT csv, DELIMITER ';', NULL 'x', "
                           "QUOTE '''', HEADER)").options
    assert (options.delimiter, options.null, options.quote, options.header) == (";", "x", "'",
                                                                                True)
    assert parse_copy("COPY t FROM STDIN DELIMITER E'\\t' NULL AS ''").options.null == ""
    assert parse_copy('COPY "My"."T" FROM STDIN').table_name == "My.T"
    assert parse_copy("COPY Public.T FROM STDIN").table_name == "public.t"


@pytest.mark.parametrize("sql, error", [
    ("COPY t FROM '/etc/passwd'", FeatureNotSupported),
    ("COPY t TO PROGRAM 'ls'", FeatureNotSupported),
    ("COPY t FROM", SqlVecError),
    ("COPY t (a b) FROM STDIN", SqlVecError),
    ("COPY t FROM STDIN (FORMAT xml)", SqlVecError),
    ("COPY t FROM STDIN (FORMAT text, QUOTE '\"')", FeatureNotSupported),
])
def test_bad_copy_statements(sql, error):
    with pytest.raises(error):
        parse_copy(sql)


def test_error_positions_count_from_the_start_of_the_statement():
    with pytest.raises(SqlVecError) as caught:
        parse_copy("  COPY t FROM")
    assert caught.value.position == len("  COPY t FROM") + 1
