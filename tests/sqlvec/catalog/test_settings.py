"""Settings with units parse, range-check and print as PostgreSQL 16's GUCs do (the expected
values and messages are PostgreSQL's own)."""

from __future__ import annotations

import pytest

from sqlvec.catalog.settings import format_unit_setting, parse_unit_setting
from sqlvec.errors import InvalidParameterValue


@pytest.mark.parametrize("text, kb, shown", [
    ("64MB", 65536, "64MB"), ("1.5MB", 1536, "1536kB"), ("100 MB", 102400, "100MB"),
    ("65536", 65536, "64MB"), ("64kB", 64, "64kB"), ("1GB", 1 << 20, "1GB"),
    ("0.5GB", 1 << 19, "512MB"), ("'256MB'", 262144, "256MB"),
])
def test_work_mem_values(text, kb, shown):
    assert parse_unit_setting("work_mem", text) == kb
    assert format_unit_setting("work_mem", kb) == shown


@pytest.mark.parametrize("text, message, hint", [
    ("abc", 'invalid value for parameter "work_mem": "abc"', None),
    ("10mb", 'invalid value for parameter "work_mem": "10mb"',
     'Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".'),
    ("3TB", 'invalid value for parameter "work_mem": "3TB"', "Value exceeds integer range."),
    ("32", '32 kB is outside the valid range for parameter "work_mem" (64 kB .. 2147483647 kB)',
     None),
    ("2048B", '2 kB is outside the valid range for parameter "work_mem" (64 kB .. 2147483647 kB)',
     None),
    ("-1", '-1 kB is outside the valid range for parameter "work_mem" (64 kB .. 2147483647 kB)',
     None),
])
def test_bad_work_mem_values_are_22023(text, message, hint):
    with pytest.raises(InvalidParameterValue) as caught:
        parse_unit_setting("work_mem", text)
    assert caught.value.sqlstate == "22023"
    assert caught.value.message == message and caught.value.hint == hint


@pytest.mark.parametrize("text, ms, shown", [
    ("1d", 86_400_000, "1d"), ("1.5s", 1500, "1500ms"), ("200", 200, "200ms"), ("5s", 5000, "5s"),
    ("0", 0, "0"), ("10 min", 600_000, "10min"), ("1000", 1000, "1s"),
])
def test_statement_timeout_values(text, ms, shown):
    assert parse_unit_setting("statement_timeout", text) == ms
    assert format_unit_setting("statement_timeout", ms) == shown


def test_a_negative_statement_timeout_is_out_of_range():
    with pytest.raises(InvalidParameterValue, match=r"^-1 ms is outside the valid range for "
                       r'parameter "statement_timeout" \(0 ms \.\. 2147483647 ms\)$'):
        parse_unit_setting("statement_timeout", "-1")
