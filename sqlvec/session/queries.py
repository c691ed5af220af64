"""Running queries and EXPLAIN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from sqlvec.execution.values import typed_params
from sqlvec.session.results import PreparedStatement, Result, renamed

if TYPE_CHECKING:
    from sqlvec.session.core import Session


def run_query(session: Session, prepared: PreparedStatement, params: list,
              max_rows: int) -> Result:
    """A SELECT (VALUES, set operation): its operator tree over a snapshot of each table."""
    plan, operator = prepared.compiled  # type: ignore[misc]
    ctx = session._context(typed_params(prepared.param_types, params))
    table = result_table(operator.execute(ctx), operator.fields, prepared.columns)
    return Result(f"SELECT {table.num_rows}", prepared.columns, table)


def result_table(table: pa.Table, fields: Sequence, columns: list | None) -> pa.Table:
    """An operator's output as the result: its visible columns under the result's names. The
    usual case (no hidden column, plain nullable fields without metadata) is a rename, which
    gives what `renamed` builds at a fraction of its cost (a fixed cost of every query)."""
    if columns and len(fields) == len(columns) == table.num_columns \
            and not any(f.hidden for f in fields):
        schema = table.schema
        if schema.metadata is None and all(f.nullable for f in schema):
            return table.rename_columns([c.name for c in columns])
    return renamed(table, [i for i, f in enumerate(fields) if not f.hidden], columns)


def run_explain(session: Session, prepared: PreparedStatement, params: list,
                max_rows: int) -> Result:
    """EXPLAIN [ANALYZE] of the planned inner statement (execution/explain.py)."""
    from sqlvec.execution.explain import explain

    inner: PreparedStatement = prepared.compiled  # type: ignore[assignment]
    lines = explain(session, inner, typed_params(prepared.param_types, params),
                    prepared.explain or {})
    name = prepared.columns[0].name  # type: ignore[index]
    return Result("EXPLAIN", prepared.columns, pa.table({name: lines}))
