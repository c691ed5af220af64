"""ALTER TABLE as migration tools emit it, and ALTER INDEX / ALTER SEQUENCE.

Every action of one ALTER TABLE statement is checked against a working copy of the table's
definition (`_Work`), in order, before anything is written; the result is then committed as
one manifest version, with the catalog changes that go with it (comments, owned sequences):
all or nothing, as PostgreSQL's ALTER TABLE. When a column changes type, or a column added
with a volatile default (`serial`, `DEFAULT nextval(...)`) needs a value per existing row, the
commit is a table rewrite (`Store.rewrite_table`): every live row goes through the compiled
expressions, vectorised over Arrow batches, into new segments. Constraint actions (ADD /
DROP CONSTRAINT) are not handled here: they go, after this statement's own actions, to the
handler `fallback` names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlvec.catalog.catalog import Catalog
from sqlvec.catalog.sequences import SequenceOptions
from sqlvec.errors import (
    DatatypeMismatch,
    DuplicateTable,
    FeatureNotSupported,
    Notice,
    NotNullViolation,
    SerializationFailure,
    SqlVecError,
    UndefinedColumn,
    UndefinedObject,
    UndefinedTable,
)
from sqlvec.execution import constraint_ddl, sequence_ddl
from sqlvec.execution import values as V
from sqlvec.execution.builder import Builder
from sqlvec.execution.constraints import ROW_CHECKS, compile_check
from sqlvec.execution.context import ExecContext
from sqlvec.execution.ddl import check_column_name, column_def, gin_opclass
from sqlvec.execution.dml import bound_write, default_value, write_compiler
from sqlvec.execution.expressions import Frame
from sqlvec.execution.kernels import table_of
from sqlvec.execution.transaction import TableOverlay, Transaction
from sqlvec.execution.values import Value, as_array
from sqlvec.plan.bind import bind_expr
from sqlvec.plan.planner import Planner
from sqlvec.sql import index_expressions as ixexpr
from sqlvec.sql.binder import SYSTEM_COLUMNS, Field, Scope, serial_kind, sql_type
from sqlvec.sql.dialect import to_sql
from sqlvec.storage import access_methods
from sqlvec.storage.schema import ROWID, ColumnDef, TableDef
from sqlvec.storage.table import Table, cast_column
from sqlvec.types import SqlType

PG_CLASS = 1259  # pg_description.classoid of tables, indexes and sequences

# Defaults evaluated per row when a column is added to existing rows (PostgreSQL: volatile).
_VOLATILE = re.compile(r"\b(nextval|random|gen_random_uuid|uuid_generate_v4|clock_timestamp|"
                       r"timeofday|setseed)\s*\(", re.I)


@dataclass
class AlterTools:
    """What ALTER needs from the session: names, compilers and an execution context."""

    catalog: Catalog
    search_path: list[str]
    planner: Callable[[], Planner]
    builder: Callable[[], Builder]
    context: Callable[[], ExecContext]
    constant_default: Callable[[ColumnDef], object]  # ADD COLUMN ... DEFAULT, evaluated once
    notices: list[Notice] = field(default_factory=list)
    # The session's open transaction: its uncommitted rows of the table take the new shape too
    # (and are checked by SET NOT NULL), the committed rows it deleted are not checked.
    transaction: Transaction | None = None


@dataclass
class _Rewrite:
    """How a rewritten column gets its values: compiled over the old rows, or per new row."""

    value: Value | None = None  # ALTER TYPE: USING (or the column itself), over the old row
    default: Value | None = None  # ADD COLUMN with a volatile default, evaluated per row


@dataclass
class _Work:
    """The definition as the actions so far left it, and what committing it takes."""

    table: Table
    original: TableDef
    def_: TableDef
    overlay: TableOverlay | None = None  # the session's uncommitted changes to the table
    rewrites: dict[int, _Rewrite] = field(default_factory=dict)  # attnum -> new values
    catalog_changes: list[Callable[[dict], dict]] = field(default_factory=list)
    # (column, new sequence, its options)
    sequences: list[tuple[str, str, SequenceOptions]] = field(default_factory=list)
    changed: bool = False

    def column(self, name: str) -> ColumnDef:
        for col in self.def_.columns:
            if col.name == name:
                return col
        raise UndefinedColumn(f'column "{name}" of relation "{self.def_.name}" does not exist')

    def replace_column(self, column: str, **changes: object) -> ColumnDef:
        new = replace(self.column(column), **changes)
        self.set(columns=tuple(new if c.name == column else c for c in self.def_.columns))
        return new

    def set(self, **changes: object) -> None:
        self.def_ = self.def_.with_changes(**changes)
        self.changed = True

    def has_rows(self) -> bool:
        """Whether the table has rows, committed or this transaction's own."""
        pending = self.overlay.inserted_table() if self.overlay is not None else None
        committed = 0 if self.overlay is not None and self.overlay.truncated else \
            self.table.snapshot().row_count
        return committed > 0 or (pending is not None and pending.num_rows > 0)

    def ignored(self) -> pa.Array | None:
        """Committed row ids this transaction deleted: their values are not checked."""
        if self.overlay is None or not self.overlay.deleted:
            return None
        return pa.array(sorted(self.overlay.deleted), pa.int64())


# Entry points ------------------------------------------------------------------------------------


def alter(stmt: exp.Expression, tools: AlterTools,
          fallback: Callable[[exp.Alter], str]) -> str:
    """Run an ALTER statement (parsed, or a `Command` for the forms sqlglot leaves as text);
    returns the command tag."""
    if isinstance(stmt, exp.Command):
        body = stmt.expression
        return _alter_command(body.name if isinstance(body, exp.Literal)
                              else str(body or ""), tools)
    kind = (stmt.args.get("kind") or "").upper()
    if kind == "INDEX":
        return _alter_index(stmt, tools)
    if kind == "TABLE":
        return alter_table(stmt, tools, fallback)
    raise FeatureNotSupported(f"ALTER {kind} is not supported")


def alter_table(stmt: exp.Alter, tools: AlterTools, fallback: Callable[[exp.Alter], str]) -> str:
    """ALTER TABLE: this module's actions applied together, then constraint actions by
    `fallback` (given a copy of the statement holding only those)."""
    t = stmt.this
    table = tools.catalog.find_table(t.name, t.db or None, tools.search_path)
    if table is None:
        if stmt.args.get("exists"):
            tools.notices.append(Notice.notice(f'relation "{t.name}" does not exist, skipping'))
            return "ALTER TABLE"
        raise UndefinedTable(f'relation "{t.name}" does not exist')
    actions = stmt.args.get("actions") or []
    renames = [o for o in stmt.args.get("options") or [] if isinstance(o, exp.ToTableProperty)]
    if renames and len(actions) == 1 and isinstance(actions[0], exp.AlterRename):
        # `ALTER TABLE t RENAME a TO b`: sqlglot reads the column as a table name.
        actions = [exp.RenameColumn(this=exp.to_identifier(actions[0].this.name),
                                    to=exp.to_identifier(renames[0].this.name))]
    mine = [a for a in actions if not _is_constraint_action(a)]
    others = [a for a in actions if _is_constraint_action(a)]
    if mine:
        overlay = tools.transaction.table_overlay(table.id) \
            if tools.transaction is not None else None
        work = _Work(table, table.def_, table.def_, overlay)
        for action in mine:
            _apply(action, work, tools)
        _commit(work, tools)
    if others:
        rest = stmt.copy()
        rest.set("actions", others)
        return fallback(rest)
    return "ALTER TABLE"


def _is_constraint_action(action: exp.Expression) -> bool:
    if isinstance(action, (exp.AddConstraint, exp.Constraint)):
        return True
    if isinstance(action, exp.Drop):
        return (action.args.get("kind") or "").upper() == "CONSTRAINT"
    return type(action).__name__ in ("AlterConstraint", "ValidateConstraint")


# Actions -----------------------------------------------------------------------------------------


def _apply(action: exp.Expression, work: _Work, tools: AlterTools) -> None:
    if isinstance(action, exp.ColumnDef):
        _add_column(action, work, tools)
    elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
        for target in action.args.get("tables") or []:
            _drop_column(target.name, bool(action.args.get("exists")), work, tools)
    elif isinstance(action, exp.RenameColumn):
        _rename_column(action.this.name, action.args["to"].name, work)
    elif isinstance(action, exp.AlterRename):
        _rename_table(action.this.name, work, tools)
    elif isinstance(action, exp.AlterColumn):
        _alter_column(action, work, tools)
    else:
        raise FeatureNotSupported(f"ALTER TABLE action {to_sql(action)} is not supported")


def _add_column(action: exp.ColumnDef, work: _Work, tools: AlterTools) -> None:
    d = work.def_
    if d.has_column(action.name):
        if action.args.get("exists"):
            tools.notices.append(Notice.notice(
                f'column "{action.name}" of relation "{d.name}" already exists, skipping',
                "42701"))
            return
        raise SqlVecError(f'column "{action.name}" of relation "{d.name}" already exists',
                          sqlstate="42701")
    for constraint in action.args.get("constraints") or []:
        if isinstance(constraint.args.get("kind"),
                      (exp.UniqueColumnConstraint, exp.CheckColumnConstraint)):
            raise FeatureNotSupported(  # never dropped silently: add it as a constraint
                "ADD COLUMN with a UNIQUE or CHECK constraint is not supported",
                hint="Add the column, then ALTER TABLE … ADD CONSTRAINT.")
    col, pk, serial = column_def(action, d.next_attnum)
    if pk and d.primary_key:
        raise SqlVecError(f'multiple primary keys for table "{d.name}" are not allowed',
                          sqlstate="42P16")
    work.set(columns=d.columns + (col,), next_attnum=d.next_attnum + 1,
             primary_key=(col.name,) if pk else d.primary_key)
    if serial:  # an identity column's (options) as CREATE TABLE reads them
        options = sequence_ddl.column_options(col.type.name, action)
        name = sequence_ddl.named_sequence(options, d.schema) or _free_relation_name(
            tools.catalog, f"{d.name}_{col.name}_seq", d.schema, work)
        work.sequences.append((col.name, name, options))
        key = f"{d.schema}.{name}"
        reference = sequence_ddl.default_reference(key)
        col = work.replace_column(col.name, default=f"nextval('{reference}'::regclass)")
    has_rows = work.has_rows()
    if col.default is not None and _VOLATILE.search(col.default):
        if has_rows:  # compiled now, run per row by the rewrite
            work.rewrites[col.attnum] = _Rewrite(default=_compiled_default(col, tools))
        return
    missing = tools.constant_default(col) if col.default is not None else None
    if col.not_null and missing is None and has_rows:
        raise NotNullViolation(f'column "{col.name}" of relation "{d.name}" contains null values')
    work.replace_column(col.name, missing_value=missing)


def _drop_column(name: str, if_exists: bool, work: _Work, tools: AlterTools) -> None:
    d = work.def_
    if not d.has_column(name):
        if name in SYSTEM_COLUMNS:
            raise FeatureNotSupported(f'cannot drop system column "{name}"')
        if if_exists:
            tools.notices.append(Notice.notice(
                f'column "{name}" of relation "{d.name}" does not exist, skipping'))
            return
        raise UndefinedColumn(f'column "{name}" of relation "{d.name}" does not exist')
    col = d.column(name)
    # As PostgreSQL: the column's indexes and the key it is part of go with it, and so do
    # the sequences it owns and its comment.
    work.set(columns=tuple(c for c in d.columns if c.name != name),
             primary_key=() if name in d.primary_key else d.primary_key,
             indexes=tuple(ix for ix in d.indexes if name not in ix.columns),
             constraints=tuple(c for c in d.constraints if name not in c.columns))
    work.rewrites.pop(col.attnum, None)
    owner = f"{d.id}.{name}"
    comments = {f"{PG_CLASS}:{d.oid}:{col.attnum}"} | {
        f"{PG_CLASS}:{ix.oid}:0" for ix in d.indexes if name in ix.columns}
    work.catalog_changes.append(lambda c: {
        **c,
        "sequences": {k: v for k, v in c.get("sequences", {}).items()
                      if v.get("owned_by") != owner},
        "comments": {k: v for k, v in c.get("comments", {}).items() if k not in comments}})


def _rename_column(old: str, new: str, work: _Work) -> None:
    d = work.def_
    if not d.has_column(old):
        if old in SYSTEM_COLUMNS:
            raise FeatureNotSupported(f'cannot rename system column "{old}"')
        raise UndefinedColumn(f'column "{old}" does not exist')
    check_column_name(new)
    if d.has_column(new):
        raise SqlVecError(f'column "{new}" of relation "{d.name}" already exists',
                          sqlstate="42701")
    work.replace_column(old, name=new)
    work.set(primary_key=tuple(new if k == old else k for k in d.primary_key),
             constraints=constraint_ddl.columns_after_rename(d, old, new),
             indexes=tuple(_index_renamed(ix, old, new) for ix in d.indexes))
    owner, renamed = f"{d.id}.{old}", f"{d.id}.{new}"
    work.catalog_changes.append(lambda c: {**c, "sequences": {
        k: ({**v, "owned_by": renamed} if v.get("owned_by") == owner else v)
        for k, v in c.get("sequences", {}).items()}})


def _rename_table(new: str, work: _Work, tools: AlterTools) -> None:
    d = work.def_
    if tools.catalog.relation_exists(new, d.schema):
        raise DuplicateTable(f'relation "{new}" already exists')
    # As in PostgreSQL, the primary key keeps its name (<old name>_pkey).
    work.set(name=new, primary_key_name=d.pkey_name if d.primary_key else None)


def _alter_column(action: exp.AlterColumn, work: _Work, tools: AlterTools) -> None:
    name = action.this.name
    if name in SYSTEM_COLUMNS and not work.def_.has_column(name):
        raise FeatureNotSupported(f'cannot alter system column "{name}"')
    col = work.column(name)
    args = action.args
    if args.get("dtype") is not None:
        _alter_type(col, args["dtype"], args.get("using") or None, work, tools)
    elif args.get("allow_null") is False:
        if not col.not_null:
            _check_no_nulls(col, work)
            work.replace_column(name, not_null=True)
    elif args.get("drop") and args.get("allow_null") is not None:
        if name in work.def_.primary_key:
            raise SqlVecError(f'column "{name}" is in a primary key', sqlstate="42P16")
        work.replace_column(name, not_null=False)
    elif args.get("default") is not None:
        text = to_sql(args["default"])
        _compiled_default(replace(col, default=text), tools)
        work.replace_column(name, default=text)
    elif _drops_default(action):
        work.replace_column(name, default=None)
    else:
        raise FeatureNotSupported(f"ALTER TABLE action {to_sql(action)} is not supported")


def _drops_default(action: exp.AlterColumn) -> bool:
    return bool(action.args.get("drop")) and action.args.get("allow_null") is None


def _alter_type(col: ColumnDef, dtype: exp.DataType, using: exp.Expression | None, work: _Work,
                tools: AlterTools) -> None:
    """ALTER COLUMN TYPE: the new values are compiled now (42804 when no assignment cast
    exists, as PostgreSQL); the rewrite runs at commit."""
    if serial_kind(dtype) is not None:
        raise UndefinedObject(f'type "{dtype.this.name.lower()}" does not exist',
                              sqlstate="42704")
    target = sql_type(dtype)
    if col.attnum in work.rewrites:
        raise FeatureNotSupported(f'cannot alter type of column "{col.name}" twice')
    if using is None and col.type == target:
        return
    if col.attnum not in {c.attnum for c in work.original.columns}:
        raise FeatureNotSupported("ALTER COLUMN TYPE of a column added in the same statement "
                                  "is not supported")
    if using is not None and using.find(exp.Subquery, exp.Select) is not None:
        raise FeatureNotSupported("cannot use subquery in transform expression")
    scope, types = _old_row_scope(work)
    compiler = write_compiler(scope, types, tools.builder())
    original_name = next(c.name for c in work.original.columns if c.attnum == col.attnum)
    if using is None:
        value = compiler.compile(bind_expr(exp.column(original_name), scope))
        try:
            V.check_assignable(value.type, replace(col, type=target))
        except DatatypeMismatch:
            raise DatatypeMismatch(
                f'column "{col.name}" cannot be cast automatically to type {target.format()}',
                hint=f'You might need to specify "USING {col.name}::{target.format()}".') from None
    else:
        value = compiler.compile(bound_write(tools.planner(), using, scope))
        if value.type.name == "unknown":
            value = compiler.coerce(value, target)
        try:
            V.check_assignable(value.type, replace(col, type=target))
        except DatatypeMismatch:
            raise DatatypeMismatch(
                f'result of USING clause for column "{col.name}" cannot be cast automatically '
                f"to type {target.format()}",
                hint="You might need to add an explicit cast.") from None
    if col.default is not None:
        default = _compiled_default(col, tools)
        if default is not None:
            try:
                V.check_assignable(default.type, replace(col, type=target))
            except DatatypeMismatch:
                raise DatatypeMismatch(
                    f'default for column "{col.name}" cannot be cast automatically to type '
                    f"{target.format()}") from None
    new = work.replace_column(col.name, type=target, missing_value=None)
    for ix in work.def_.indexes:
        if col.name in ix.columns and ix.method == "gin" and ix.expression is None:
            gin_opclass(target, None if ix.opclass in ("jsonb_ops", "array_ops") else ix.opclass)
        elif col.name in ix.columns and ix.method not in ("btree", "gin"):
            access_methods.check_definition(ix.method,
                                            access_methods.key_columns(work.def_, ix),
                                            ix.opclass, ix.options.items())
    work.rewrites[new.attnum] = _Rewrite(value=value)


def _index_renamed(ix, old: str, new: str):
    """An index after RENAME COLUMN: its columns, and its expression's text, name the column's
    new name."""
    if old not in ix.columns:
        return ix
    changes: dict = {"columns": tuple(new if c == old else c for c in ix.columns)}
    if ix.expression_sql is not None:
        changes["expression"], changes["expression_sql"] = ixexpr.renamed(
            ix.expression_sql, old, new)
    return replace(ix, **changes)


def _old_row_scope(work: _Work) -> tuple[Scope, list]:
    """The scope USING expressions see: the table's columns as they were before the
    statement (what `_transform` feeds them)."""
    d = work.original
    fields = [Field(c.name, work.def_.name, c.type, (d.oid, c.attnum)) for c in d.columns]
    fields.append(Field(ROWID, work.def_.name, SqlType("int8"), (d.oid, 0), hidden=True))
    return Scope(fields), [f.type for f in fields]


def _compiled_default(col: ColumnDef, tools: AlterTools) -> Value | None:
    """A column's DEFAULT compiled for its type (42804 when it cannot be assigned)."""
    value = default_value(col, tools.builder())
    if value is not None and value.type != col.type:
        try:
            V.check_assignable(value.type, col)
        except DatatypeMismatch:
            raise DatatypeMismatch(
                f'column "{col.name}" is of type {col.type.format()} but default expression '
                f"is of type {value.type.format()}",
                hint="You will need to rewrite or cast the expression.") from None
    return value


def _check_no_nulls(col: ColumnDef, work: _Work) -> None:
    """SET NOT NULL is checked against the rows (23502), as PostgreSQL scans the table."""
    null = NotNullViolation(f'column "{col.name}" of relation "{work.def_.name}" contains '
                            "null values")
    if col.attnum in work.rewrites:
        return  # the rewrite checks the new values of every NOT NULL column
    old = next((c for c in work.original.columns if c.attnum == col.attnum), None)
    if old is None:  # added by this statement
        if col.missing_value is None and work.has_rows():
            raise null
        return
    overlay = work.overlay
    pending = overlay.inserted_table() if overlay is not None else None
    if pending is not None and pending.column(old.name).null_count:
        raise null
    if overlay is not None and overlay.truncated:
        return
    ignored = work.ignored()
    for part in work.table.snapshot().scan([old.name], with_rowid=ignored is not None):
        values = part.column(old.name)
        if not values.null_count:
            continue
        if ignored is None:
            raise null
        live = pc.invert(pc.is_in(part.column(ROWID), value_set=ignored))
        if pc.any(pc.and_(pc.is_null(values), live)).as_py():
            raise null


# Commit ------------------------------------------------------------------------------------------


def _commit(work: _Work, tools: AlterTools) -> None:
    if not work.changed:
        return
    _recompile_checks(work)
    store = tools.catalog.store
    table_id = work.original.id

    def change(current: TableDef) -> TableDef:
        if current is not work.original:
            raise SerializationFailure("could not serialize access due to concurrent update")
        return work.def_

    # A serial column's sequence exists before the rewrite that draws its values from it; it
    # is removed again when the statement fails.
    created = [tools.catalog.create_sequence(name, work.def_.schema, options,
                                             owned_by=f"{work.def_.id}.{column}")
               for column, name, options in work.sequences]
    catalog = _catalog_change(work) if work.catalog_changes else None
    try:
        ctx = tools.context()
        pending = work.overlay.inserted_table() if work.overlay is not None else None
        if pending is not None:  # this transaction's own rows, in the new shape
            pending = pa.Table.from_arrays(
                _transform(pending, work.def_, work, ctx),
                schema=work.def_.arrow_schema()).append_column(ROWID, pending.column(ROWID))
        if work.rewrites:
            ignored = work.ignored()
            store.rewrite_table(
                table_id, change,
                lambda part, new_def: _transform(part, new_def, work, ctx, ignored),
                catalog=catalog)
        else:
            store.alter_table(table_id, change, catalog=catalog)
        if work.overlay is not None:
            work.overlay.replace_inserted(pending)
    except BaseException:
        if created:
            store.update_catalog(lambda c: {**c, "sequences": {
                k: v for k, v in c.get("sequences", {}).items() if k not in created}})
        raise


def _recompile_checks(work: _Work) -> None:
    """A column's new type can leave a CHECK that reads it meaningless (`b > a` once b is
    text): the conditions are compiled against the new definition, failing the statement
    with the condition's error, as PostgreSQL does."""
    if not work.rewrites:
        return
    for c in work.def_.constraints:
        if c.kind == "c":
            compile_check(work.def_, c.expression or "true", ROW_CHECKS.functions())


def _catalog_change(work: _Work) -> Callable[[dict], dict]:
    def change(c: dict) -> dict:
        for step in work.catalog_changes:
            c = step(c)
        return c
    return change


def _transform(part: pa.Table, new_def: TableDef, work: _Work, ctx: ExecContext,
               ignored: pa.Array | None = None) -> list:
    """The new definition's columns for one batch of live rows (old definition's names):
    rewritten columns computed by their compiled expressions, the others carried over. NOT
    NULL is checked on every row but those `ignored` (row ids this transaction deleted)."""
    n = part.num_rows
    old = work.original
    frame = Frame(part.select([c.name for c in old.columns] + [ROWID]), ctx)
    by_attnum = {c.attnum: c for c in old.columns}
    out = []
    for col in new_def.columns:
        rewrite = work.rewrites.get(col.attnum)
        if rewrite is not None and rewrite.value is not None:
            v = rewrite.value
            data = as_array(v(frame), n)
            source = v.type if v.type.name != "unknown" else V.TEXT
            if source != col.type:
                data = as_array(V.cast(data, source, col.type, n), n)
        elif rewrite is not None and rewrite.default is not None:
            data = as_array(rewrite.default(Frame(table_of([], n), ctx)), n)
        elif col.attnum in by_attnum:
            data = part.column(by_attnum[col.attnum].name)
        elif col.missing_value is not None and n:
            data = pa.repeat(pa.scalar(col.missing_value, col.type.to_arrow()), n)
        else:
            data = pa.nulls(n, col.type.to_arrow())
        array = cast_column(data if isinstance(data, (pa.Array, pa.ChunkedArray))
                            else pa.array(data), col).combine_chunks()
        if col.not_null and array.null_count and (ignored is None or pc.any(pc.and_(
                pc.is_null(array), pc.invert(pc.is_in(part.column(ROWID), value_set=ignored)))
        ).as_py()):
            raise NotNullViolation(f'column "{col.name}" of relation "{new_def.name}" contains '
                                   "null values")
        out.append(array)
    return out


# SET SCHEMA, ALTER SEQUENCE, ALTER INDEX -----------------------------------------------------------

_NAME = sequence_ddl.NAME
_QUALIFIED = sequence_ddl.QUALIFIED
_SET_SCHEMA = re.compile(rf"TABLE\s+(?P<exists>IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}\s+"
                         rf"SET\s+SCHEMA\s+(?P<target>{_NAME})\s*;?\s*$", re.I | re.S)
_SEQ_RENAME = re.compile(rf"SEQUENCE\s+(?P<exists>IF\s+EXISTS\s+)?{_QUALIFIED}\s+RENAME\s+TO\s+"
                         rf"(?P<target>{_NAME})\s*;?\s*$", re.I | re.S)
_SEQ_SET_SCHEMA = re.compile(rf"SEQUENCE\s+(?P<exists>IF\s+EXISTS\s+)?{_QUALIFIED}\s+SET\s+"
                             rf"SCHEMA\s+(?P<target>{_NAME})\s*;?\s*$", re.I | re.S)
# Every other ALTER SEQUENCE: its options (sequence_ddl.py reads them).
_SEQ_OPTIONS = re.compile(rf"SEQUENCE\s+(?P<exists>IF\s+EXISTS\s+)?{_QUALIFIED}"
                          rf"(?P<options>(?:\s.*)?)$", re.I | re.S)
# ALTER TABLE ... ALTER COLUMN c ADD GENERATED ... AS IDENTITY [(options)]: pg_dump's form.
_ADD_IDENTITY = re.compile(rf"TABLE\s+(?P<exists>IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}\s+"
                           rf"ALTER\s+(?:COLUMN\s+)?(?P<column>{_NAME})\s+ADD\s+GENERATED\s+"
                           rf"(?P<kind>ALWAYS|BY\s+DEFAULT)\s+AS\s+IDENTITY\s*"
                           rf"(?:\((?P<options>.*)\))?\s*;?\s*$", re.I | re.S)
# ALTER TABLE ... ALTER COLUMN c RESTART | SET <sequence option>: an identity column's sequence
# (alone: among other actions, after a comma, it goes to sqlglot, and is 0A000).
_IDENTITY = re.compile(rf"TABLE\s+(?P<exists>IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}\s+ALTER\s+"
                       rf"(?:COLUMN\s+)?(?P<column>{_NAME})\s+(?P<options>(?:RESTART\b|SET\s+"
                       rf"(?:INCREMENT|START|MINVALUE|MAXVALUE|NO\s+(?:MINVALUE|MAXVALUE|CYCLE)|"
                       rf"CYCLE|CACHE|GENERATED)\b)[^,]*?)\s*;?\s*$", re.I | re.S)
_DROP_IDENTITY = re.compile(rf"TABLE\s+(?P<exists>IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}\s+"
                            rf"ALTER\s+(?:COLUMN\s+)?(?P<column>{_NAME})\s+DROP\s+IDENTITY"
                            rf"(?P<missing_ok>\s+IF\s+EXISTS)?\s*;?\s*$", re.I | re.S)
_OWNER_TO = re.compile(rf"(?P<what>TABLE|SEQUENCE|VIEW|INDEX|SCHEMA)\s+(?P<exists>IF\s+EXISTS\s+)?"
                       rf"(?:ONLY\s+)?{_QUALIFIED}\s+OWNER\s+TO\s+(?P<role>{_NAME})\s*;?\s*$",
                       re.I | re.S)


def recognise(sql: str) -> exp.Command | None:
    """The ALTER forms sqlglot does not model, from their text (before sqlglot, which would
    log a warning for each as it falls back to a `Command`)."""
    m = re.match(r"\s*ALTER\s+(.*)$", sql, re.I | re.S)
    if m is None:
        return None
    body = m.group(1).strip()
    if any(p.match(body) for p in (_SET_SCHEMA, _SEQ_RENAME, _SEQ_SET_SCHEMA, _OWNER_TO,
                                   _SEQ_OPTIONS, _IDENTITY, _ADD_IDENTITY, _DROP_IDENTITY)):
        return exp.Command(this="ALTER", expression=exp.Literal.string(body))
    return None


_ident = sequence_ddl.ident
_parts = sequence_ddl.name_parts


def _alter_command(text: str, tools: AlterTools) -> str:
    """The ALTER forms sqlglot keeps as text (a `Command`)."""
    body = text.strip()
    m = _SET_SCHEMA.match(body)
    if m:
        return _set_schema(_parts(m["name"]), _ident(m["target"]), bool(m["exists"]), tools)
    m = _SEQ_RENAME.match(body)
    if m:
        return _rename_sequence(_parts(m["name"]), _ident(m["target"]), bool(m["exists"]), tools)
    m = _SEQ_SET_SCHEMA.match(body)
    if m:
        return _sequence_set_schema(_parts(m["name"]), _ident(m["target"]), bool(m["exists"]),
                                    tools)
    m = _OWNER_TO.match(body)
    if m:
        return _owner_to(m["what"].upper(), _parts(m["name"]), _ident(m["role"]),
                         bool(m["exists"]), tools)
    m = _SEQ_OPTIONS.match(body)
    if m:
        return _sequence_options(_parts(m["name"]), m["options"], bool(m["exists"]), tools)
    m = _IDENTITY.match(body)
    if m:
        return _identity_options(_parts(m["name"]), _ident(m["column"]), m["options"],
                                 bool(m["exists"]), tools)
    m = _ADD_IDENTITY.match(body)
    if m:
        kind = "always" if m["kind"].upper() == "ALWAYS" else "by default"
        return _identity_options(_parts(m["name"]), _ident(m["column"]), m["options"],
                                 bool(m["exists"]), tools, adding=kind)
    m = _DROP_IDENTITY.match(body)
    if m:
        return _identity_options(_parts(m["name"]), _ident(m["column"]), None,
                                 bool(m["exists"]), tools,
                                 dropping="if exists" if m["missing_ok"] else "")
    words = body.split()
    what = words[0].upper() if words else ""
    if what in ("TABLE", "SEQUENCE", "INDEX") and len(words) > 2:
        raise FeatureNotSupported(f"ALTER {what} … {' '.join(words[2:])[:60]} is not supported")
    raise FeatureNotSupported(f"ALTER {what} is not supported")


def _owner_to(what: str, name: list[str], role: str, if_exists: bool, tools: AlterTools) -> str:
    """ALTER … OWNER TO: every dump names each object's owner this way (pg_dump, then psql or
    pg_restore). Naming the owner it has is accepted, as PostgreSQL does (nothing changes);
    handing an object to another role is not supported."""
    catalog = tools.catalog
    if role != "postgres" and catalog.role(role) is None:
        raise SqlVecError(f'role "{role}" does not exist', sqlstate="42704")
    state = catalog.state
    if what == "SCHEMA":
        if not catalog.has_schema(name[-1]):
            raise SqlVecError(f'schema "{name[-1]}" does not exist', sqlstate="3F000")
        owner = state["schemas"].get(name[-1], {}).get("owner") or "postgres"
    else:
        schemas = [name[0]] if len(name) > 1 else tools.search_path
        schema = next((s for s in schemas if catalog.relation_exists(name[-1], s)), None)
        if schema is None:
            if if_exists:
                tools.notices.append(Notice.notice(
                    f'relation "{name[-1]}" does not exist, skipping'))
                return f"ALTER {what}"
            raise UndefinedTable(f'relation "{".".join(name)}" does not exist')
        owner = state.get("views", {}).get(f"{schema}.{name[-1]}", {}).get("owner") or "postgres"
    if owner != role:
        raise FeatureNotSupported(f"ALTER {what} … OWNER TO a role other than its owner "
                                  f'("{owner}") is not supported')
    return f"ALTER {what}"


def _set_schema(name: list[str], target: str, if_exists: bool, tools: AlterTools) -> str:
    catalog = tools.catalog
    table = catalog.find_table(name[-1], name[0] if len(name) > 1 else None, tools.search_path)
    if table is None:
        if if_exists:
            tools.notices.append(Notice.notice(f'relation "{name[-1]}" does not exist, skipping'))
            return "ALTER TABLE"
        raise UndefinedTable(f'relation "{name[-1]}" does not exist')
    d = table.def_
    if not catalog.has_schema(target):
        raise UndefinedObject(f'schema "{target}" does not exist', sqlstate="3F000")
    if target == d.schema:
        return "ALTER TABLE"
    if catalog.relation_exists(d.name, target):
        raise DuplicateTable(f'relation "{d.name}" already exists in schema "{target}"')
    # Sequences the table owns move with it (PostgreSQL's AlterTableNamespace), and the
    # defaults naming them follow.
    owned = [k for k, v in catalog.state.get("sequences", {}).items()
             if (v.get("owned_by") or "").startswith(f"{d.id}.")]
    moves = {k: f"{target}.{k.split('.', 1)[1]}" for k in owned}
    for new in moves.values():
        if new in catalog.state.get("sequences", {}) or \
                catalog.relation_exists(new.split(".", 1)[1], target):
            raise DuplicateTable(f'relation "{new.split(".", 1)[1]}" already exists in schema '
                                 f'"{target}"')
    columns = tuple(replace(c, default=_renamed_refs(c.default, moves)) for c in d.columns)
    _carry_sequence_values(catalog, moves)
    catalog.store.alter_table(
        d.id, lambda x: x.with_changes(schema=target, columns=columns),
        catalog=lambda c: {**c, "sequences": {moves.get(k, k): v
                                               for k, v in c.get("sequences", {}).items()}})
    return "ALTER TABLE"


def _renamed_refs(default: str | None, moves: dict[str, str]) -> str | None:
    """A default with its `nextval('seq'::regclass)` references following renamed sequences."""
    if default is None:
        return None
    for old, new in moves.items():
        default = default.replace(f"'{sequence_ddl.default_reference(old)}'::regclass", f"'{sequence_ddl.default_reference(new)}'::regclass")
    return default


def _carry_sequence_values(catalog: Catalog, moves: dict[str, str]) -> None:
    """A renamed or moved sequence keeps the values handed out under its old key."""
    sequences = catalog.state.get("sequences", {})
    for old in moves:
        last = catalog.currval_of(old) if old in sequences else None
        if last is not None:
            catalog.store.update_catalog(lambda c, old=old, last=last: {
                **c, "sequences": {k: ({**v, "value": last, "reserved": last} if k == old else v)
                                   for k, v in c.get("sequences", {}).items()}})


def _sequence_key(name: list[str], tools: AlterTools) -> str | None:
    sequences = tools.catalog.state.get("sequences", {})
    schemas = [name[0]] if len(name) > 1 else tools.search_path
    for schema in schemas:
        key = f"{schema}.{name[-1]}"
        if key in sequences:
            return key
    return None


def _existing_sequence(name: list[str], if_exists: bool, tools: AlterTools,
                       not_sequence: str = '"{}" is not a sequence') -> str | None:
    """The sequence ALTER SEQUENCE names, or None when IF EXISTS skips it (with the NOTICE);
    another relation of that name is 42809 (`not_sequence`, PostgreSQL's message for the
    action)."""
    key = _sequence_key(name, tools)
    if key is None:
        schemas = [name[0]] if len(name) > 1 else tools.search_path
        if any(tools.catalog.relation_exists(name[-1], s) for s in schemas):
            raise SqlVecError(not_sequence.format(name[-1]), sqlstate="42809")
        if not if_exists:
            raise UndefinedTable(f'relation "{name[-1]}" does not exist')
        tools.notices.append(Notice.notice(f'relation "{name[-1]}" does not exist, skipping'))
    return key


def _rename_sequence(name: list[str], new: str, if_exists: bool, tools: AlterTools) -> str:
    key = _existing_sequence(name, if_exists, tools)
    if key is None:
        return "ALTER SEQUENCE"
    schema = key.split(".", 1)[0]
    if tools.catalog.relation_exists(new, schema):
        raise DuplicateTable(f'relation "{new}" already exists')
    _move_sequence(key, f"{schema}.{new}", tools)
    return "ALTER SEQUENCE"


def _sequence_set_schema(name: list[str], target: str, if_exists: bool,
                         tools: AlterTools) -> str:
    """ALTER SEQUENCE ... SET SCHEMA: a sequence a column owns moves with its table only
    (refused before the target schema is looked at, even its own schema, as PostgreSQL's
    AlterTableNamespace)."""
    catalog = tools.catalog
    key = _existing_sequence(name, if_exists, tools)
    if key is None:
        return "ALTER SEQUENCE"
    schema, bare = key.split(".", 1)
    owner = sequence_ddl.owning_column(catalog, key)
    if owner is not None:
        raise FeatureNotSupported("cannot move an owned sequence into another schema",
                                  detail=f'Sequence "{bare}" is linked to table '
                                         f'"{owner[0].def_.name}".')
    if not catalog.has_schema(target):
        raise UndefinedObject(f'schema "{target}" does not exist', sqlstate="3F000")
    if target == schema:
        return "ALTER SEQUENCE"
    if catalog.relation_exists(bare, target):
        raise DuplicateTable(f'relation "{bare}" already exists in schema "{target}"')
    _move_sequence(key, f"{target}.{bare}", tools)
    return "ALTER SEQUENCE"


def _move_sequence(key: str, new_key: str, tools: AlterTools) -> None:
    """The sequence under its new name or schema, with its values and the defaults using it."""
    catalog = tools.catalog
    moves = {key: new_key}

    def rename(c: dict) -> dict:
        return {**c, "sequences": {(new_key if k == key else k): v
                                   for k, v in c.get("sequences", {}).items()}}
    _carry_sequence_values(catalog, moves)
    users = [t for t in catalog.store.tables.values()
             if any(_renamed_refs(c.default, moves) != c.default for c in t.def_.columns)]
    if not users:
        catalog.store.update_catalog(rename)
    for i, t in enumerate(users):
        cols = tuple(replace(c, default=_renamed_refs(c.default, moves)) for c in t.def_.columns)
        catalog.store.alter_table(t.id, lambda x, cols=cols: x.with_changes(columns=cols),
                                  catalog=rename if i == 0 else None)


def _sequence_options(name: list[str], text: str, if_exists: bool, tools: AlterTools) -> str:
    """ALTER SEQUENCE's options, read before the sequence is looked up (a syntax error is
    one whether or not it exists, as PostgreSQL's parser finds it first)."""
    options = sequence_ddl.parse_options(text, altering=True)
    key = _existing_sequence(name, if_exists, tools, 'cannot open relation "{}"')
    if key is not None:
        sequence_ddl.alter(key, options, tools.catalog, tools.search_path)
    return "ALTER SEQUENCE"


def _identity_options(name: list[str], column: str, text: str | None, if_exists: bool,
                      tools: AlterTools, adding: str | None = None,
                      dropping: str | None = None) -> str:
    """An identity column's options, or (`adding`: its kind) the column made one, or
    (`dropping`: "if exists" or "") made an ordinary column again."""
    table = tools.catalog.find_table(name[-1], name[0] if len(name) > 1 else None,
                                     tools.search_path)
    if table is None:
        if if_exists:
            tools.notices.append(Notice.notice(f'relation "{name[-1]}" does not exist, skipping'))
            return "ALTER TABLE"
        raise UndefinedTable(f'relation "{".".join(name)}" does not exist')
    if adding is not None:
        sequence_ddl.add_identity(tools.catalog, table, column, adding, text)
    elif dropping is not None:
        sequence_ddl.drop_identity(tools.catalog, table, column, bool(dropping),
                                   tools.notices)
    else:
        sequence_ddl.alter_identity(tools.catalog, table, column, text or "")
    return "ALTER TABLE"


def find_index(catalog: Catalog, name: str, schema: str | None,
               search_path: list[str]) -> tuple[Table, object] | None:
    """The table holding index `name` (looked up as a relation name) and the index."""
    schemas = [schema] if schema else search_path
    for s in schemas:
        for table in catalog.store.tables.values():
            if table.def_.schema != s:
                continue
            for ix in table.def_.indexes:
                if ix.name == name:
                    return table, ix
    return None


def _alter_index(stmt: exp.Alter, tools: AlterTools) -> str:
    actions = stmt.args.get("actions") or []
    if len(actions) != 1 or not isinstance(actions[0], exp.AlterRename):
        raise FeatureNotSupported("ALTER INDEX other than RENAME TO is not supported")
    t = stmt.this
    new = actions[0].this.name
    found = find_index(tools.catalog, t.name, t.db or None, tools.search_path)
    if found is None:
        if any(f"{x.def_.name}_pkey" == t.name and x.def_.primary_key
               for x in tools.catalog.store.tables.values()):
            raise FeatureNotSupported("ALTER INDEX of a primary key's index is not supported")
        if stmt.args.get("exists"):
            tools.notices.append(Notice.notice(f'relation "{t.name}" does not exist, skipping'))
            return "ALTER INDEX"
        raise UndefinedTable(f'relation "{t.name}" does not exist')
    table, index = found
    if new == index.name:
        return "ALTER INDEX"
    if tools.catalog.relation_exists(new, table.def_.schema):
        raise DuplicateTable(f'relation "{new}" already exists')
    original = table.def_

    def change(current: TableDef) -> TableDef:
        if current is not original:
            raise SerializationFailure("could not serialize access due to concurrent update")
        return current.with_changes(indexes=tuple(
            replace(ix, name=new) if ix.oid == index.oid else ix for ix in current.indexes))
    tools.catalog.store.alter_table(table.id, change)
    return "ALTER INDEX"


def _free_relation_name(catalog: Catalog, base: str, schema: str, work: _Work) -> str:
    """`base`, or `base1`, `base2`, ...: the first name no relation (nor a sequence this
    statement creates) has."""
    taken = {n for _c, n, _o in work.sequences}
    name, i = base, 1
    while catalog.relation_exists(name, schema) or name in taken:
        name, i = f"{base}{i}", i + 1
    return name
