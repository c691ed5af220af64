"""CHECK constraints: compiled once per table definition, evaluated over whole batches.

A CHECK's condition is SQL text in the table definition (storage/schema.py ConstraintDef). It
is compiled with the expression compiler against the table's columns and evaluated on every
batch of rows written (INSERT, UPDATE's new versions, COPY, the bulk API): the store calls
`RowChecks` before a commit's inserts are prepared, and the transaction buffer calls it as
rows are buffered, so a violation fails the statement that wrote the row (23514). As in
PostgreSQL a condition that is NULL passes; only false fails.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.errors import CheckViolation, FeatureNotSupported, SqlVecError, UndefinedColumn
from sqlvec.execution import values as V
from sqlvec.execution.catalog_functions import compile_extensions
from sqlvec.execution.context import ExecContext
from sqlvec.execution.expressions import CompileEnv, Compiler, Frame
from sqlvec.execution.values import BOOL, Value, as_array
from sqlvec.plan.bind import bind_detached
from sqlvec.plan.planner import located
from sqlvec.sql.binder import Field, Scope, bound_ref
from sqlvec.sql.dialect import parse_one
from sqlvec.storage.schema import ROWID, ConstraintDef, TableDef
from sqlvec.types import SqlType

# Constructs a CHECK may not use (PostgreSQL: 0A000 for subqueries, 42P20 for the others).
_REFUSED = (exp.Subquery, exp.Exists, exp.Select)


def parse_condition(text: str) -> exp.Expression:
    """A CHECK condition's SQL text as an expression."""
    return parse_one(f"SELECT {text}").expressions[0]


def compile_check(table_def: TableDef, condition: str | exp.Expression,
                  functions: dict | None) -> Value:
    """The condition compiled against the table's columns, as a boolean (42804 when it is
    not one, 42703 for an unknown column). `condition`: its SQL text, as the table
    definition keeps it, or the statement's own parsed node (then a name error points into
    the statement)."""
    positioned = isinstance(condition, exp.Expression)
    if not positioned:
        condition = parse_condition(condition)
    if any(condition.find_all(*_REFUSED)):
        raise FeatureNotSupported("cannot use subquery in check constraint")
    if any(isinstance(node, exp.AggFunc) for node in condition.walk()):
        raise SqlVecError("aggregate functions are not allowed in check constraints",
                          sqlstate="42803")
    try:
        return _compiled_check(table_def, condition, functions)
    except SqlVecError as error:
        if not positioned:  # a position in the stored text means nothing to the statement
            error.position = None
        raise


def _compiled_check(table_def: TableDef, condition: exp.Expression,
                    functions: dict | None) -> Value:
    scope = _row_scope(table_def)
    bound = _bound_check(table_def, condition, scope)
    compiler = Compiler(scope, [f.type for f in scope.fields], CompileEnv(functions=functions))
    value = compiler.compile(bound)
    if value.type != BOOL and value.type.name != "unknown":
        raise located(SqlVecError(
            f'argument of CHECK must be type boolean, not type {value.type.format()}',
            sqlstate="42804"), condition)
    return compiler.compile_as(bound, BOOL) if value.type != BOOL else value


def _row_scope(table_def: TableDef) -> Scope:
    """The rows a CHECK reads: the table's columns (then its row id, which system column
    names resolve to, and which no check reads)."""
    d = table_def
    return Scope([Field(c.name, d.name, c.type, (d.oid, c.attnum)) for c in d.columns] +
                 [Field(ROWID, d.name, SqlType("int8"), (d.oid, 0), hidden=True)])


def _bound_check(table_def: TableDef, condition: exp.Expression, scope: Scope) -> exp.Expression:
    """The condition with its names resolved once against the table's row (`bind_detached`);
    as in PostgreSQL a system column is refused (42P10), but tableoid, the table's OID."""
    bound = bind_detached(condition, scope)
    rowid = scope.fields[-1]
    for col in list(bound.find_all(exp.Column)):
        ref = bound_ref(col)
        if ref is None or ref.field is not rowid:
            continue
        if ref.system is None:  # the row id itself is no column of the table
            raise located(UndefinedColumn(f'column "{col.name}" does not exist'), col)
        if ref.system.name != "tableoid":
            raise located(SqlVecError(f'system column "{col.name}" reference in check '
                                      "constraint is invalid", sqlstate="42P10"), col)
        oid = parse_one(f"SELECT {table_def.oid}::oid").expressions[0]
        if col is bound:
            return oid
        col.replace(oid)
    return bound


def failing_row(table_def: TableDef, rows: pa.Table, i: int) -> str:
    """PostgreSQL's DETAIL for a row that violates a constraint: `Failing row contains
    (1, abc, null).`"""
    one = rows.slice(i, 1)
    parts = []
    for col in table_def.columns:
        column = one.column(col.name)
        if column.null_count:
            parts.append("null")
            continue
        text = as_array(V.to_text(column, col.type, 1), 1)
        parts.append(str(text[0].as_py()))
    return f"Failing row contains ({', '.join(parts)})."


def describe_failing_row(error: Exception) -> None:
    """Give an error raised below execution that names a failing row (storage's NOT NULL
    check sets `failing_row` to (table definition, rows, index)) PostgreSQL's DETAIL."""
    failing = getattr(error, "failing_row", None)
    if failing is None or getattr(error, "detail", None):
        return
    table_def, rows, i = failing
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    try:
        error.detail = failing_row(table_def, rows, i)  # type: ignore[attr-defined]
    except Exception:  # a value without text output: the error stands without DETAIL
        pass
    error.failing_row = None  # type: ignore[attr-defined]


class RowChecks:
    """The CHECK constraints of tables, compiled once per table definition.

    Callable as `checks(table_def, rows)`: raises 23514 for the first constraint (in creation
    order) some row violates, naming that constraint and the first failing row."""

    def __init__(self, functions: dict | None = None) -> None:
        self._functions = functions
        self._compiled: dict[tuple, list[tuple[ConstraintDef, Value]]] = {}

    def functions(self) -> dict:
        """The compiler's extension forms (operators, reg* casts), loaded on first use."""
        if self._functions is None:
            self._functions = compile_extensions()
        return self._functions

    def compiled(self, table_def: TableDef) -> list[tuple[ConstraintDef, Value]]:
        """The table's CHECK constraints with their compiled conditions, cached per
        definition (a new definition after ALTER TABLE compiles them again)."""
        checks = [c for c in table_def.constraints if c.kind == "c"]
        if not checks:
            return []
        key = (table_def.oid, tuple(checks),
               tuple((c.name, c.type) for c in table_def.columns))
        out = self._compiled.get(key)
        if out is None:
            if len(self._compiled) > 256:
                self._compiled.clear()
            out = [(c, compile_check(table_def, c.expression or "true", self.functions()))
                   for c in checks]
            self._compiled[key] = out
        return out

    def __call__(self, table_def: TableDef, rows: pa.Table | pa.RecordBatch,
                 only: ConstraintDef | None = None) -> None:
        if rows.num_rows == 0:
            return
        compiled = self.compiled(table_def)
        if not compiled:
            return
        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        frame = Frame(rows, ExecContext())
        for constraint, value in compiled:
            if only is not None and constraint.name != only.name:
                continue
            result = as_array(value(frame), rows.num_rows)
            failed = pc.fill_null(pc.invert(result), False)
            if pc.any(failed).as_py():
                first = int(np.flatnonzero(np.asarray(failed))[0])
                raise violation(table_def, constraint, failing_row(table_def, rows, first))


def violation(table_def: TableDef, constraint: ConstraintDef, detail: str) -> CheckViolation:
    """The 23514 error of a row that violates `constraint`."""
    return CheckViolation(
        f'new row for relation "{table_def.name}" violates check constraint '
        f'"{constraint.name}"', detail=detail, schema=table_def.schema,
        table=table_def.name, constraint=constraint.name)


def validate_existing(table_def: TableDef, constraint: ConstraintDef,
                      scan: Callable[[], list[pa.Table]], checks: RowChecks) -> None:
    """ALTER TABLE ... ADD CONSTRAINT ... CHECK against the rows already there: PostgreSQL's
    `check constraint "c" of relation "t" is violated by some row` (23514)."""
    trial = table_def.with_changes(constraints=(constraint,))
    for part in scan():
        try:
            checks(trial, part)
        except CheckViolation:
            raise CheckViolation(
                f'check constraint "{constraint.name}" of relation "{table_def.name}" is '
                "violated by some row", schema=table_def.schema, table=table_def.name,
                constraint=constraint.name) from None


# The checks every write path applies (the store's commit and the transaction buffer).
ROW_CHECKS = RowChecks()
