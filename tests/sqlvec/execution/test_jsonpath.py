"""The SQL/JSON path module on its own: parsing (and PostgreSQL's syntax errors), the canonical
text, and evaluation in lax and strict mode. The SQL functions over it are covered by the SQL
corpus (tests/sql/jsonpath.test), recorded from PostgreSQL."""

from __future__ import annotations

import decimal

import pytest

from sqlvec.errors import SqlVecError
from sqlvec.execution.jsonpath import PathError, item_json, parse

D = decimal.Decimal
DOC = {"a": [1, 2, {"b": "x"}], "n": D("2.5"), "s": "Hello", "o": {"k": None, "t": True}}


def run(path: str, doc: object = DOC, variables: dict | None = None) -> list:
    return [item_json(x) for x in parse(path).run(doc, variables)]


@pytest.mark.parametrize("path, text", [
    ("$.a == $value", '($."a" == $"value")'),
    ("strict $.a[*]", 'strict $."a"[*]'),
    ("$.a ? (@ > 1 && @ < 3 || !(@ == 0))", '$."a"?(@ > 1 && @ < 3 || !(@ == 0))'),
    ("$.a + $.b * $.c", '($."a" + $."b" * $."c")'),
    ("($.a + $.b) * $.c", '(($."a" + $."b") * $."c")'),
    ("$.**{2 to last}", "$.**{2 to last}"),
    ("$.**{last}", "$.**{last}"),
    ('$ ? (@ like_regex "a.c" flag "si")', '$?(@ like_regex "a.c" flag "is")'),
    ("$.a.size().type()", '$."a".size().type()'),
    ("0.5e1", "5"),
    ("lax $", "$"),
    ("strict", "strict"),
])
def test_canonical_text(path, text):
    assert parse(path).text() == text
    assert parse(text).text() == text  # the printed form reads back as itself


@pytest.mark.parametrize("path, message", [
    ("$.a =", 'syntax error at or near "=" of jsonpath input'),
    ("$.a ?", "syntax error at end of jsonpath input"),
    ("$ ? (@.a)", 'syntax error at or near ")" of jsonpath input'),
    ("@.a", "@ is not allowed in root expressions"),
    ("$.a[last] + last", "LAST is allowed only in array subscripts"),
    ("$.nosuch()", 'syntax error at or near "(" of jsonpath input'),
])
def test_syntax_errors(path, message):
    with pytest.raises(SqlVecError) as err:
        parse(path)
    assert (err.value.sqlstate, err.value.message) == ("42601", message)


def test_methods_not_implemented_are_refused_by_name():
    with pytest.raises(SqlVecError) as err:
        parse("$.a.bigint()")
    assert err.value.sqlstate == "0A000" and ".bigint()" in err.value.message


def test_accessors():
    assert run("$.a[*].b") == ["x"]  # lax: the member accessor skips what has no such key
    assert run("$.a[0 to 1, last]") == [1, 2, {"b": "x"}]
    assert run("$.a[last - 1]") == [2]
    assert run("$.o.*") == [None, True]
    assert run("$.a.b") == ["x"]  # lax unwraps the array
    assert run('$."s"') == ["Hello"]
    assert run("$.**.b") == ["x", "x"]  # as PostgreSQL documents: lax `**` finds it twice
    assert run("$.n[0]") == [D("2.5")]  # lax wraps a non-array


def test_strict_mode_reports_what_lax_mode_skips():
    for path, state, lax in [("strict $.missing", "2203A", []), ("strict $.a.b", "2203A", ["x"]),
                             ("strict $.a[9]", "22033", []), ("strict $.n[*]", "22039", [D("2.5")]),
                             ("strict $.s.size()", "22039", [D(1)])]:
        with pytest.raises(PathError) as err:
            run(path)
        assert err.value.sqlstate == state, path
        assert run(path.replace("strict", "lax")) == lax, path


def test_predicates_are_three_valued():
    assert run("$.n > 2") == [True]
    assert run('$.n > "2"') == [None]  # a number and a string do not compare: unknown
    assert run('($.n > "2") is unknown') == [True]
    assert run("$.o.k == null") == [True]
    assert run("$.o.k != 1") == [True]  # null against another type: only != holds
    assert run("exists($.nope)") == [False]
    assert run('$.s starts with "He" && $.s like_regex "^h" flag "i"') == [True]
    assert run('$.s like_regex "l+" flag "q"') == [False]  # q: the pattern is literal
    assert run("$.a[*] ? (@ >= 2)") == [2]
    assert run("strict $.a[*] > 1") == [None]  # strict: the object element is an error


def test_arithmetic_and_methods():
    assert run("$.n * 2 + 1") == [D("6.0")]
    assert run("$.a[0] / 3") == [D("0.33333333333333333333")]
    assert run("-$.a[0 to 1]") == [D(-1), D(-2)]
    assert run("$.n.floor()") == [D(2)]
    assert run("$.n.ceiling()") == [D(3)]
    assert run('"1e3".double()', None) == [D("1000")]
    assert run("$.o.keyvalue().key") == ["k", "t"]
    assert run("$.a.size()") == [D(3)]
    assert run('"2024-01-02 03:04:05+02".datetime().type()', None) == [
        "timestamp with time zone"]
    with pytest.raises(PathError) as err:
        run("$.a + 1")
    assert err.value.sqlstate == "22038"
    with pytest.raises(PathError) as err:
        run("$.n / 0")
    assert err.value.sqlstate == "22012"


def test_variables():
    assert run("$.n > $x", variables={"x": D(1)}) == [True]
    assert run('$.s == $"y z"', variables={"y z": "Hello"}) == [True]
    with pytest.raises(SqlVecError) as err:
        run("$x")
    assert err.value.sqlstate == "42704"


def test_match_wants_one_boolean():
    assert parse("$.n > 1").match(DOC) is True
    assert parse('$.n > "1"').match(DOC) is None
    with pytest.raises(PathError) as err:
        parse("$.n").match(DOC)
    assert err.value.sqlstate == "22038"
