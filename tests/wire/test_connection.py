"""wire.connection helpers: startup options, notices, error responses, result formats."""

from __future__ import annotations

import pytest

from sqlvec.errors import Notice, SqlVecError, UndefinedTable
from sqlvec.session import ResultColumn
from sqlvec.types import SqlType
from wire import copy as copy_format
from wire.connection import (
    ConnectionState,
    _parse_options,
    _result_formats,
    error_response,
    notice_response,
    row_description,
)


def test_states_are_the_protocol_phases():
    assert [s.value for s in ConnectionState] == [
        "startup", "auth", "ready", "extended-query", "copy-in", "copy-out",
        "failed-skip-until-sync", "closed"]


def test_startup_options():
    assert _parse_options("-c search_path=a,b --statement-timeout=5s -cDateStyle=ISO") == {
        "search_path": "a,b", "statement_timeout": "5s", "DateStyle": "ISO"}
    assert _parse_options(r"-c application_name=two\ words") == {
        "application_name": "two words"}
    assert _parse_options("") == {}
    with pytest.raises(SqlVecError):
        _parse_options("-c novalue")


def test_error_response_maps_every_field():
    error = UndefinedTable('relation "x" does not exist', hint="create it", position=15)
    response = error_response(error)
    assert response.get("S") == "ERROR" and response.get("C") == "42P01"
    assert response.get("P") == "15" and response.get("H") == "create it"


def test_internal_errors_carry_no_traceback():
    response = error_response(RuntimeError("first line\nTraceback (most recent call last):"))
    assert response.get("C") == "XX000"
    assert response.get("M") == "internal error: RuntimeError: first line"
    assert "Traceback" not in str(response.fields)


def test_copy_errors_carry_their_context():
    error = copy_format.CopyDataError(SqlVecError("bad", sqlstate="22P02"), 3, "id", "x")
    error.label = "items"
    assert error_response(error).get("W") == 'COPY items, line 3, column id: "x"'


@pytest.mark.parametrize("notice", [
    Notice.warning("there is no transaction in progress", "25P01"),
    Notice.notice('relation "t" already exists, skipping', "42P07"),
    Notice("NOTICE", "00000", "WARNING: a message that looks like a severity"),
])
def test_notices_carry_the_engines_fields(notice):
    response = notice_response(notice)
    assert (response.get("S"), response.get("V"), response.get("C"), response.get("M")) == (
        notice.severity, notice.severity, notice.sqlstate, notice.message)
    assert response.encode()[:1] == b"N"


def test_result_formats():
    assert _result_formats((), 3) == [0, 0, 0]
    assert _result_formats((1,), 2) == [1, 1]
    assert _result_formats((0, 1), 2) == [0, 1]
    with pytest.raises(SqlVecError) as info:
        _result_formats((0, 1), 3)
    assert info.value.sqlstate == "08P01" and info.value.severity == "ERROR"


def test_row_description_from_result_columns():
    columns = [ResultColumn("v", SqlType("vector", 3), 16400, 2),
               ResultColumn("n", SqlType.of("varchar", 10))]
    fields = row_description(columns, [1, 0]).fields
    assert [(f.name, f.table_oid, f.attnum, f.type_oid, f.typlen, f.typmod, f.format)
            for f in fields] == [("v", 16400, 2, 16385, -1, 3, 1), ("n", 0, 0, 1043, -1, 14, 0)]
