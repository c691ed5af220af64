"""A prepared one-row statement over no table computed in Python (`ScalarRow`):
`SELECT $1::int`, `SELECT $1 + 1, $2::text`, a select list whose every expression has a
Python form (execution/expressions/scalars.py).

Its operator tree would make an Arrow scalar of each parameter, run an Arrow kernel per
cast or operator over them, build a one-row table and, for the front end, read its cells
back into Python values: fixed costs that are all of the work for one row. The row is
computed from the decoded parameters instead, as the Python values the front end encodes
(`Session.run_values`), or as the tree's one-row table (`Session.run`). Any parameter or value the forms are not sure of (`NotScalar`)
leaves the statement to its operator tree, which gives the same value or reports the
error.
"""

from __future__ import annotations

import pyarrow as pa

from sqlvec.execution.expressions.scalars import Form, NotScalar, param_form
from sqlvec.execution.operators import OneRowOp, ProjectOp
from sqlvec.types import SqlType


class ScalarRow:
    """The Python forms of a one-row statement's columns, and of each of its parameters as
    the general path binds them (`values.typed_params` reads every one, used or not); the
    columns' Arrow types, as the operator tree outputs them."""

    __slots__ = ("params", "forms", "arrow_types")

    def __init__(self, params: list[Form], forms: list[Form],
                 arrow_types: list[pa.DataType]) -> None:
        self.params, self.forms, self.arrow_types = params, forms, arrow_types

    def table(self, params: list, names: list[str]) -> pa.Table | None:
        """The row as the operator tree's one-row table under the result's `names`, or None
        when the tree must run."""
        values = self.values(params)
        if values is None:
            return None
        return pa.Table.from_arrays(
            [pa.array(column, arrow) for column, arrow in zip(values, self.arrow_types)],
            names=names)

    def values(self, params: list) -> list[list] | None:
        """Each column's value (a list of one), or None when the operator tree must run."""
        if len(params) != len(self.params):
            return None
        try:
            for read in self.params:
                read(params)
            return [[form(params)] for form in self.forms]
        except NotScalar:
            return None


def scalar_row(operator: object, param_types: list[SqlType]) -> ScalarRow | None:
    """The `ScalarRow` of a statement whose operator tree is `operator`, or None when it is
    not a projection over no table of expressions with Python forms."""
    if type(operator) is not ProjectOp or type(operator.children[0]) is not OneRowOp \
            or any(f.hidden for f in operator.fields):
        return None
    forms = [value.py for value in operator.exprs]
    params = [param_form(i + 1, t) for i, t in enumerate(param_types)]
    if not forms or None in forms or None in params:
        return None
    return ScalarRow(params, forms, operator.arrow_types)  # type: ignore[arg-type]
