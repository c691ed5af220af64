"""sql/utility.py: utility statements recognised from their text."""

from __future__ import annotations

import pytest

from sqlvec.sql.utility import UtilityKind, recognise


@pytest.mark.parametrize("text, names, mode", [
    ("SET CONSTRAINTS ALL DEFERRED", ("all",), "DEFERRED"),
    ("set constraints a_fkey, public.\"B_fk\"  immediate", ("a_fkey", "B_fk"), "IMMEDIATE"),
])
def test_set_constraints(text, names, mode):
    u = recognise(text)
    assert u is not None and u.kind is UtilityKind.SET_CONSTRAINTS
    assert (u.options, u.value) == (names, mode)


def test_a_setting_named_like_it_is_still_set():
    u = recognise("SET constraint_exclusion = on")
    assert u is not None and u.kind is UtilityKind.SET and u.name == "constraint_exclusion"
