"""FOREIGN KEY constraints in DDL: declared by CREATE TABLE (`REFERENCES` on a column,
`FOREIGN KEY (...) REFERENCES t (...)` as a table element), added by ALTER TABLE (checked
against the rows already there unless NOT VALID), and what DROP TABLE and TRUNCATE of a
referenced table must do.

A foreign key is a `ConstraintDef` of kind "f" on the referencing table: its columns, the
referenced table's id and columns (its primary key when none are named; they must be the
columns of one of its unique keys, 42830 otherwise), the ON UPDATE / ON DELETE actions and
MATCH type as pg_constraint's letters, DEFERRABLE / INITIALLY DEFERRED. The default name is
PostgreSQL's `<table>_<columns>_fkey`. Enforcement is execution/foreign_keys.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlglot import exp

from sqlvec.catalog.catalog import Catalog
from sqlvec.errors import (
    FeatureNotSupported,
    Notice,
    SqlVecError,
    UndefinedColumn,
    UndefinedObject,
    UndefinedTable,
)
from sqlvec.execution.constraint_ddl import Spec, name_constraints
from sqlvec.execution.constraints import ROW_CHECKS
from sqlvec.execution.constraints import validate_existing as check_existing
from sqlvec.execution.foreign_keys import Enforcer
from sqlvec.execution.transaction import Transaction
from sqlvec.sql.binder import sql_type
from sqlvec.storage.schema import ConstraintDef, TableDef
from sqlvec.storage.store import Store
from sqlvec.types import SqlType

# pg_constraint's letters for the referential actions.
_ACTIONS = {"NO ACTION": "a", "RESTRICT": "r", "CASCADE": "c", "SET NULL": "n",
            "SET DEFAULT": "d"}

# Types whose values a key of another type of the same family can be looked up as: a
# referencing column may have a type that converts implicitly to the referenced one.
_INTEGERS = ("int2", "int4", "int8")
_IMPLICIT = {
    **{t: set(_INTEGERS) | {"numeric", "float4", "float8"} for t in _INTEGERS},
    "numeric": {"numeric", "float4", "float8"},
    "float4": {"float4", "float8"}, "float8": {"float4", "float8"},
    "text": {"text", "varchar"}, "varchar": {"text", "varchar"},
    "bpchar": {"bpchar", "text", "varchar"},
}


@dataclass
class Reference:
    """A REFERENCES clause as written: the target and the options."""

    table: exp.Table
    columns: tuple[str, ...]
    on_delete: str = "a"
    on_update: str = "a"
    match: str = "s"
    deferrable: bool = False
    deferred: bool = False
    delete_set_columns: tuple[str, ...] = ()


def is_foreign_key(node: exp.Expression) -> bool:
    """Whether a table element or ADD CONSTRAINT item declares a foreign key."""
    if isinstance(node, exp.Constraint):
        return any(isinstance(e, (exp.ForeignKey, exp.Reference)) for e in node.expressions)
    return isinstance(node, (exp.ForeignKey, exp.Reference))


def reference_of(node: exp.Reference) -> Reference:
    """The target and options of a REFERENCES clause (0A000 for the forms not supported)."""
    target = node.this
    columns: tuple[str, ...] = ()
    if isinstance(target, exp.Schema):
        columns = tuple(e.name for e in target.expressions)
        target = target.this
    ref = Reference(target, columns)
    for option in node.args.get("options") or []:
        words = " ".join(str(option).upper().split())
        if words.startswith("ON DELETE ") or words.startswith("ON UPDATE "):
            words, paren, names = " ".join(str(option).split()).partition(" (")
            words = words.upper()
            if paren:  # SET NULL (a, b) / SET DEFAULT (a, b): only these columns are set
                if words.startswith("ON UPDATE "):
                    raise FeatureNotSupported(
                        f"a column list with {words[10:]} is only supported for ON DELETE "
                        "actions")
                ref.delete_set_columns = tuple(
                    n.strip()[1:-1] if n.strip().startswith('"') else n.strip().lower()
                    for n in names.rstrip(")").split(","))
            action = _ACTIONS.get(words[10:])
            if action is None:
                raise FeatureNotSupported(f"foreign key action {words[10:]} is not supported")
            if words.startswith("ON DELETE "):
                ref.on_delete = action
            else:
                ref.on_update = action
        elif words == "MATCH FULL":
            ref.match = "f"
        elif words == "MATCH SIMPLE":
            ref.match = "s"
        elif words == "MATCH PARTIAL":
            raise FeatureNotSupported("MATCH PARTIAL not yet implemented")
        elif words == "DEFERRABLE":
            ref.deferrable = True
        elif words == "NOT DEFERRABLE":
            ref.deferrable = False
        elif words == "INITIALLY DEFERRED":
            ref.deferred = True
        elif words == "INITIALLY IMMEDIATE":
            ref.deferred = False
        else:
            raise FeatureNotSupported(f"foreign key option {words} is not supported")
    if ref.deferred and not ref.deferrable:
        ref.deferrable = True  # INITIALLY DEFERRED implies DEFERRABLE, as in PostgreSQL
    return ref


def foreign_key_of(node: exp.Expression, name: str | None = None,
                   column: str | None = None) -> tuple[str | None, tuple[str, ...], Reference]:
    """(name, referencing columns, reference) of a FOREIGN KEY table element, an ADD
    CONSTRAINT item, or (with `column`) a column's REFERENCES."""
    if isinstance(node, exp.Constraint):
        (inner,) = node.expressions
        return foreign_key_of(inner, node.name or name, column)
    if isinstance(node, exp.ForeignKey):
        return name, tuple(e.name for e in node.expressions), reference_of(node.args["reference"])
    assert isinstance(node, exp.Reference)
    return name, (column,) if column else (), reference_of(node)


def column_foreign_keys(item: exp.ColumnDef) -> list[tuple[str | None, tuple[str, ...],
                                                          Reference]]:
    """The REFERENCES constraints declared on a column."""
    out = []
    for constraint in item.args.get("constraints") or []:
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.Reference):
            out.append(foreign_key_of(kind, constraint.name or None, item.name))
    return out


def _compatible(child: SqlType, parent: SqlType) -> bool:
    if child.name == parent.name:
        return True
    return parent.name in _IMPLICIT.get(child.name, ())


def build(table_def: TableDef, name: str, columns: tuple[str, ...], ref: Reference,
          target: TableDef, catalog: Catalog, validated: bool = True) -> ConstraintDef:
    """The ConstraintDef of a named foreign key from `table_def` to `target` (which may be
    `table_def` itself), checked as PostgreSQL checks it: columns exist (42703), the
    referenced ones form a unique key (42830), the types compare (42804)."""
    for col in columns:
        if not table_def.has_column(col):
            raise UndefinedColumn(f'column "{col}" referenced in foreign key constraint does '
                                  "not exist")
    ref_columns = ref.columns
    if not ref_columns:
        if not target.primary_key:
            raise SqlVecError(f'there is no primary key for referenced table "{target.name}"',
                              sqlstate="42704")
        ref_columns = tuple(target.primary_key)
    for col in ref_columns:
        if not target.has_column(col):
            raise UndefinedColumn(f'column "{col}" referenced in foreign key constraint does '
                                  "not exist")
    if len(ref_columns) != len(columns):
        raise SqlVecError("number of referencing and referenced columns for foreign key "
                          "disagree", sqlstate="42830")
    if not any(set(k.columns) == set(ref_columns) and len(k.columns) == len(ref_columns)
               and not k.nulls_not_distinct for k in target.unique_keys):
        raise SqlVecError("there is no unique constraint matching given keys for referenced "
                          f'table "{target.name}"', sqlstate="42830")
    for col in ref.delete_set_columns:
        if col not in columns:
            raise SqlVecError(f'column "{col}" referenced in ON DELETE SET action must be part '
                              "of foreign key", sqlstate="42P10")
    for col, ref_col in zip(columns, ref_columns):
        child, parent = table_def.column(col).type, target.column(ref_col).type
        if not _compatible(child, parent):
            raise SqlVecError(
                f'foreign key constraint "{name}" cannot be implemented', sqlstate="42804",
                detail=f'Key columns "{col}" and "{ref_col}" are of incompatible types: '
                       f"{child.format()} and {parent.format()}.")
    return ConstraintDef(name, "f", catalog.store.allocate_oid(), tuple(columns),
                         validated=validated, deferrable=ref.deferrable, deferred=ref.deferred,
                         ref_table=target.id, ref_columns=tuple(ref_columns),
                         on_update=ref.on_update, on_delete=ref.on_delete, match=ref.match,
                         delete_set_columns=ref.delete_set_columns)


def resolve_target(ref: Reference, catalog: Catalog, search_path: list[str],
                   creating: TableDef | None = None) -> TableDef:
    """The referenced table's definition; `creating` is the table CREATE TABLE is making
    (a table may reference itself)."""
    name, schema = ref.table.name, ref.table.db or None
    if creating is not None and name == creating.name and \
            (schema is None or schema == creating.schema) and \
            (schema is not None or catalog.find_table(name, None, search_path) is None
             or creating.schema == search_path[0]):
        return creating
    return catalog.table(name, schema, search_path).def_


def referencing(store: Store, table_id: int) -> list[tuple[TableDef, ConstraintDef]]:
    """The foreign keys of other tables (and of the table itself) that reference table
    `table_id`, with the referencing table's definition."""
    out = []
    for table in list(store.tables.values()):
        d = table.def_
        for c in d.constraints:
            if c.kind == "f" and c.ref_table == table_id:
                out.append((d, c))
    return out


def drop_referencing(store: Store, table_ids: set[int], cascade: bool,
                     notices: list[Notice]) -> None:
    """DROP TABLE of tables other tables reference: PostgreSQL's 2BP01 without CASCADE;
    with it, the referencing constraints are dropped (one NOTICE each)."""
    found = [(d, c) for tid in sorted(table_ids) for d, c in referencing(store, tid)
             if d.id not in table_ids]
    if not found:
        return
    target = store.tables[found[0][1].ref_table].def_  # type: ignore[index]
    _drop_dependents(store, found, f"table {target.name}", lambda c: "table " + store.tables[
        c.ref_table].def_.name, cascade, notices)  # type: ignore[index]


def _drop_dependents(store: Store, found: list[tuple[TableDef, ConstraintDef]], what: str,
                     depends_on: Callable[[ConstraintDef], str], cascade: bool,
                     notices: list[Notice]) -> None:
    """Foreign keys in the way of dropping `what`: PostgreSQL's 2BP01 (`... depends on
    <depends_on(c)>`), or with CASCADE dropped, with its NOTICE."""
    if not found:
        return
    if not cascade:
        detail = "\n".join(f"constraint {c.name} on table {d.name} depends on {depends_on(c)}"
                           for d, c in found)
        raise SqlVecError(
            f"cannot drop {what} because other objects depend on it",
            sqlstate="2BP01", detail=detail,
            hint="Use DROP ... CASCADE to drop the dependent objects too.")
    if len(found) == 1:
        d, c = found[0]
        notices.append(Notice.notice(f"drop cascades to constraint {c.name} on table {d.name}"))
    else:
        lines = "\n".join(f"drop cascades to constraint {c.name} on table {d.name}"
                          for d, c in found)
        notices.append(Notice.notice(f"drop cascades to {len(found)} other objects",
                                     detail=lines))
    for d, c in found:
        store.alter_table(d.id, lambda x, name=c.name: x.with_changes(
            constraints=tuple(k for k in x.constraints if k.name != name)))


def forget_dangling(store: Store) -> None:
    """After a DROP that took tables with it (DROP SCHEMA ... CASCADE): foreign keys of the
    tables left that referenced them go too, as PostgreSQL drops them."""
    for table in list(store.tables.values()):
        gone = [c.name for c in table.def_.constraints
                if c.kind == "f" and c.ref_table not in store.tables]
        if gone:
            store.alter_table(table.id, lambda x, gone=gone: x.with_changes(
                constraints=tuple(c for c in x.constraints if c.name not in gone)))


def truncate_targets(store: Store, table_ids: list[int], cascade: bool,
                     notices: list[Notice]) -> list[int]:
    """TRUNCATE: the tables to empty. A table referenced from a table not truncated is
    PostgreSQL's 0A000 unless CASCADE, which truncates the referencing tables too (a
    NOTICE each)."""
    out = list(dict.fromkeys(table_ids))
    i = 0
    while i < len(out):
        for d, _c in referencing(store, out[i]):
            if d.id in out:
                continue
            if not cascade:
                target = store.tables[out[i]].def_
                raise FeatureNotSupported(
                    "cannot truncate a table referenced in a foreign key constraint",
                    detail=f'Table "{d.name}" references "{target.name}".',
                    hint=f'Truncate table "{d.name}" at the same time, or use TRUNCATE ... '
                         "CASCADE.")
            notices.append(Notice.notice(f'truncate cascades to table "{d.name}"'))
            out.append(d.id)
        i += 1
    return out


def add_column_references(actions: list, table, catalog: Catalog,
                          search_path: list[str]) -> None:
    """ALTER TABLE ... ADD COLUMN c t REFERENCES p: the foreign key, once the column is
    there (checked against the rows, which hold the column's default)."""
    added = [a for a in actions if isinstance(a, exp.ColumnDef) and column_foreign_keys(a)]
    try:
        for action in added:
            for name, columns, ref in column_foreign_keys(action):
                _add(name, columns, ref, table, catalog, search_path, False)
    except SqlVecError:  # the statement fails as a whole: its new columns go again
        names = {a.name for a in added}
        catalog.store.alter_table(table.id, lambda x: x.with_changes(
            columns=tuple(c for c in x.columns if c.name not in names),
            constraints=tuple(c for c in x.constraints if not set(c.columns) & names)))
        raise


def add_foreign_key(action: exp.AddConstraint, table, catalog: Catalog,
                    search_path: list[str], not_valid: bool) -> None:
    """ALTER TABLE ... ADD [CONSTRAINT name] FOREIGN KEY ... REFERENCES ..., checked against
    the rows already in the table (23503 as an insert would fail) unless NOT VALID."""
    for node in action.expressions:
        name, columns, ref = foreign_key_of(node)
        _add(name, columns, ref, table, catalog, search_path, not_valid)


def _add(name: str | None, columns: tuple[str, ...], ref: Reference, table, catalog: Catalog,
         search_path: list[str], not_valid: bool) -> None:
    """Name, build, check (unless NOT VALID) and add one foreign key of `table`."""
    d = table.def_
    (spec,) = name_constraints(d.name, d.schema, [Spec("f", name, columns, reference=ref)],
                               catalog, d)
    target = resolve_target(ref, catalog, search_path, d)
    con = build(d, spec.name, columns, ref, target, catalog, validated=not not_valid)
    if not not_valid:
        validate_existing(catalog.store, table, con)
    catalog.store.alter_table(table.id, lambda x: x.with_changes(
        constraints=x.constraints + (con,)))


_VALIDATE = re.compile(r"TABLE\s+(?P<exists>IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<table>\S+?)\s+"
                       r"VALIDATE\s+CONSTRAINT\s+(?P<name>\S+)\s*;?", re.I | re.S)


def _ident(text: str) -> str:
    return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()


def validate_command(text: str, catalog: Catalog, search_path: list[str],
                     notices: list[Notice]) -> str | None:
    """ALTER TABLE ... VALIDATE CONSTRAINT name (sqlglot keeps it as text): a foreign key or
    CHECK added NOT VALID is checked against the rows (23503 / 23514) and marked valid. None
    when `text` is another ALTER."""
    m = _VALIDATE.fullmatch(text.strip())
    if m is None:
        return None
    table = _validated_table(m, catalog, search_path)
    if table is None:
        name = m["table"].rpartition(".")[2]
        if m["exists"]:
            notices.append(Notice.notice(f'relation "{_ident(name)}" does not exist, skipping'))
            return "ALTER TABLE"
        raise UndefinedTable(f'relation "{_ident(name)}" does not exist')
    d = table.def_
    constraint = _ident(m["name"])
    con = d.constraint(constraint)
    if con is None and d.pkey_name != constraint:
        raise UndefinedObject(f'constraint "{constraint}" of relation "{d.name}" does not exist')
    if con is None or con.kind not in ("f", "c"):  # (None: the primary key)
        raise SqlVecError(f'constraint "{constraint}" of relation "{d.name}" is not a foreign '
                          "key or check constraint", sqlstate="42809")
    if not con.validated:
        if con.kind == "f":
            validate_existing(catalog.store, table, con)
        else:
            check_existing(d, con, lambda: list(table.snapshot().scan(None)), ROW_CHECKS)
        catalog.store.alter_table(table.id, lambda x: x.with_changes(constraints=tuple(
            replace(c, validated=True) if c.name == constraint else c for c in x.constraints)))
    return "ALTER TABLE"


def validate_target(text: str, catalog: Catalog, search_path: list[str]) -> int | None:
    """The id of the table an ALTER TABLE ... VALIDATE CONSTRAINT text names, if it exists;
    None for another ALTER (`validate_command`)."""
    m = _VALIDATE.fullmatch(text.strip())
    table = _validated_table(m, catalog, search_path) if m is not None else None
    return table.id if table is not None else None


def _validated_table(m: re.Match, catalog: Catalog, search_path: list[str]):
    schema, _, name = m["table"].rpartition(".")
    return catalog.find_table(_ident(name), _ident(schema) if schema else None, search_path)


def validate_existing(store: Store, table, con: ConstraintDef) -> None:
    """Every row's key is present in the referenced table: the table's key columns scanned
    one segment at a time, each key looked up in the referenced table's key index."""
    enforcer = Enforcer(store, Transaction(), True)
    for part in table.snapshot().scan(list(con.columns)):
        enforcer.check_present(table.def_, con, part)


def before_alter(store: Store, table, actions: list, notices: list[Notice]) -> dict:
    """ALTER TABLE of a table others may reference, before it runs: DROP COLUMN of a
    referenced column and DROP CONSTRAINT of a referenced key are PostgreSQL's 2BP01 (with
    CASCADE, the foreign keys go). Returns what `after_alter` needs to follow renames: the
    referenced columns' attnums per referencing constraint."""
    d = table.def_
    for action in actions:
        if isinstance(action, exp.AlterColumn) and action.args.get("dtype") is not None:
            _check_new_type(store, d, action.this.name, sql_type(action.args["dtype"]))
        kind = (action.args.get("kind") or "").upper() if isinstance(action, exp.Drop) else ""
        cascade = bool(action.args.get("cascade"))
        for target in (action.args.get("tables") or []) if kind else []:
            if kind == "COLUMN":
                found = [(x, c) for x, c in referencing(store, table.id)
                         if target.name in c.ref_columns]
                _drop_dependents(store, found, f"column {target.name} of table {d.name}",
                                 lambda c, n=target.name: f"column {n} of table {d.name}",
                                 cascade, notices)
            elif kind == "CONSTRAINT":
                key = next((k for k in d.unique_keys if k.name == target.name), None)
                if key is None:
                    continue
                found = [(x, c) for x, c in referencing(store, table.id)
                         if set(c.ref_columns) == set(key.columns)
                         and not any(set(o.columns) == set(key.columns)
                                     for o in d.unique_keys if o.name != key.name)]
                _drop_dependents(store, found, f"constraint {key.name} on table {d.name}",
                                 lambda c, n=key.name: f"index {n}", cascade, notices)
    return {(x.id, c.name): [d.column(col).attnum for col in c.ref_columns]
            for x, c in referencing(store, table.id)}


def _check_new_type(store: Store, d: TableDef, column: str, new: SqlType) -> None:
    """ALTER COLUMN ... TYPE of a column of a foreign key, on either side: the key columns
    must still compare (PostgreSQL's 42804)."""
    pairs = [(c, c.columns, c.ref_columns, d, store.tables[c.ref_table].def_)  # type: ignore
             for c in d.constraints if c.kind == "f" and column in c.columns]
    pairs += [(c, c.columns, c.ref_columns, x, d) for x, c in referencing(store, d.id)
              if column in c.ref_columns]
    for con, cols, refs, child, parent in pairs:
        for col, ref in zip(cols, refs):
            child_type = new if child.id == d.id and col == column else child.column(col).type
            parent_type = new if parent.id == d.id and ref == column else \
                parent.column(ref).type
            if not _compatible(child_type, parent_type):
                raise SqlVecError(
                    f'foreign key constraint "{con.name}" cannot be implemented',
                    sqlstate="42804",
                    detail=f'Key columns "{col}" and "{ref}" are of incompatible types: '
                           f"{child_type.format()} and {parent_type.format()}.")


def after_alter(store: Store, table_id: int, attnums: dict) -> None:
    """After ALTER TABLE: referencing constraints name the referenced columns by their
    (possibly new) names."""
    table = store.tables.get(table_id)
    if table is None or not attnums:
        return
    names = {c.attnum: c.name for c in table.def_.columns}
    for (child_id, name), numbers in attnums.items():
        child = store.tables.get(child_id)
        con = child.def_.constraint(name) if child is not None else None
        if con is None or any(n not in names for n in numbers):
            continue
        new = tuple(names[n] for n in numbers)
        if new != con.ref_columns:
            store.alter_table(child_id, lambda x, name=name, new=new: x.with_changes(
                constraints=tuple(replace(c, ref_columns=new) if c.name == name else c
                                  for c in x.constraints)))
