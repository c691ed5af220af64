"""Name resolution (sql/binder.py): a column's name is looked up once, and the field it
names is then found by identity wherever the expression goes."""

from __future__ import annotations

import pytest
from sqlglot import exp

from sqlvec.errors import SqlVecError
from sqlvec.sql.binder import Field, Scope, find, resolve, resolved
from sqlvec.types import SqlType

INT = SqlType("int4")
A_X, A_Y, B_X = Field("x", "a", INT), Field("y", "a", INT), Field("x", "b", INT)


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """The names looked up (Scope.find), in order."""
    seen: list[str] = []
    original = Scope.find

    def counted(self, name, table=None):
        seen.append(name)
        return original(self, name, table)

    monkeypatch.setattr(Scope, "find", counted)
    return seen


def test_a_column_is_looked_up_once_then_found_by_its_field(lookups):
    column = exp.column("y")
    assert resolve(Scope([A_X, A_Y, B_X]), column) == (0, 1)
    assert lookups == ["y"]
    # Moved (copied) under another node whose input holds the field elsewhere, or one query
    # down: found where the field is, without looking the name up again.
    moved = exp.Paren(this=column).copy().this
    assert resolve(Scope([B_X, A_Y]), moved) == (0, 1)
    assert resolve(Scope([B_X], Scope([A_X, A_Y])), moved) == (1, 1)
    assert find(Scope([A_Y]), moved) == 0
    assert lookups == ["y"]


def test_a_field_not_in_scope_is_looked_up_by_name(lookups):
    column = resolved(exp.column("x", table="a"), A_X)
    renamed = Field("x", "a", INT)  # an equal field, not the same one
    assert resolve(Scope([B_X, renamed]), column) == (0, 1)
    assert find(Scope([B_X]), column) is None  # not a column of this input
    assert lookups == ["x", "x"]


def test_a_field_present_twice_is_told_by_name():
    column = resolved(exp.column("x"), A_X)
    with pytest.raises(SqlVecError) as error:
        resolve(Scope([A_X, A_X]), column)
    assert error.value.sqlstate == "42702"


def test_an_unknown_name_fails_as_before():
    with pytest.raises(SqlVecError) as error:
        resolve(Scope([A_X]), exp.column("z", table="c"))
    assert error.value.sqlstate == "42P01"
    with pytest.raises(SqlVecError) as error:
        resolve(Scope([A_X]), exp.column("z"))
    assert error.value.sqlstate == "42703"
