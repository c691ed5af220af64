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
    """A SELECT (VALUES, set operation): its operator tree over a snapshot of each table. A
    constant query (`SELECT 1`) runs once; its table (immutable) is the result of every run;
    a vector top-k of a bound vector runs in one step when it can (`PreparedStatement.fused`)."""
    table = prepared.constant_table
    if table is None:
        plan, operator = prepared.compiled  # type: ignore[misc]
        ctx = session._context(typed_params(prepared.param_types, params))
        fused = prepared.fused
        if fused is not None:  # a vector top-k in one step (None: the tree runs after all)
            table = fused.run(ctx)  # type: ignore[attr-defined]
        if table is None:
            table = result_table(operator.execute(ctx), operator.fields, prepared.columns)
        if prepared.constant:
            prepared.constant_table = table
    return Result(f"SELECT {table.num_rows}", prepared.columns, table)


def result_table(table: pa.Table, fields: Sequence, columns: list | None) -> pa.Table:
    """An operator's output as the result: its visible columns under the result's names, as
    plain (nullable, metadata-free) fields. The usual output — no hidden column, plain fields —
    is returned as it is when its names are already the result's, else renamed; anything else
    is rebuilt by `renamed`. Which case applies is worked out once per operator and output
    schema (a fixed cost of every query: iterating a schema's fields costs more than the
    rest of this)."""
    if columns and len(fields) == len(columns) == table.num_columns:
        schema = table.schema
        known = _OUTPUTS.get(id(fields))
        if known is None or known[0] is not fields or known[1] is not columns \
                or not known[2].equals(schema, check_metadata=True):
            plain = not any(f.hidden for f in fields) and schema.metadata is None \
                and all(f.nullable for f in schema)
            named = plain and schema.names == [c.name for c in columns]
            known = (fields, columns, schema, plain, named)
            if len(_OUTPUTS) >= 512:
                _OUTPUTS.clear()
            _OUTPUTS[id(fields)] = known
        if known[4]:
            return table
        if known[3]:
            return table.rename_columns([c.name for c in columns])
    return renamed(table, [i for i, f in enumerate(fields) if not f.hidden], columns)


# Per operator (its fields, by identity): (fields, result columns, output schema, plain,
# plain and already named as the result). The entry holds what it compares, so an id is
# never mistaken for another object's.
_OUTPUTS: dict[int, tuple] = {}


def run_explain(session: Session, prepared: PreparedStatement, params: list,
                max_rows: int) -> Result:
    """EXPLAIN [ANALYZE] of the planned inner statement (execution/explain.py)."""
    from sqlvec.execution.explain import explain

    inner: PreparedStatement = prepared.compiled  # type: ignore[assignment]
    lines = explain(session, inner, typed_params(prepared.param_types, params),
                    prepared.explain or {})
    name = prepared.columns[0].name  # type: ignore[index]
    return Result("EXPLAIN", prepared.columns, pa.table({name: lines}))
