"""Running queries and EXPLAIN."""

from __future__ import annotations

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
    table = operator.execute(ctx)
    visible = [i for i, f in enumerate(operator.fields) if not f.hidden]
    table = renamed(table, visible, prepared.columns)
    return Result(f"SELECT {table.num_rows}", prepared.columns, table)


def run_explain(session: Session, prepared: PreparedStatement, params: list,
                max_rows: int) -> Result:
    """EXPLAIN [ANALYZE] of the planned inner statement (execution/explain.py)."""
    from sqlvec.execution.explain import explain

    inner: PreparedStatement = prepared.compiled  # type: ignore[assignment]
    lines = explain(session, inner, typed_params(prepared.param_types, params),
                    prepared.explain or {})
    name = prepared.columns[0].name  # type: ignore[index]
    return Result("EXPLAIN", prepared.columns, pa.table({name: lines}))
