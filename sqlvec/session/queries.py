"""Running queries and EXPLAIN."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlglot import exp

from sqlvec.catalog import functions as F
from sqlvec.errors import FeatureNotSupported, SqlVecError
from sqlvec.execution.values import typed_params
from sqlvec.session.results import PreparedStatement, Result, renamed
from sqlvec.sql.calls import call_of
from sqlvec.storage.row_locks import KEY_SHARE, NO_KEY_UPDATE, SHARE, UPDATE, LockHolder, RowChanged
from sqlvec.storage.schema import ROWID

if TYPE_CHECKING:
    from sqlvec.plan.planner import Planner
    from sqlvec.session.core import Session
    from sqlvec.storage.table import Table


@dataclass
class Locking:
    """SELECT ... FOR UPDATE / FOR SHARE over one table: the rows it returns are locked as an
    UPDATE's are (storage/row_locks.py), their row ids read from a last output column the
    statement gets (`with_row_id`), left out of its result, in the clause's mode
    (`row_locks.KEY_SHARE` ... `UPDATE`, PostgreSQL's conflict table)."""

    table_id: int
    qualifier: str
    nowait: bool
    # SKIP LOCKED: the query runs without its LIMIT and OFFSET, applied to the rows it locks.
    skip: bool = False
    limit: int | None = None
    offset: int = 0
    fields: tuple = ()  # the output's fields without the row id
    mode: int = UPDATE  # the strongest of its locking clauses

    def with_row_id(self, ast: exp.Select) -> exp.Select:
        """The query with the locked table's row id added as its last output column (and,
        for SKIP LOCKED, without its LIMIT and OFFSET)."""
        ast = ast.copy()
        if self.skip:
            ast.set("limit", None)
            ast.set("offset", None)
        return ast.select(exp.column(ROWID, table=self.qualifier), copy=False)

    def run(self, session: Session, execute: Callable[[], pa.Table]) -> pa.Table:
        """The query's rows, locked: a row another block holds is waited for (55P03 with
        NOWAIT), and when a commit changed one since the snapshot, the query runs again on
        the latest versions, as PostgreSQL re-checks them. Outside a block the locks last the
        statement only (they still wait)."""
        holder = session.lock_holder
        own = holder is None
        if own:
            holder = LockHolder(session.pid, session.lock_waiting)
        try:
            while True:
                table = execute()
                try:
                    table = self._lock(holder, session.store.table(self.table_id), table)
                    return table.drop_columns([table.column_names[-1]])
                except RowChanged:
                    session.store.settle()
        finally:
            if own:
                holder.release()

    def _lock(self, holder: LockHolder, table: Table, rows: pa.Table) -> pa.Table:
        """Lock the rows (row ids in the last column); those SKIP LOCKED returns."""
        rowids = rows.column(rows.num_columns - 1).to_numpy()
        if not self.skip:
            holder.lock(table, rowids, self.nowait, self.mode)
            return rows
        most = None if self.limit is None else self.offset + self.limit
        taken = holder.lock_free(table, rowids, most, self.mode)
        return rows.take(pa.array(taken[self.offset:], pa.int64()))


def locking(ast: exp.Expression, planner: Planner) -> Locking | None:
    """How SELECT ... FOR UPDATE / FOR SHARE locks its rows: None without a locking clause,
    and for one over anything but one table (read without locks, as before row locks
    existed)."""
    locks = ast.args.get("locks") if isinstance(ast, exp.Select) else None
    if not locks:
        return None
    refused = next((name for clause, name in _NOT_WITH_LOCKS if ast.args.get(clause)), None)
    if refused is None and any(_aggregates(item) for item in ast.expressions):
        refused = "aggregate functions"
    if refused is not None:
        raise FeatureNotSupported(f"{_strength(locks[0])} is not allowed with {refused}")
    source = ast.args.get("from_")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or ast.args.get("joins") or \
            not isinstance(table.this, exp.Identifier):
        return None
    ctx = planner.ctx
    try:
        target = ctx.catalog.table(table.name, table.db or None, ctx.search_path)
    except SqlVecError:
        return None  # a view, a CTE, a virtual table: planned (and refused) as they are
    skip = any(lock.args.get("wait") is False for lock in locks)
    return Locking(target.id, table.alias_or_name, any(lock.args.get("wait") for lock in locks),
                   skip, *(_bounds(ast) if skip else (None, 0)),
                   mode=max(_MODES[_strength(lock)] for lock in locks))


def _bounds(ast: exp.Select) -> tuple[int | None, int]:
    """A SKIP LOCKED query's LIMIT (None: all) and OFFSET, constants (else 0A000)."""
    values = []
    for clause in ("limit", "offset"):
        node = ast.args.get(clause)
        value = node.expression if node is not None else None
        if value is not None and not (isinstance(value, exp.Literal) and value.is_int):
            raise FeatureNotSupported(f"SKIP LOCKED with a {clause.upper()} other than a "
                                      "constant is not supported")
        values.append(int(value.this) if value is not None else None)
    return values[0], values[1] or 0


# What PostgreSQL refuses a locking clause with (0A000), by the SELECT's clause.
_NOT_WITH_LOCKS = (("distinct", "DISTINCT clause"), ("group", "GROUP BY clause"),
                   ("having", "HAVING clause"))


def _aggregates(item: exp.Expression) -> bool:
    """Whether a select list item calls an aggregate (not inside a subquery of its own)."""
    for node in item.walk(prune=lambda n: isinstance(n, exp.Subquery)):
        call = call_of(node)
        function = F.lookup(call[0]) if call is not None else None
        if function is not None and function.kind is F.Kind.AGGREGATE:
            return True
    return False


# The row lock mode of each locking clause.
_MODES = {"FOR KEY SHARE": KEY_SHARE, "FOR SHARE": SHARE, "FOR NO KEY UPDATE": NO_KEY_UPDATE,
          "FOR UPDATE": UPDATE}


def _strength(lock: exp.Lock) -> str:
    """FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE or FOR KEY SHARE, as the clause says."""
    key = lock.args.get("key")
    if lock.args.get("update"):
        return "FOR NO KEY UPDATE" if key else "FOR UPDATE"
    return "FOR KEY SHARE" if key else "FOR SHARE"


def run_query_values(session: Session, prepared: PreparedStatement, params: list,
                     max_rows: int) -> Result:
    """`run_query`, but a vector top-k run in one step, or a one-row statement computed in
    Python (`PreparedStatement.scalar`), gives its rows as each column's Python values
    (`Result.values`, no table): for a front end that encodes them itself."""
    scalar = prepared.scalar
    if scalar is not None:
        values = scalar.values(params)  # type: ignore[attr-defined]
        if values is not None:
            return Result("SELECT 1", prepared.columns, values=values)
    return run_query(session, prepared, params, max_rows, as_values=True)


def run_query(session: Session, prepared: PreparedStatement, params: list,
              max_rows: int, as_values: bool = False) -> Result:
    """A SELECT (VALUES, set operation): its operator tree over a snapshot of each table. A
    constant query (`SELECT 1`) runs once; its table (immutable) is the result of every run;
    a one-row statement computed in Python (`PreparedStatement.scalar`) makes its table so;
    a vector top-k of a bound vector runs in one step when it can (`PreparedStatement.fused`;
    `as_values`: `run_query_values`)."""
    locked = prepared.locking
    if locked is not None:
        plan, operator = prepared.compiled  # type: ignore[misc]
        table = locked.run(session, lambda: operator.execute(
            session._context(typed_params(prepared.param_types, params))))
        return Result(f"SELECT {table.num_rows}", prepared.columns,
                      result_table(table, locked.fields, prepared.columns))
    table = prepared.constant_table
    scalar = prepared.scalar
    if table is None and scalar is not None:  # (its values: `run_query_values`)
        table = scalar.table(params, [c.name for c in prepared.columns])  # type: ignore
    if table is None:
        plan, operator = prepared.compiled  # type: ignore[misc]
        ctx = session._context(typed_params(prepared.param_types, params))
        fused = prepared.fused
        if fused is not None and as_values:
            values = fused.values(ctx)  # type: ignore[attr-defined]
            if values is not None:
                return Result(f"SELECT {len(values[0])}", prepared.columns, values=values)
        elif fused is not None:  # a vector top-k in one step (None: the tree runs after all)
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
