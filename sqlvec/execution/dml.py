"""INSERT, UPDATE and DELETE: plans built from the query planner, writes into a transaction.

A write statement reads through the same operators as a query (so WHERE, joins in FROM/USING,
subqueries and RETURNING all work), then turns its rows into buffered inserts and deletes of
the session's transaction (transaction.py). UPDATE is delete + insert of the new version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog.views import matview
from sqlvec.errors import FeatureNotSupported, SqlVecError, UndefinedColumn, UndefinedObject
from sqlvec.execution import values as V
from sqlvec.execution.builder import Builder
from sqlvec.execution.context import ExecContext
from sqlvec.execution.expressions import Compiler, Frame
from sqlvec.execution.expressions.core import param_index
from sqlvec.execution.kernels import table_of
from sqlvec.execution.operators import SIMPLE_KEYS, Operator, ScanOp
from sqlvec.execution.sequence_ddl import NEXTVAL_CALL
from sqlvec.execution.transaction import Transaction
from sqlvec.execution.values import BOOL, Value, as_array
from sqlvec.float_order import pg_compare
from sqlvec.plan import nodes as n
from sqlvec.plan.bind import bind_expr, bind_plan
from sqlvec.plan.planner import Planner, located
from sqlvec.plan.rules import optimize
from sqlvec.sql.binder import SYSTEM_COLUMNS, Field, Scope, bound_ref
from sqlvec.sql.dialect import parse_one
from sqlvec.storage.keys import MISSING
from sqlvec.storage.memtable import GrowingData
from sqlvec.storage.schema import ROWID, ColumnDef, KeyDef, TableDef
from sqlvec.storage.table import UNKNOWN, Table, cast_column, one_value_array, value_at
from sqlvec.storage.wal import DeleteOp, InsertOp
from sqlvec.types import SqlType


@dataclass
class WritePlan:
    """A compiled write statement: `run(ctx, txn)` performs it and returns (count, returning)."""

    kind: str  # INSERT | UPDATE | DELETE
    table: Table
    source: Operator
    returning: list[Value] | None
    returning_fields: list[Field] | None
    runner: object

    # A single-row fast path (FastInsert), or None.
    fast: FastInsert | None = None
    # A single-row UPDATE or DELETE by key (KeyWrite), or None.
    by_key: KeyWrite | None = None

    def run(self, ctx: ExecContext, txn: Transaction) -> tuple[int, pa.Table | None]:
        """Perform the write in `txn`; returns the row count for the command tag and the RETURNING
        rows, if any."""
        return self.runner(self, ctx, txn)


def _target(planner: Planner, table_expr: exp.Table) -> tuple[Table, str]:
    table = planner.ctx.catalog.table(table_expr.name, table_expr.db or None, planner.ctx.search_path)
    if matview(planner.ctx.catalog, table.id) is not None:
        raise SqlVecError(f'cannot change materialized view "{table.def_.name}"',
                          sqlstate="42809")
    alias = table_expr.alias or table.def_.name
    return table, alias


def _table_fields(table: Table, alias: str) -> list[Field]:
    d = table.def_
    return [Field(c.name, alias, c.type, (d.oid, c.attnum)) for c in d.columns] + \
        [Field(ROWID, alias, SqlType("int8"), (d.oid, 0), hidden=True)]


def write_compiler(scope: Scope, types: list[SqlType], builder: Builder) -> Compiler:
    """The compiler of a write's own expressions (SET, RETURNING, DEFAULT, ON CONFLICT), over
    the rows `scope` describes. As a plan's compilers, it reads the positions the binder gave
    (`bound_write`) and refuses a column reference without one (XX000)."""
    return Compiler(scope, types, builder.env)


def bound_write(planner: Planner, e: exp.Expression, scope: Scope) -> exp.Expression:
    """A write's own expression checked and planned as the planner does a query's (names give
    42703/42702/42P01 at their position, subqueries become plans), then bound against
    `scope`: its column references carry their `ColumnRef`, its subqueries are bound plans
    with `scope` as their outer scope."""
    return bind_expr(planner._expr(e, scope), scope)


def _column(scope: Scope, name: str, table: str | None) -> exp.Column:
    """A bound reference to a column of the rows `scope` describes (a write reading a column
    it does not assign, the target's row id, `*` in RETURNING)."""
    return bind_expr(exp.column(name, table=table), scope)  # type: ignore[return-value]


def _returning(builder: Builder, planner: Planner, stmt: exp.Expression, fields: list[Field],
               written: bool = False, joined: Operator | None = None):
    """RETURNING, compiled over the rows as written (`written`: new rows of INSERT or UPDATE)
    or as deleted: `fields` are the target's (its columns, then its row id), then those of
    the tables UPDATE ... FROM or DELETE ... USING joined (the fields of `joined`, the
    statement's source, after the target's), as PostgreSQL lets RETURNING read them (`*` is
    the target's columns, then theirs)."""
    ret = stmt.args.get("returning")
    if ret is None:
        return None, None
    types = [f.type for f in fields]
    if joined is not None:
        width = len(fields)
        fields = fields + list(joined.fields[width:])
        types = types + list(joined.types[width:])
    scope = Scope(fields)
    c = write_compiler(scope, types, builder)
    target_rowid = next(f for f in fields if f.name == ROWID)
    values, out_fields = [], []
    for planned, name in planner._select_items(ret.expressions, scope):
        bound = bind_expr(planned, scope)
        if written:
            _refuse_commit_assigned(bound, target_rowid)
        v = c.compile(bound)
        if v.type.name == "unknown":
            v = c.coerce(v, V.TEXT)
        values.append(v)
        out_fields.append(Field(name, None, v.type, _origin(bound)))
    return values, out_fields


def _origin(e: exp.Expression) -> tuple[int, int]:
    """The (table OID, attnum) RowDescription reports for a RETURNING item: its column's when
    it is a bare column reference, as PostgreSQL's; zeros otherwise."""
    ref = bound_ref(e)
    if ref is None or ref.level != 0:
        return (0, 0)
    if ref.system is not None:
        return (ref.field.source[0], ref.system.attnum)
    return ref.field.source


def _refuse_commit_assigned(e: exp.Expression, target_rowid: Field) -> None:
    """ctid and xmin of the written rows derive from their row id, which a written row gets
    only when its transaction commits: RETURNING them would give values that then change
    (those of a table UPDATE ... FROM reads are the rows' own)."""
    for col in e.find_all(exp.Column):
        ref = bound_ref(col)
        if ref is not None and ref.level == 0 and ref.field is target_rowid and \
                ref.system is not None and ref.system.name in ("ctid", "xmin"):
            raise FeatureNotSupported(
                f'system column "{col.name}" is not supported in RETURNING of INSERT or UPDATE',
                detail="It is assigned when the transaction commits.")


def refuse_writing_with(stmt: exp.Expression) -> None:
    """0A000 for a write whose WITH holds an INSERT, UPDATE or DELETE: those CTEs do not run
    here (PostgreSQL runs each once), and dropping them would lose their writes."""
    with_ = stmt.args.get("with_") or stmt.args.get("with")
    if with_ is not None and any(isinstance(cte.this, (exp.Insert, exp.Update, exp.Delete))
                                 for cte in with_.expressions):
        raise FeatureNotSupported("data-modifying statements in WITH are not supported")


def eval_returning(plan: WritePlan, ctx: ExecContext, rows: pa.Table) -> pa.Table:
    """The RETURNING list evaluated over the rows written (new versions for INSERT and UPDATE, old
    for DELETE)."""
    frame = Frame(rows, ctx)
    cols = [as_array(v(frame), rows.num_rows) for v in plan.returning]
    return table_of(cols) if cols else table_of([], rows.num_rows)


# INSERT --------------------------------------------------------------------------------------------


def default_value(col: ColumnDef, builder: Builder) -> Value | None:
    """The compiled DEFAULT of a column (None: NULL)."""
    if col.default is None:
        return None
    scope = Scope([])
    default = bind_expr(parse_one(f"SELECT {col.default}").expressions[0], scope)
    return write_compiler(scope, [], builder).compile_as(default, col.type)


def plan_insert(stmt: exp.Insert, planner: Planner, builder: Builder) -> WritePlan:
    """Compile INSERT: target columns, defaults and the source (VALUES or a query), ON CONFLICT,
    RETURNING; a single-row VALUES without ON CONFLICT gets the FastInsert path."""
    refuse_writing_with(stmt)
    target = stmt.this
    columns: list[str] | None = None
    if isinstance(target, exp.Schema):
        columns = [c.name for c in target.expressions]
        target = target.this
    table, alias = _target(planner, target)
    d = table.def_
    explicit = columns is not None  # without a column list, missing trailing values take defaults
    if columns is None:
        columns = d.column_names
    for name in columns:
        if not d.has_column(name):
            raise UndefinedColumn(f'column "{name}" of relation "{d.name}" does not exist')
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise SqlVecError(f'column "{dup}" specified more than once', sqlstate="42701")
    target_cols = [d.column(c) for c in columns]
    source_expr = stmt.args.get("expression")
    overriding = stmt.args.get("overriding")
    overriding = overriding.name if overriding is not None else None
    if stmt.args.get("default") or source_expr is None:
        source = builder.build(n.OneRow(()))
        target_cols = []
    elif isinstance(source_expr, exp.Values):
        source = _values_source(source_expr, target_cols, planner, builder, explicit,
                                overriding)
        target_cols = source.columns  # type: ignore[attr-defined]
    else:
        query = source_expr.this if isinstance(source_expr, exp.Subquery) else source_expr
        plan = planner.plan_query(query)
        source = builder.build(bind_plan(optimize(plan)))
        visible = [f for f in source.fields if not f.hidden]
        if len(visible) > len(target_cols):
            raise SqlVecError("INSERT has more expressions than target columns", sqlstate="42601")
        if explicit and len(visible) < len(target_cols):
            raise SqlVecError("INSERT has more target columns than expressions", sqlstate="42601")
        target_cols = target_cols[: len(visible)]
        for col in target_cols:
            _refuse_identity_value(col, overriding)
        types = [t for f, t in zip(source.fields, source.types) if not f.hidden]
        literals = _unknown_literals(query)
        for i, (t, col) in enumerate(zip(types, target_cols)):
            V.check_assignable(V.UNKNOWN if i in literals else t, col)
    defaults = {c.name: default_value(c, builder) for c in d.columns}
    fields = _table_fields(table, alias)
    returning, returning_fields = _returning(builder, planner, stmt, fields, written=True)
    plan = WritePlan("INSERT", table, source, returning, returning_fields, _run_insert)
    plan.target_cols = target_cols  # type: ignore[attr-defined]
    plan.defaults = defaults  # type: ignore[attr-defined]
    plan.user_ignored = {c.name for c in target_cols  # type: ignore[attr-defined]
                         if overriding == "USER" and _is_identity(c)}
    plan.conflict = _plan_conflict(stmt.args.get("conflict"), table, alias, planner, builder)  # type: ignore[attr-defined]
    if plan.conflict is None and isinstance(source, _ValuesRows) and len(source.rows) == 1:
        plan.fast = FastInsert.plan(table, source, defaults)
    return plan


class _DefaultMarker(exp.Expression):
    """The DEFAULT keyword inside VALUES."""


_ALWAYS_DETAIL = 'Column "{}" is an identity column defined as GENERATED ALWAYS.'


def _is_identity(col: ColumnDef) -> bool:
    return col.identity in ("always", "by default")


def _refuse_identity_value(col: ColumnDef, overriding: str | None) -> None:
    """A value given for a GENERATED ALWAYS identity column is 428C9, as PostgreSQL, unless
    the INSERT says OVERRIDING SYSTEM VALUE (takes it) or OVERRIDING USER VALUE (ignores it)."""
    if col.identity == "always" and overriding is None:
        raise SqlVecError(f'cannot insert a non-DEFAULT value into column "{col.name}"',
                          sqlstate="428C9", detail=_ALWAYS_DETAIL.format(col.name),
                          hint="Use OVERRIDING SYSTEM VALUE to override.")


def _refuse_identity_update(col: ColumnDef, value: exp.Expression) -> None:
    """SET of a GENERATED ALWAYS identity column to anything but DEFAULT is 428C9."""
    if col.identity == "always" and not _is_default(value):
        raise SqlVecError(f'column "{col.name}" can only be updated to DEFAULT',
                          sqlstate="428C9", detail=_ALWAYS_DETAIL.format(col.name))


def _values_source(values: exp.Values, target_cols: list[ColumnDef], planner: Planner,
                   builder: Builder, explicit: bool = True,
                   overriding: str | None = None) -> Operator:
    """The VALUES rows compiled for their columns; without an explicit column list (`explicit`
    false) rows shorter than the table fill the first columns only, the rest take defaults.
    Identity columns refuse values or ignore them as `overriding` says (`OVERRIDING ...`)."""
    rows, params = [], []
    width = None
    for row in values.expressions:
        cells = list(row.expressions) if isinstance(row, exp.Tuple) else [row]
        if width is not None and len(cells) != width:
            raise SqlVecError("VALUES lists must all be the same length", sqlstate="42601")
        width = len(cells)
        if len(cells) > len(target_cols):
            raise SqlVecError("INSERT has more expressions than target columns", sqlstate="42601")
        if len(cells) < len(target_cols):
            if explicit:
                raise SqlVecError("INSERT has more target columns than expressions",
                                  sqlstate="42601")
            target_cols = target_cols[: len(cells)]
        out, indexes = [], []
        for cell, col in zip(cells, target_cols):
            if _is_default(cell):
                out.append(None)
                indexes.append(None)
                continue
            _refuse_identity_value(col, overriding)
            bound = bound_write(planner, cell, Scope([]))
            index = None
            if isinstance(bound, exp.Parameter) and isinstance(bound.this, exp.Literal):
                index = int(bound.this.this)
                builder.env.infer_param(index, col.type)
            if overriding == "USER" and _is_identity(col):  # the value is ignored: DEFAULT
                bound, index = None, None
            out.append(bound)
            indexes.append(index)
        rows.append(out)
        params.append(indexes)
    c = write_compiler(Scope([]), [], builder)
    compiled = []
    for row in rows:
        compiled.append([None if cell is None else _assign(c, cell, col)
                         for cell, col in zip(row, target_cols)])
    op = _ValuesRows([Field(col.name, None, col.type) for col in target_cols],
                     [col.type for col in target_cols], [])
    op.rows = compiled
    op.columns = target_cols
    op.params = params  # per cell: the index of a bare parameter ($n), else None
    return op


def _is_default(e: exp.Expression) -> bool:
    """The DEFAULT keyword in VALUES or SET (sqlglot reads it as a name)."""
    return isinstance(e, (exp.Var, exp.Column)) and not isinstance(e.this, exp.Star) and \
        not (isinstance(e, exp.Column) and (e.table or e.this.quoted)) and \
        e.name.upper() == "DEFAULT"


def set_items(sets: list[exp.Expression], row_subquery: Callable[[exp.Expression], list]
              ) -> list[tuple[exp.Expression, exp.Expression]]:
    """SET's assignments as (column, value) pairs, each multiple-column item `(a, b) = (x, y)`,
    `= ROW(x, y)` or `= (SELECT ...)` spread over its columns (a sub-SELECT's columns are the
    planned cells `row_subquery` makes of its query, which share one run per row); a column
    assigned twice is 42601, as PostgreSQL."""
    pairs: list[tuple[exp.Expression, exp.Expression]] = []
    for item in sets:
        target = item.this
        if isinstance(target, (exp.Tuple, exp.Paren)):
            columns = target.expressions if isinstance(target, exp.Tuple) else [target.this]
            pairs.extend(zip(columns, _row_values(item.expression, len(columns), row_subquery)))
        else:
            pairs.append((target, item.expression))
    seen: set[str] = set()
    for column, _ in pairs:
        if column.name in seen:
            raise SqlVecError(f'multiple assignments to same column "{column.name}"',
                              sqlstate="42601")
        seen.add(column.name)
    return pairs


def _row_values(source: exp.Expression, width: int,
                row_subquery: Callable[[exp.Expression], list]) -> list[exp.Expression]:
    """The values of a multiple-column SET item's source, one per target column."""
    if isinstance(source, exp.Subquery):
        values = row_subquery(source.this)
    elif isinstance(source, exp.Tuple) and width > 1:
        values = list(source.expressions)
    elif isinstance(source, exp.Anonymous) and source.name.upper() == "ROW":
        values = list(source.expressions)
    else:
        raise FeatureNotSupported("source for a multiple-column UPDATE item must be a sub-SELECT "
                                  "or ROW() expression")
    if len(values) != width:
        raise located(SqlVecError("number of columns does not match number of values",
                                  sqlstate="42601"), source)
    return values


def _assign(c: Compiler, e: exp.Expression, col: ColumnDef) -> Value:
    """An expression assigned to a column: unknown literals and parameters take its type;
    other types need an assignment cast (42804 otherwise, as PostgreSQL)."""
    if isinstance(e, exp.Parameter):
        return c.compile_as(e, col.type)
    v = c.compile(e)
    if v.type.name == "unknown":
        return c.coerce(v, col.type)
    V.check_assignable(v.type, col)
    return v


class _ValuesRows(Operator):
    """VALUES rows of an INSERT, each cell already typed for its column (None = DEFAULT)."""

    def __init__(self, fields, types, children):
        self.fields, self.types, self.children = fields, types, children

    def run(self, ctx, outer):
        frame = Frame(_ONE_NULL, ctx, outer)
        columns = []
        for i, col in enumerate(self.columns):
            columns.append([_DEFAULT if row[i] is None else _cell_scalar(row[i], col, frame)
                            for row in self.rows])
        out = []
        for i in range(len(self.columns)):
            vals = [c if c is _DEFAULT else (c.as_py() if c.is_valid else None) for c in columns[i]]
            out.append(vals)
        table = {str(i): vals for i, vals in enumerate(out)}
        return table, len(self.rows)


_DEFAULT = object()
_ONE_NULL = pa.table({"_": [None]})


def _unknown_literals(query: exp.Expression) -> set[int]:
    """Output positions of a plain SELECT that are bare string literals: PostgreSQL leaves them
    of type unknown in INSERT ... SELECT, so they convert to the target column's type as in
    VALUES (`INSERT INTO t (v) SELECT '[1,2,3]'`)."""
    if not isinstance(query, exp.Select):
        return set()
    return {i for i, e in enumerate(query.expressions)
            if isinstance(e.unalias(), exp.Literal) and e.unalias().is_string}


def _cell_scalar(v: Value, col: ColumnDef, frame: Frame) -> pa.Scalar:
    """One VALUES cell, evaluated and cast to its column's type."""
    value = v(frame)
    if not isinstance(value, pa.Scalar):
        value = value[0]
    if v.type != col.type and value.is_valid:
        value = V.cast(value, v.type if v.type.name != "unknown" else V.TEXT, col.type, 1)
    return value


def _run_insert(plan: WritePlan, ctx: ExecContext, txn: Transaction):
    table = plan.table
    d = table.def_
    source = plan.source
    produced = source.execute(ctx)
    if isinstance(produced, tuple):  # VALUES rows with DEFAULT markers
        cells, n_rows = produced
        given = {col.name: cells[str(i)] for i, col in enumerate(plan.target_cols)}
    else:
        n_rows = produced.num_rows
        visible = [i for i, f in enumerate(source.fields) if not f.hidden]
        given = {}
        for i, col in zip(visible, plan.target_cols):
            if col.name in plan.user_ignored:  # OVERRIDING USER VALUE: the default instead
                continue
            value = produced.column(i)
            src = source.types[i]
            if src != col.type:
                value = as_array(V.cast(value, src if src.name != "unknown" else V.TEXT, col.type,
                                        n_rows), n_rows)
            given[col.name] = value
    frame = Frame(table_of([], n_rows), ctx)
    arrays = []
    for col in d.columns:
        arrow = col.type.to_arrow()
        if col.name in given and not isinstance(given[col.name], list):
            arrays.append(given[col.name])
            continue
        default = plan.defaults[col.name]
        if col.name in given:
            cells = given[col.name]
            if any(v is _DEFAULT for v in cells):
                fill = _default_array(default, frame, n_rows, arrow, col)
                merged = [fill[i].as_py() if v is _DEFAULT else v for i, v in enumerate(cells)]
            else:
                merged = cells
            arrays.append(_array_for(merged, col))
        else:
            arrays.append(_default_array(default, frame, n_rows, arrow, col))
    rows = pa.Table.from_arrays([_chunk(a) for a in arrays], names=d.column_names)
    rows = table.coerce(rows)
    if plan.conflict is not None:
        rows, updated = plan.conflict.apply(ctx, txn, rows)
    else:
        updated = None
    with_ids = txn.insert(table, rows, rerun_after_wait=plan.conflict is not None)
    count = rows.num_rows
    returning = None
    if plan.returning is not None:
        parts = [with_ids] + ([updated] if updated is not None and updated.num_rows else [])
        out_rows = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        returning = eval_returning(plan, ctx, out_rows)
    if updated is not None:
        count += updated.num_rows
    return count, returning


class FastInsert:
    """A prepared `INSERT INTO t [(cols)] VALUES (one row)` (no ON CONFLICT): the row goes
    from the bound parameters to one Arrow batch in the table's schema, without the VALUES
    operator, the transaction buffer (in autocommit) or, for most parameters, Arrow at all.

    A bare parameter (`$n`) goes into its column as is when it needs no conversion: of the
    column's type (an integer in range, a float, a bool, bytes, a string without NUL, a finite
    vector of the column's dimensions) or NULL. A value that would need one makes `row`
    return None before anything with a side effect (DEFAULT nextval(...)) runs, and the
    statement takes the general path. Every other cell (a constant, an expression, a
    parameter of another type) is evaluated by the general path's own code, after the
    parameters are converted as the general path converts them; defaults last, in column
    order, as there. So the values, and the errors and their order, are the general path's."""

    def __init__(self, table: Table, columns: list[tuple], value_order: list[int],
                 cells: dict[int, Value]) -> None:
        self.table = table
        self.columns = columns  # per table column: (kind, column, arrow type, payload)
        self.value_order = value_order  # "cell" columns in the order VALUES lists them
        self.cells = cells  # per column given a parameter: its compiled cell
        self.n_params = 0
        self.typed = False  # whether some cell reads parameters converted to Arrow scalars
        self.all_params = False  # whether every column is a bare parameter (`op`)
        # Whether every column is a bare parameter or a constant default: its rows may be
        # given as `values` and built many at once (`batch_of`).
        self.takes_values = False
        # Per parameter column (in column order): its parameter's index and the converter of
        # a whole column of its values (`fast_column_converter`); None unless every column
        # has one and no sequence default is taken (`columns_of`).
        self.column_converters: list[tuple[int, Callable]] | None = None

    @classmethod
    def plan(cls, table: Table, source: _ValuesRows, defaults: dict) -> FastInsert:
        """Build the fast path for one table and VALUES row: constants converted once, parameters
        placed at execution."""
        row, indexes = source.rows[0], source.params[0]
        given = {col.name: (v, index) for col, v, index in zip(source.columns, row, indexes)}
        columns, cells = [], {}
        for i, col in enumerate(table.def_.columns):
            arrow = col.type.to_arrow()
            if col.name not in given:
                columns.append(("default", col, arrow, defaults[col.name]))
                continue
            if given[col.name][0] is None:  # DEFAULT in VALUES: as the general path fills it
                columns.append(("default_cell", col, arrow, defaults[col.name]))
                continue
            v, index = given[col.name]
            if index is not None:
                columns.append(("param", col, arrow, index))
                cells[i] = v
            else:
                columns.append(("cell", col, arrow, v))
        order = [i for name in (c.name for c in source.columns)
                 for i, c in enumerate(columns) if c[1].name == name]
        return cls(table, columns, order, cells)

    def bind(self, param_types: list[SqlType], returning: bool) -> None:
        """Choose each parameter's converter once the statement's parameter types are final;
        a parameter without one is evaluated as a cell. Parameters are converted to Arrow
        scalars first, as the general path converts them, whenever something reads them so
        (a cell, RETURNING) or one is not in a column of its own (its conversion may fail)."""
        self.n_params = len(param_types)
        columns = []
        for i, (kind, col, arrow, payload) in enumerate(self.columns):
            if kind == "param":
                conv = fast_converter(param_types[payload - 1], col.type)
                if conv is None:
                    columns.append(("cell", col, arrow, self.cells[i]))
                    continue
                columns.append(("param", col, arrow, (payload, conv)))
                continue
            columns.append((kind, col, arrow, payload))
        self.columns = columns
        self.value_order = [i for i in self.value_order if columns[i][0] == "cell"]
        direct = {c[3][0] for c in columns if c[0] == "param"}
        self.typed = returning or any(not columns[i][3].const for i in self.value_order) or \
            direct != set(range(1, len(param_types) + 1))
        self.all_params = not self.typed and all(c[0] == "param" for c in columns)
        # The columns whose default is a sequence's next value, by the sequence's name.
        self.sequences = {i: sequence_of(col) for i, (kind, col, _arrow, payload)
                          in enumerate(columns) if kind == "default" and payload is not None
                          and not payload.const and sequence_of(col) is not None}
        self.takes_values = not self.typed and all(
            kind == "param" or (kind == "default" and (
                payload is None or payload.const or i in self.sequences))
            for i, (kind, _col, _arrow, payload) in enumerate(columns))
        converters = [(payload[0], fast_column_converter(param_types[payload[0] - 1], col.type,
                                                         arrow))
                      for kind, col, arrow, payload in columns if kind == "param"]
        self.column_converters = converters if self.takes_values and not self.sequences \
            and all(convert is not None for _index, convert in converters) else None

    def op(self, params: list, context) -> InsertOp | None:
        """The row's insert: when every column is a bare parameter the row stays the Python
        values the converters gave (`Table.row_op`: no Arrow until something reads it),
        otherwise as `row` makes it; None when a parameter needs the general path."""
        if self.all_params and len(params) == self.n_params:
            values = self.values(params)
            if values is None:
                return None
            op = self.table.row_op(values)
            if op is not None:
                return op
        batch = self.row(params, context)
        return None if batch is None else InsertOp(self.table.id, batch)

    def values(self, params: list | tuple) -> list | None:
        """The parameter columns' values (in column order) as their converters give them;
        None when one needs the general path."""
        values = []
        for kind, _col, _arrow, payload in self.columns:
            if kind == "param":
                value = payload[1](params[payload[0] - 1])
                if value is _SLOW:
                    return None
                values.append(value)
        return values

    def batch_of(self, rows: list, context) -> pa.RecordBatch:
        """Many rows given as `values` followed by the values their sequence defaults took
        (`takes_values`), as one batch of the table's logical schema, NOT NULL checked (23502
        names the first failing row): each column built at once, a constant default
        evaluated once."""
        arrays: list = []
        at = 0
        for kind, _col, arrow, _payload in self.columns:
            if kind == "param":
                arrays.append(_converted_array([row[at] for row in rows], arrow))
                at += 1
        taken = {}
        for i in sorted(self.sequences):
            taken[i] = pa.array([row[at] for row in rows], self.columns[i][2])
            at += 1
        return self._completed(arrays, taken, len(rows), context)

    def columns_of(self, params: list) -> list[pa.Array] | None:
        """Many rows' parameters, each one's values decoded together (a NumPy array of
        numbers, a float32 matrix of vectors, an Arrow string array; the number of rows when
        all are NULL), converted as `values` converts them one by one: the parameter
        columns' arrays (in column order, for `columns_batch`), or None when a value needs
        the rows' own path (an integer out of the column's range, say)."""
        arrays = []
        for index, convert in self.column_converters or ():
            array = convert(params[index - 1])
            if array is None:
                return None
            arrays.append(array)
        return arrays

    def columns_batch(self, arrays: list[pa.Array], context) -> pa.RecordBatch:
        """`batch_of` for rows given column-wise (`columns_of`)."""
        return self._completed(list(arrays), {}, len(arrays[0]), context)

    def _completed(self, arrays: list, taken: dict[int, pa.Array], n: int,
                   context) -> pa.RecordBatch:
        """The batch of `n` rows from their parameter columns' arrays (in column order) and
        the sequence values they took (by column): the other defaults filled in."""
        for i, (kind, col, arrow, payload) in enumerate(self.columns):
            if kind == "param":
                continue
            if i in taken:
                arrays.insert(i, taken[i])
                continue
            if payload is None:
                arrays.append(pa.nulls(n, arrow))
            else:
                one = _default_array(payload, Frame(_ONE_NULL, context(False)), 1, arrow, col)
                arrays.insert(i, pa.repeat(one[0], n))
        return self.table.coerce_arrays(arrays)

    def row(self, params: list, context) -> pa.RecordBatch | None:
        """The row as a batch of the table's logical schema, NOT NULL checked; None when a
        parameter needs the general path. `context(typed)` gives the statement's ExecContext
        (`typed`: whether its parameters must be converted to Arrow scalars, as the general
        path converts them)."""
        if len(params) != self.n_params:
            return None
        columns = self.columns
        values: list = [None] * len(columns)
        for i, (kind, _col, _arrow, payload) in enumerate(columns):
            if kind == "param":
                value = payload[1](params[payload[0] - 1])
                if value is _SLOW:
                    return None
                values[i] = value
        if self.typed:
            context(True)  # the parameters' conversion errors come first, as in the general path
        arrays: list = [None] * len(columns)
        frame = None
        for i in self.value_order:
            if frame is None:
                frame = Frame(_ONE_NULL, context(self.typed))
            _kind, col, _arrow, v = columns[i]
            scalar = _cell_scalar(v, col, frame)
            arrays[i] = _array_for([scalar.as_py() if scalar.is_valid else None], col)
        known = [UNKNOWN] * len(columns)  # the Python values the commit may read keys from
        for i, (kind, col, arrow, payload) in enumerate(columns):
            if kind == "param":
                value = values[i]
                arrays[i] = _one_value(value, arrow) if value is not None else pa.nulls(1, arrow)
                if type(value) is not np.ndarray:
                    known[i] = value
            elif kind in ("default", "default_cell"):
                if payload is None:
                    arrays[i] = pa.nulls(1, arrow)
                    continue
                if frame is None:
                    frame = Frame(_ONE_NULL, context(self.typed))
                arrays[i] = _default_array(payload, frame, 1, arrow, col)
                if kind == "default_cell":  # through Python, as VALUES cells are
                    arrays[i] = _array_for([arrays[i][0].as_py()], col)
        return self.table.coerce_arrays(arrays, known)


_SLOW = object()  # a parameter the fast path does not convert
_INT_BOUNDS = {name: (-bound, bound - 1) for name, bound in V.INT_BOUND.items()}


def fast_converter(param: SqlType, column: SqlType):
    """A function giving a parameter's value as the column stores it, or `_SLOW` when the
    value needs the general path; None when no value of `param` can skip it."""
    if param.name in _INT_BOUNDS and column.name in _INT_BOUNDS:
        lo = max(_INT_BOUNDS[param.name][0], _INT_BOUNDS[column.name][0])
        hi = min(_INT_BOUNDS[param.name][1], _INT_BOUNDS[column.name][1])
        return lambda v: v if v is None or (type(v) is int and lo <= v <= hi) else _SLOW
    if param != column:
        return None
    name = param.name
    if name == "float8":
        return lambda v: v if v is None or type(v) is float else _SLOW
    if name == "bool":
        return lambda v: v if v is None or type(v) is bool else _SLOW
    if name == "bytea":
        return lambda v: v if v is None or type(v) is bytes else _SLOW
    if name in ("text", "varchar") and param.typmod < 0:
        return lambda v: v if v is None or (type(v) is str and "\0" not in v) else _SLOW
    if name == "vector" and param.typmod > 0:
        dims = param.typmod

        def vector(v):
            if v is None:
                return None
            if type(v) is np.ndarray and v.ndim == 1 and v.size == dims:
                if v.dtype == np.float32:
                    out = v
                elif v.dtype == np.float64:
                    with np.errstate(over="ignore"):  # too large: infinite, refused below
                        out = v.astype(np.float32)
                else:
                    return _SLOW
                if np.isfinite(out).all():
                    return out
            return _SLOW
        return vector
    return None


def fast_column_converter(param: SqlType, column: SqlType,
                          arrow: pa.DataType) -> Callable | None:
    """`fast_converter` for a whole column of one parameter's values decoded together (NumPy
    int64 or float64 numbers, a float32 matrix of vectors, an Arrow string array; the number
    of rows when every value is NULL): a function giving the column's Arrow array, or None
    when a value needs the rows' own path; None when no such column is converted here."""
    if fast_converter(param, column) is None:
        return None
    name = column.name
    if param.name in _INT_BOUNDS and name in _INT_BOUNDS:
        lo = max(_INT_BOUNDS[param.name][0], _INT_BOUNDS[name][0])
        hi = min(_INT_BOUNDS[param.name][1], _INT_BOUNDS[name][1])

        def integers(values):
            if type(values) is not np.ndarray or values.dtype != np.int64 or len(values) and (
                    values.min() < lo or values.max() > hi):
                return None
            return pa.array(values, arrow)
        return _sized(integers, arrow)
    if name == "float8":
        return _sized(lambda values: pa.array(values, arrow)
                      if type(values) is np.ndarray and values.dtype == np.float64 else None,
                      arrow)
    if name in ("text", "varchar"):
        return _sized(lambda values: values if isinstance(values, pa.StringArray) else None,
                      arrow)
    if name == "vector":
        dims = param.typmod

        def vectors(values):
            if type(values) is not np.ndarray or values.dtype != np.float32 \
                    or values.ndim != 2 or values.shape[1] != dims \
                    or not np.isfinite(values).all():
                return None
            return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), type=arrow)
        return _sized(vectors, arrow)
    return None


def _sized(convert: Callable, arrow: pa.DataType) -> Callable:
    """`convert`, with an all-NULL column (given as its number of rows) as nulls."""
    def column(values):
        if type(values) is int:  # all NULL: the number of rows
            return pa.nulls(values, arrow)
        return convert(values)
    return column


def _one_value(value, arrow: pa.DataType) -> pa.Array:
    """A one-row array of a value a fast converter accepted."""
    if type(value) is np.ndarray:
        return pa.FixedSizeListArray.from_arrays(pa.array(value), type=arrow)
    return one_value_array(value, arrow)


def sequence_of(col: ColumnDef) -> str | None:
    """The sequence whose next value is the column's default, if that is all it is."""
    found = NEXTVAL_CALL.fullmatch((col.default or "").strip())
    return None if found is None else found.group(1).replace("''", "'")


def _converted_array(values: list, arrow: pa.DataType) -> pa.Array:
    """An array of values fast converters accepted (vectors: float32 arrays, or None)."""
    if not pa.types.is_fixed_size_list(arrow):
        return pa.array(values, arrow)
    nulls = [v is None for v in values]
    if any(nulls):
        zeros = np.zeros(arrow.list_size, np.float32)
        values = [zeros if v is None else v for v in values]
    flat = np.concatenate(values) if values else np.empty(0, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), type=arrow,
                                             mask=pa.array(nulls) if any(nulls) else None)


def _chunk(a):
    return a if isinstance(a, (pa.Array, pa.ChunkedArray)) else pa.array(a)


def _array_for(values: list, col: ColumnDef) -> pa.Array:
    arrow = col.type.to_arrow()
    try:
        return pa.array(values, arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return cast_column(pa.array(values), col).combine_chunks()


def _default_array(default: Value | None, frame: Frame, n_rows: int, arrow, col: ColumnDef):
    if default is None:
        return pa.nulls(n_rows, arrow)
    value = default(frame)
    arr = as_array(value, n_rows)
    if arr.type != arrow:
        arr = arr.cast(arrow)
    return arr


# ON CONFLICT ---------------------------------------------------------------------------------------


@dataclass
class ConflictPlan:
    """ON CONFLICT DO NOTHING / DO UPDATE against one of the table's unique keys."""

    table: Table
    action: str  # nothing | update
    sets: list[tuple[str, Value]] | None
    where: Value | None
    key: tuple[str, ...]
    key_index: int = 0  # which of the table's unique keys

    def apply(self, ctx: ExecContext, txn: Transaction, rows: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        """Split incoming rows into new rows and conflicts; resolve the conflicts."""
        keys = self.table.key_values(rows, self.key_index)
        existing, snapshot = self._existing(txn, rows)
        valid = self.table.keys[self.key_index].valid(rows)
        seen: set = set()
        fresh, conflicts, conflict_rowids = [], [], []
        for i, (key, holder) in enumerate(zip(keys.tolist(), existing.tolist())):
            if valid is not None and not valid[i]:
                fresh.append(i)  # a NULL in the key conflicts with nothing
                continue
            if holder != MISSING:
                if key in seen and self.action == "update":
                    raise SqlVecError("ON CONFLICT DO UPDATE command cannot affect row a second time",
                                      sqlstate="21000",
                                      hint="Ensure that no rows proposed for insertion within the "
                                           "same command have duplicate constrained values.")
                conflicts.append(i)
                conflict_rowids.append(holder)
            elif key in seen:
                if self.action == "update":
                    raise SqlVecError("ON CONFLICT DO UPDATE command cannot affect row a second time",
                                      sqlstate="21000")
                conflicts.append(i)
                conflict_rowids.append(None)
            else:
                fresh.append(i)
            seen.add(key)
        new_rows = rows.take(pa.array(fresh, pa.int64()))
        if self.action == "nothing" or not conflicts:
            return new_rows, None
        pairs = [(i, r) for i, r in zip(conflicts, conflict_rowids) if r is not None]
        old = self._rows_by_id(snapshot, txn, [r for _, r in pairs])
        excluded = rows.take(pa.array([i for i, _ in pairs], pa.int64()))
        d = self.table.def_
        width = len(d.columns)
        combined = table_of(
            [old.column(i) for i in range(width)] + [old.column(ROWID)]
            + [excluded.column(i) for i in range(width)])
        frame = Frame(combined, ctx)
        if self.where is not None:
            keep = pc.fill_null(as_array(self.where(frame), combined.num_rows), False)
            combined = combined.filter(keep)
            old = old.filter(keep)
            frame = Frame(combined, ctx)
        new_cols = []
        assigned = dict(self.sets or [])
        for i, col in enumerate(d.columns):
            if col.name in assigned:
                v = assigned[col.name]
                value = as_array(v(frame), combined.num_rows)
                if v.type != col.type:
                    value = as_array(V.cast(value, v.type if v.type.name != "unknown" else V.TEXT,
                                            col.type, combined.num_rows), combined.num_rows)
                new_cols.append(value)
            else:
                new_cols.append(combined.column(i))
        updated = pa.Table.from_arrays([_chunk(c) for c in new_cols], names=d.column_names)
        updated = self.table.coerce(updated)
        # Locked FOR NO KEY UPDATE unless SET assigns a key column (PostgreSQL's choice here).
        txn.delete(self.table, old.column(ROWID).to_numpy(),
                   keys_kept=not key_columns(d).intersection(assigned))
        updated_ids = txn.insert(self.table, updated)
        return new_rows, updated_ids

    def _existing(self, txn: Transaction, rows: pa.Table):
        """Per incoming row, the row id already holding its key (MISSING: none), and the
        snapshot the committed ones were found in. As PostgreSQL, against the latest committed
        state rather than the statement's snapshot, after waiting for commits in flight that
        claim these keys; the transaction's own writes count over committed rows."""
        snapshot, held = self.table.lookup_keys(rows, self.key_index, wait=IN_FLIGHT_WAIT)
        overlay = txn.table_overlay(self.table.id)
        if overlay is None:
            return held, snapshot
        if overlay.truncated:
            held[:] = MISSING
        elif overlay.deleted:
            gone = np.fromiter((r in overlay.deleted for r in held.tolist()), bool, held.size)
            held[gone] = MISSING
        own = overlay.own_keys(self.key_index).lookup(self.table.key_values(rows, self.key_index))
        valid = self.table.keys[self.key_index].valid(rows)
        if valid is not None:
            own[~valid] = MISSING
        return np.where(own != MISSING, own, held), snapshot

    def _rows_by_id(self, snapshot, txn: Transaction, rowids: list[int]) -> pa.Table:
        ids = np.asarray(rowids, dtype=np.int64)
        parts = [snapshot.rows_by_id(ids[ids >= 0])]
        overlay = txn.table_overlay(self.table.id)
        ins = overlay.inserted_table() if overlay is not None else None
        if ins is not None and (ids < 0).any():
            own = ins.filter(pc.is_in(ins.column(ROWID), value_set=pa.array(ids[ids < 0])))
            parts.append(own.cast(parts[0].schema))
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        order = {r: i for i, r in enumerate(table.column(ROWID).to_pylist())}
        return table.take(pa.array([order[r] for r in rowids], pa.int64()))


class AnyKeyConflict:
    """ON CONFLICT DO NOTHING without a conflict target: rows conflicting on any unique key
    of the table are skipped."""

    def __init__(self, plans: list[ConflictPlan]) -> None:
        self.plans = plans

    def apply(self, ctx: ExecContext, txn: Transaction,
              rows: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        """The rows that conflict on none of the keys (nothing is updated)."""
        for plan in self.plans:
            rows, _ = plan.apply(ctx, txn, rows)
        return rows, None


# Seconds an ON CONFLICT statement waits for commits in flight that claim its keys.
IN_FLIGHT_WAIT = 2.0


def _refuse_deferrable(d: TableDef, key: KeyDef) -> None:
    """PostgreSQL's 55000 for a DEFERRABLE key as ON CONFLICT's arbiter."""
    if key.deferrable:
        raise SqlVecError("ON CONFLICT does not support deferrable unique constraints/exclusion "
                          "constraints as arbiters", sqlstate="55000", schema=d.schema,
                          table=d.name, constraint=key.name)


def _plan_conflict(conflict: exp.OnConflict | None, table: Table, alias: str, planner: Planner,
                   builder: Builder) -> ConflictPlan | None:
    if conflict is None:
        return None
    d = table.def_
    keys = tuple(k.name for k in (conflict.args.get("conflict_keys") or []))
    action = conflict.args.get("action")
    nothing = action is not None and \
        "NOTHING" in str(action.this if hasattr(action, "this") else action).upper()
    named = conflict.args.get("constraint")
    if named is not None:
        index = next((i for i, k in enumerate(d.unique_keys) if k.name == named.name), None)
        if index is None:
            if d.constraint(named.name) is not None:  # a CHECK (or foreign key)
                raise SqlVecError("constraint in ON CONFLICT clause has no associated index",
                                  sqlstate="42809")
            raise UndefinedObject(f'constraint "{named.name}" for table "{d.name}" does not '
                                  "exist")
        keys = d.unique_keys[index].columns
    elif not keys:
        if nothing:  # DO NOTHING without a target: a conflict on any unique key
            if not d.unique_keys:
                return None
            for k in d.unique_keys:
                _refuse_deferrable(d, k)
            return AnyKeyConflict([ConflictPlan(table, "nothing", None, None, k.columns, i)
                                   for i, k in enumerate(d.unique_keys)])
        raise SqlVecError("ON CONFLICT DO UPDATE requires inference specification or "
                          "constraint name", sqlstate="42601",
                          hint="For example, ON CONFLICT (column_name).")
    else:
        # As PostgreSQL infers the constraint: a key whose columns are the target's, in any
        # order.
        index = next((i for i, k in enumerate(d.unique_keys) if set(k.columns) == set(keys)),
                     None)
        if index is None:
            raise SqlVecError("there is no unique or exclusion constraint matching the ON "
                              "CONFLICT specification", sqlstate="42P10")
        keys = d.unique_keys[index].columns
    _refuse_deferrable(d, d.unique_keys[index])
    if nothing:
        return ConflictPlan(table, "nothing", None, None, keys, index)
    fields = _table_fields(table, alias) + [
        Field(c.name, "excluded", c.type) for c in d.columns]
    scope = Scope(fields)
    c = write_compiler(scope, [f.type for f in fields], builder)
    sets = []
    for target, value in set_items(conflict.expressions,
                                   lambda query: planner.row_subquery_cells(query, scope)):
        name = target.name
        if not d.has_column(name):
            raise UndefinedColumn(f'column "{name}" of relation "{d.name}" does not exist')
        _refuse_identity_update(d.column(name), value)
        bound = bound_write(planner, value, scope)
        sets.append((name, _assign(c, bound, d.column(name))))
    where = conflict.args.get("where")
    where_v = c.compile_as(bound_write(planner, where.this, scope), BOOL) \
        if where is not None else None
    return ConflictPlan(table, "update", sets, where_v, keys, index)


# UPDATE and DELETE --------------------------------------------------------------------------------


def _source_plan(stmt: exp.Expression, planner: Planner, table: Table, alias: str,
                 extra_from: list[exp.Expression]) -> tuple[n.PlanNode, Scope]:
    """The rows an UPDATE or DELETE reads: the target's (its columns, then its row id)
    joined with the items of FROM / USING (each with the joins written after it), filtered
    by WHERE."""
    scan = planner._plan_table(exp.Table(this=exp.to_identifier(table.def_.name),
                                         db=exp.to_identifier(table.def_.schema)), alias, [])
    node: n.PlanNode = scan
    for item in extra_from:
        right = planner._plan_from_item(item, None)
        for join in item.args.get("joins") or []:
            right = planner._plan_join(right, join, None)
        node = n.Join(tuple(node.fields) + tuple(right.fields), left=node, right=right, kind="cross")
    scope = Scope(list(node.fields))
    where = stmt.args.get("where")
    if where is not None:
        node = n.Filter(node.fields, child=node, predicate=planner._expr(where.this, scope))
    return node, scope


def plan_update(stmt: exp.Update, planner: Planner, builder: Builder) -> WritePlan:
    """Compile UPDATE, with FROM joined in: the source plan yields each target row's rowid with its
    new values."""
    refuse_writing_with(stmt)
    table, alias = _target(planner, stmt.this)
    d = table.def_
    from_ = stmt.args.get("from_") or stmt.args.get("from")
    extra = [from_.this] + [j.this for j in from_.args.get("joins") or []] if from_ is not None else []
    node, scope = _source_plan(stmt, planner, table, alias, extra)
    assigned: dict[str, exp.Expression] = {}
    for target, value in set_items(stmt.expressions,
                                   lambda query: planner.row_subquery_cells(query, scope)):
        name = target.name
        if name in SYSTEM_COLUMNS and not d.has_column(name):
            raise FeatureNotSupported(f'cannot assign to system column "{name}"')
        if not d.has_column(name):
            raise UndefinedColumn(f'column "{name}" of relation "{d.name}" does not exist')
        _refuse_identity_update(d.column(name), value)
        assigned[name] = value if _is_default(value) else planner._expr(value, scope)
    source = builder.build(bind_plan(optimize(node)))
    # SET reads the source's rows (the target's columns, then FROM's): bound against them.
    rows = Scope(list(source.fields))
    c = write_compiler(rows, source.types, builder)
    new_values = []
    for col in d.columns:
        if col.name in assigned:
            expr = assigned[col.name]
            if _is_default(expr):
                new_values.append(default_value(col, builder))
            else:
                new_values.append(_assign(c, bind_expr(expr, rows), col))
        else:
            new_values.append(c.compile(_column(rows, col.name, alias)))
    rowid = c.compile(_column(rows, ROWID, alias))
    # RETURNING reads the new rows, then the FROM items' columns of the rows they came from.
    fields = _table_fields(table, alias)
    returning, returning_fields = _returning(builder, planner, stmt, fields, written=True,
                                             joined=source)
    plan = WritePlan("UPDATE", table, source, returning, returning_fields, _run_update)
    plan.new_values = new_values  # type: ignore[attr-defined]
    plan.rowid = rowid  # type: ignore[attr-defined]
    # Unique keys not DEFERRABLE whose columns the UPDATE assigns: checked row by row.
    plan.row_checked = [i for i, k in enumerate(d.unique_keys)  # type: ignore[attr-defined]
                        if not k.deferrable and not set(k.columns).isdisjoint(assigned)]
    # The unique keys' columns SET assigns, with their old values: compared with the new ones
    # to lock each row FOR NO KEY UPDATE or FOR UPDATE (`keys_kept`).
    plan.old_keys = [(i, c.compile(_column(rows, col.name, alias)))  # type: ignore[attr-defined]
                     for i, col in enumerate(d.columns)
                     if col.name in assigned and col.name in key_columns(d)]
    plan.by_key = KeyWrite.of(plan)
    if plan.by_key is not None:
        plan.by_key.scalar = ScalarKeyWrite.of(plan, stmt, alias, assigned)
    return plan


def key_columns(d: TableDef) -> set[str]:
    """The columns of the table's unique keys (primary key included): an UPDATE changing one
    locks its row FOR UPDATE, any other FOR NO KEY UPDATE."""
    return {c for k in d.unique_keys for c in k.columns}


def keys_kept(plan: WritePlan, ctx: ExecContext, rows: pa.Table, keep: np.ndarray,
              new_rows: pa.Table) -> np.ndarray | bool:
    """Per row UPDATE writes, whether its new version has the old one's unique-key values
    (NULL equal to NULL, as PostgreSQL compares them); True when SET assigns no key column."""
    old_keys = plan.old_keys  # type: ignore[attr-defined]
    if not old_keys:
        return True
    frame = Frame(rows, ctx)
    kept = np.ones(keep.size, bool)
    for i, old in old_keys:
        before = _chunk(as_array(old(frame), rows.num_rows))
        if keep.size != rows.num_rows:
            before = before.take(pa.array(keep))
        after = new_rows.column(i)
        same = pc.fill_null(pg_compare("equal", before, after), False)
        both_null = pc.and_(pc.is_null(before), pc.is_null(after))
        kept &= pc.or_(same, both_null).to_numpy(zero_copy_only=False)
    return kept


def _run_update(plan: WritePlan, ctx: ExecContext, txn: Transaction):
    table = plan.table
    rows = plan.source.execute(ctx)
    new_rows, unique_ids, keep = _updated(plan, ctx, rows)
    if plan.row_checked:  # type: ignore[attr-defined]
        txn.check_update_order(table, plan.row_checked, unique_ids,  # type: ignore[attr-defined]
                               new_rows)
    kept = keys_kept(plan, ctx, rows, keep, new_rows) if txn.locks is not None else False
    txn.delete(table, unique_ids, kept)
    with_ids = txn.insert(table, new_rows)
    returning = None
    if plan.returning is not None:
        # The FROM items' columns (after the target's and its row id) of each row updated.
        joined = [rows.column(i) for i in range(len(table.def_.columns) + 1, rows.num_columns)]
        if keep.size != rows.num_rows:
            joined = [c.take(pa.array(keep)) for c in joined]
        returning = eval_returning(plan, ctx, table_of(list(with_ids.columns) + joined))
    return new_rows.num_rows, returning


def _updated(plan: WritePlan, ctx: ExecContext, rows: pa.Table,
             batch: bool = False) -> tuple[pa.Table | pa.RecordBatch, np.ndarray, np.ndarray]:
    """The new versions of the rows UPDATE read (each row once), their row ids, and the
    positions in `rows` they come from; with `batch`, as one record batch (what a commit
    takes without conversion)."""
    table = plan.table
    d = table.def_
    frame = Frame(rows, ctx)
    rowids = as_array(plan.rowid(frame), rows.num_rows)
    rowids = rowids.combine_chunks() if isinstance(rowids, pa.ChunkedArray) else rowids
    ids = rowids.to_numpy()
    if ids.size > 1:
        _, first = np.unique(ids, return_index=True)
        keep = np.sort(first)
    else:
        keep = np.arange(ids.size)
    columns = []
    for col, v in zip(d.columns, plan.new_values):
        if v is None:
            value = pa.nulls(rows.num_rows, col.type.to_arrow())
        else:
            value = as_array(v(frame), rows.num_rows)
            if v.type != col.type:
                value = as_array(V.cast(value, v.type if v.type.name != "unknown" else V.TEXT,
                                        col.type, rows.num_rows), rows.num_rows)
        value = _chunk(value)
        columns.append(value if keep.size == rows.num_rows else value.take(pa.array(keep)))
    if batch:  # the same casts and NOT NULL checks as `coerce`, column by column
        return table.coerce_arrays(columns), ids[keep], keep
    new_rows = pa.Table.from_arrays(columns, names=d.column_names)
    return table.coerce(new_rows), ids[keep], keep


class KeyWrite:
    """A prepared `UPDATE t SET ... WHERE key = $1` or `DELETE FROM t WHERE key = $1` (one
    value of a one-column integer or text key, nothing else in WHERE, no FROM / USING, no
    RETURNING) run in autocommit: the row is found through the key's index as the scan would
    find it, the new version is computed by the statement's own compiled expressions, and the
    delete (and insert) are committed directly, without a scan operator or a transaction
    buffer (the commit checks keys and concurrent changes, as it does for every statement)."""

    def __init__(self, plan: WritePlan) -> None:
        self.plan = plan
        self.scan = plan.source
        # The same statement over Python values, when its SET is that simple (or None).
        self.scalar: ScalarKeyWrite | None = None

    @classmethod
    def of(cls, plan: WritePlan) -> KeyWrite | None:
        """The key-lookup form of a write plan, or None when the statement does not qualify (then
        the general path runs)."""
        scan = plan.source
        if plan.returning is not None or type(scan) is not ScanOp or scan.key is None or \
                scan.key_filter is not None or len(scan.key_values) != 1 or \
                len(scan.key_types) != 1 or scan.key_types[0].name not in SIMPLE_KEYS:
            return None
        return cls(plan)

    def ops(self, ctx: ExecContext) -> list:
        """The storage ops of the statement (empty when no row holds the key)."""
        ctx.check_interrupts()
        _snapshot, parts = self.scan._by_key(ctx, None)
        table = self.plan.table
        width = len(self.scan.fields) - 1
        if parts:
            found = parts[0]
            # The row as the scan yields it: the table's columns, then the row id (already in
            # that order when the scan reads every column; expressions read them by position).
            rows = found if found.num_columns == width + 1 else \
                table_of([found.column(i) for i in range(width)] + [found.column(ROWID)])
        elif self.plan.kind == "DELETE":
            return []
        else:  # SET is evaluated over no rows all the same, as the general path does
            rows = table_of([pa.array([], (t or V.TEXT).to_arrow()) for t in self.scan.types])
        if self.plan.kind == "DELETE":
            return [DeleteOp(table.id, rows.column(width).to_numpy())]
        new_rows, ids, _keep = _updated(self.plan, ctx, rows, batch=True)
        if not ids.size:
            return []
        return [DeleteOp(table.id, ids), InsertOp(table.id, new_rows)]


class ScalarKeyWrite:
    """`KeyWrite` for the simplest statements, over Python values: `WHERE key = $n` with an
    integer or text parameter, and SET (UPDATE) assigning parameters, columns and integer
    sums, differences and products of columns, parameters and integer constants. The
    parameters are read as the wire decoded them, the row is located through the key's
    index, only the columns SET reads become Python values (the others are sliced as Arrow
    arrays), and the new row is one batch in the table's schema: no parameter conversion to
    Arrow, no scan operator, no expression evaluation over a one-row table.

    Every value it cannot take as is (a parameter of another Python type, NULL as the key,
    a result out of its type's or its column's range) makes `ops` return None before
    anything happened, and the statement takes `KeyWrite` (the general path's own
    expressions, hence its errors). `bind` decides once the parameter types are known."""

    def __init__(self, plan: WritePlan, key_param: int, assigns: dict[int, tuple]) -> None:
        self.plan = plan
        self.key_param = key_param  # n of the `$n` compared with the key
        self.assigns = assigns  # table column position -> form of its new value (see `of`)
        self.ready = False  # bound: the parameters' types allow this path
        self.key_check = None  # the key parameter's Python value as the index holds it
        self.steps: list[tuple] = []  # per column: how its new value is made
        key_columns = plan.table.keys[plan.source.key].def_.columns
        self.key_name = key_columns[0] if len(key_columns) == 1 else None

    @classmethod
    def of(cls, plan: WritePlan, stmt: exp.Expression, alias: str,
           assigned: dict[str, exp.Expression]) -> ScalarKeyWrite | None:
        """The statement's scalar form, or None when its WHERE or SET is not that simple."""
        where = stmt.args.get("where")
        if where is None or not isinstance(where.this, exp.EQ) or \
                stmt.args.get("returning") is not None:
            return None
        d = plan.table.def_
        scan = plan.source
        key_col = plan.table.keys[scan.key].def_.columns[0]
        left, right = where.this.this, where.this.expression
        if isinstance(left, exp.Parameter):
            left, right = right, left
        if not isinstance(right, exp.Parameter) or _column_of(left, d, alias) != \
                _column_of(exp.column(key_col, quoted=True), d, alias):
            return None
        assigns: dict[int, tuple] = {}
        for name, e in assigned.items():
            form = _scalar_form(e, d, alias)
            if form is None:
                return None
            assigns[_column_of(exp.column(name, quoted=True), d, alias)] = form
        return cls(plan, param_index(right), assigns)

    def bind(self, param_types: list[SqlType]) -> None:
        """Fix how each value is made from the parameter types; `ready` stays False when some
        value always needs the general path."""
        self.ready = False
        table = self.plan.table
        d = table.def_
        key_type = table.def_.column(table.keys[self.plan.source.key].def_.columns[0]).type
        ptype = param_types[self.key_param - 1]
        if key_type.name in _INT_BOUNDS and ptype.name in _INT_BOUNDS:
            lo = max(_INT_BOUNDS[key_type.name][0], _INT_BOUNDS[ptype.name][0])
            hi = min(_INT_BOUNDS[key_type.name][1], _INT_BOUNDS[ptype.name][1])
            # (bounds bound now: the SET steps below reuse the names lo and hi)
            self.key_check = lambda v, lo=lo, hi=hi: \
                v if type(v) is int and lo <= v <= hi else _SLOW
        elif key_type.name in ("text", "varchar") and ptype.name in ("text", "varchar") and \
                ptype.typmod < 0:
            self.key_check = lambda v: v if type(v) is str and "\0" not in v else _SLOW
        else:
            return
        steps = []
        new_values = getattr(self.plan, "new_values", None)
        for i, col in enumerate(d.columns):
            form = self.assigns.get(i)
            arrow = col.type.to_arrow()
            if form is None or (form[0] == "col" and d.columns[form[1]].type == col.type):
                source = i if form is None else form[1]
                steps.append(("copy", d.columns[source], arrow, None))
            elif form[0] == "param":
                conv = fast_converter(param_types[form[1] - 1], col.type)
                if conv is None:
                    return
                steps.append(("param", col, arrow, (form[1], conv)))
            elif form[0] == "arith":
                value_type = new_values[i].type if new_values is not None else None
                if value_type is None or value_type.name not in _INT_BOUNDS or \
                        col.type.name not in _INT_BOUNDS:
                    return
                operands = []
                for kind, payload in form[2]:
                    if kind == "col":
                        source = d.columns[payload]
                        if source.type.name not in _INT_BOUNDS:
                            return
                        operands.append(("col", source))
                    elif kind == "param":
                        t = param_types[payload - 1]
                        if t.name not in _INT_BOUNDS:
                            return
                        operands.append(("param", (payload, _INT_BOUNDS[t.name])))
                    else:
                        operands.append(("const", payload))
                lo = max(_INT_BOUNDS[value_type.name][0], _INT_BOUNDS[col.type.name][0])
                hi = min(_INT_BOUNDS[value_type.name][1], _INT_BOUNDS[col.type.name][1])
                steps.append(("arith", col, arrow, (_INT_OPS[form[1]], operands, lo, hi)))
            else:
                return
        self.steps = steps
        self.ready = True

    def inputs(self, params: list) -> tuple[object, list] | None:
        """The key value as the index holds it and, per column, the value a parameter gives
        it (None where the row gives it); None when a value needs the general path."""
        key = self.key_check(params[self.key_param - 1])  # type: ignore[misc]
        if key is _SLOW:
            return None
        values: list = []
        for kind, _col, _arrow, payload in self.steps:
            value = None
            if kind == "param":
                value = payload[1](params[payload[0] - 1])
                if value is _SLOW:
                    return None
            elif kind == "arith":
                for operand, info in payload[1]:
                    if operand == "param":
                        v = params[info[0] - 1]
                        if v is not None and (type(v) is not int or
                                              not info[1][0] <= v <= info[1][1]):
                            return None
            values.append(value)
        return key, values

    def ops(self, table: Table, params: list) -> list | None:
        """The storage ops of the statement ([] when no row holds the key), or None when a
        value needs the general path. `table`: the table as it is now."""
        inputs = self.inputs(params)
        if inputs is None:
            return None
        key, values = inputs
        rowid, data, position = table.row_of_key(key, self.plan.source.key)
        if rowid == MISSING:
            return []
        if data is None:  # (the index and the rows disagree: the general path's answer)
            return None
        rowids = np.array([rowid], np.int64)
        if self.plan.kind == "DELETE":
            return [DeleteOp(table.id, rowids)]
        if table.rows_as_values:
            row = []
            for (kind, col, _arrow, payload), value in zip(self.steps, values):
                if kind == "copy":
                    row.append(key if col.name == self.key_name else
                               data.value(col.physical, col.arrow, col.missing_value, position))
                    continue
                if kind == "arith":
                    value = _arith(payload, data, position, params)
                    if value is _SLOW:
                        return None
                row.append(value)
            op = table.row_op(row)
            if op is not None:
                return [DeleteOp(table.id, rowids), op]
        batch = self.new_row(table, (key, values), data, position, params)
        if batch is None:
            return None
        return [DeleteOp(table.id, rowids), InsertOp(table.id, batch)]

    def new_row(self, table: Table, inputs: tuple[object, list], data, position: int,
                params: list) -> pa.RecordBatch | None:
        """The new version of the row at `position` of `data` (segment data, or anything
        reading a row so: `value`, `column`) as one batch in the table's schema; None when a
        value falls outside its column's range (the general path's error)."""
        key, values = inputs
        growing = isinstance(data, GrowingData)
        arrays: list = []
        known: list = []  # the Python values the commit may read keys from
        for (kind, col, arrow, payload), value in zip(self.steps, values):
            if kind == "copy":
                if col.name == self.key_name:  # the key it was found by: known already
                    arrays.append(one_value_array(key, arrow))
                    known.append(key)
                    continue
                arrays.append(
                    data.column_slice(col.physical, arrow, col.missing_value, position, 1)
                    if growing else
                    data.column(col.physical, arrow, col.missing_value).slice(position, 1))
                known.append(UNKNOWN)
                continue
            if kind == "arith":
                value = _arith(payload, data, position, params)
                if value is _SLOW:
                    return None
            arrays.append(pa.nulls(1, arrow) if value is None else _one_value(value, arrow))
            known.append(value if type(value) is not np.ndarray else UNKNOWN)
        return table.coerce_arrays(arrays, known)

    def keeps_keys(self, table: Table, data, position: int, new: pa.RecordBatch) -> bool | None:
        """Whether the new version holds the old row's value of every unique-key column SET
        assigns (NULL equal to NULL, as `keys_kept`): the row is then locked FOR NO KEY
        UPDATE, else FOR UPDATE. None when a value does not compare as a Python value."""
        for i, _old in self.plan.old_keys:  # type: ignore[attr-defined]
            same = value_at(data, table.def_.columns[i], position) == new.column(i)[0].as_py()
            if type(same) is not bool:
                return None
            if not same:
                return False
        return True


def _arith(payload: tuple, data, position: int, params: list) -> object:
    """A `ScalarKeyWrite` SET value of integer arithmetic over the row at `position` of
    `data`: the value, None (NULL), or `_SLOW` when it falls outside its column's range."""
    op, operands, lo, hi = payload
    args = []
    for operand, info in operands:
        if operand == "col":
            args.append(data.value(info.physical, info.arrow, info.missing_value, position))
        elif operand == "param":
            args.append(params[info[0] - 1])
        else:
            args.append(info)
    value = None if None in args else op(args[0], args[1])
    return _SLOW if value is not None and not lo <= value <= hi else value


_INT_OPS = {exp.Add: int.__add__, exp.Sub: int.__sub__, exp.Mul: int.__mul__}


def _column_of(e: exp.Expression, d, alias: str) -> int | None:
    """The position of the target table's column that `e` names, or None: an unquoted name
    as PostgreSQL folds it, unqualified or qualified by the table's name or alias."""
    if not isinstance(e, exp.Column) or not isinstance(e.this, exp.Identifier) or \
            e.args.get("db") or e.args.get("catalog"):
        return None
    qualifier = e.args.get("table")
    if qualifier is not None:
        q = qualifier.name if qualifier.quoted else qualifier.name.lower()
        if q not in (alias, d.name):
            return None
    name = e.this.name if e.this.quoted else e.this.name.lower()
    return next((i for i, c in enumerate(d.columns) if c.name == name), None)


def _scalar_form(e: exp.Expression, d, alias: str) -> tuple | None:
    """A SET value `ScalarKeyWrite` computes: ("param", n), ("col", position), or
    ("arith", operator class, [two operands: ("col", position), ("param", n) or
    ("const", int)]); None for anything else."""
    if isinstance(e, exp.Parameter):
        return ("param", param_index(e))
    if _is_default(e):
        return None
    position = _column_of(e, d, alias)
    if position is not None:
        return ("col", position)
    if type(e) in _INT_OPS:
        operands = []
        for side in (e.this, e.expression):
            if isinstance(side, exp.Parameter):
                operands.append(("param", param_index(side)))
            elif isinstance(side, exp.Literal) and not side.is_string and \
                    side.this.isdigit() and int(side.this) < 1 << 31:
                operands.append(("const", int(side.this)))
            elif _column_of(side, d, alias) is not None:
                operands.append(("col", _column_of(side, d, alias)))
            else:
                return None
        return ("arith", type(e), operands)
    return None


def plan_delete(stmt: exp.Delete, planner: Planner, builder: Builder) -> WritePlan:
    """Compile DELETE, with USING joined in: the source plan yields the rowids to delete."""
    refuse_writing_with(stmt)
    table, alias = _target(planner, stmt.this)
    extra = list(stmt.args.get("using") or [])
    node, _scope = _source_plan(stmt, planner, table, alias, extra)
    source = builder.build(bind_plan(optimize(node)))
    width = len(table.def_.columns) + 1
    # RETURNING reads the deleted rows, then the USING items' columns of the rows they met.
    fields = _table_fields(table, alias)
    returning, returning_fields = _returning(builder, planner, stmt, fields, joined=source)
    plan = WritePlan("DELETE", table, source, returning, returning_fields, _run_delete)
    plan.width = width  # type: ignore[attr-defined]
    plan.by_key = KeyWrite.of(plan)
    if plan.by_key is not None:
        plan.by_key.scalar = ScalarKeyWrite.of(plan, stmt, alias, {})
    return plan


def _run_delete(plan: WritePlan, ctx: ExecContext, txn: Transaction):
    rows = plan.source.execute(ctx)
    width = plan.width
    ids = rows.column(width - 1).to_numpy()
    if ids.size > 1:
        _, first = np.unique(ids, return_index=True)
        keep = np.sort(first)
        rows = rows.take(pa.array(keep))
        ids = ids[keep]
    txn.delete(plan.table, ids)
    returning = None
    if plan.returning is not None:
        returning = eval_returning(plan, ctx, rows)
    return int(ids.size), returning


__all__ = ["plan_insert", "plan_update", "plan_delete", "WritePlan", "FastInsert", "KeyWrite", "ScalarKeyWrite",
           "eval_returning", "FeatureNotSupported"]
