"""Table constraints in DDL: UNIQUE, CHECK and PRIMARY KEY declared by CREATE TABLE, added
and dropped by ALTER TABLE, and CREATE UNIQUE INDEX.

Constraints become `ConstraintDef`s of the table definition (storage/schema.py), named as
PostgreSQL names them when no name is given: `<table>_<cols>_key` and `<table>_pkey` chosen
among relation names (their index shares the name), `<table>_<col>_check` or `<table>_check`
among the table's constraint names, numbered from 1 on a collision. A UNIQUE key is enforced
by the table's unique-key indexes (storage/keys.py), built and checked against the existing
rows when added; a CHECK is compiled and evaluated by execution/constraints.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlglot import exp

from sqlvec.catalog.catalog import Catalog
from sqlvec.catalog.objects import quote_ident
from sqlvec.errors import (
    DuplicateTable,
    FeatureNotSupported,
    Notice,
    NotNullViolation,
    SqlVecError,
    UndefinedColumn,
    UndefinedObject,
)
from sqlvec.execution.constraints import (
    ROW_CHECKS,
    compile_check,
    parse_condition,
    validate_existing,
)
from sqlvec.sql.binder import sql_type
from sqlvec.sql.dialect import to_sql
from sqlvec.storage.schema import ConstraintDef, TableDef

# PostgreSQL's NAMEDATALEN - 1: longer names are truncated.
_MAX_NAME = 63


@dataclass
class Spec:
    """One declared constraint before it is named and checked."""

    kind: str  # p | u | c | f
    name: str | None
    columns: tuple[str, ...] = ()
    condition: exp.Expression | None = None
    nulls_not_distinct: bool = False
    deferrable: bool = False
    deferred: bool = False
    column_level: str | None = None  # the column a column constraint is declared on
    reference: object = None  # FOREIGN KEY: its foreign_key_ddl.Reference


def _options(node: exp.Expression) -> tuple[bool, bool]:
    words = " ".join(str(o).upper() for o in node.args.get("options") or [])
    deferrable = "DEFERRABLE" in words and "NOT DEFERRABLE" not in words
    return deferrable, deferrable and "INITIALLY DEFERRED" in words


def _names(schema_node: exp.Expression | None) -> tuple[str, ...]:
    if schema_node is None:
        return ()
    items = schema_node.expressions if isinstance(schema_node, exp.Schema) else [schema_node]
    return tuple(i.name for i in items)


def spec_of(node: exp.Expression, name: str | None = None,
            column: str | None = None) -> Spec | None:
    """The constraint a table element (or, with `column`, a column constraint kind) declares;
    None when the node is no constraint this module handles."""
    if isinstance(node, exp.Constraint):
        (inner,) = node.expressions
        return spec_of(inner, node.name, column)
    if isinstance(node, exp.UniqueColumnConstraint):
        if node.args.get("include") is not None and node.args["include"].args.get("include"):
            raise FeatureNotSupported("UNIQUE ... INCLUDE is not supported")
        cols = _names(node.this) if node.this is not None else (column,)
        deferrable, deferred = _options(node)
        return Spec("u", name, tuple(cols), nulls_not_distinct=bool(node.args.get("nulls")),
                    column_level=column, deferrable=deferrable, deferred=deferred)
    if isinstance(node, exp.CheckColumnConstraint):
        return Spec("c", name, condition=node.this, column_level=column)
    if isinstance(node, exp.PrimaryKey):
        deferrable, deferred = _options(node)
        return Spec("p", name, tuple(e.name for e in node.expressions), deferrable=deferrable,
                    deferred=deferred)
    if isinstance(node, exp.PrimaryKeyColumnConstraint):
        deferrable, deferred = _options(node)
        return Spec("p", name, (column,) if column else (), deferrable=deferrable,
                    deferred=deferred)
    return None


def primary_key_options(item: exp.Expression) -> tuple[bool, bool]:
    """(DEFERRABLE, INITIALLY DEFERRED) of the PRIMARY KEY a table element declares."""
    for node in item.find_all(exp.PrimaryKey, exp.PrimaryKeyColumnConstraint):
        return _options(node)
    return False, False


def column_specs(item: exp.ColumnDef) -> list[Spec]:
    """The UNIQUE and CHECK constraints (and a named PRIMARY KEY) declared on a column."""
    out = []
    for constraint in item.args.get("constraints") or []:
        kind = constraint.args.get("kind")
        if isinstance(kind, (exp.UniqueColumnConstraint, exp.CheckColumnConstraint)) or (
                isinstance(kind, exp.PrimaryKeyColumnConstraint) and constraint.name):
            out.append(spec_of(kind, constraint.name or None, item.name))
    return out


def without_duplicates(specs: list[Spec], primary_key: list[str]) -> list[Spec]:
    """CREATE TABLE's constraints without a UNIQUE that repeats an earlier one (or the
    primary key) exactly: PostgreSQL builds one index for them, named by the first that
    has a name."""
    out: list[Spec] = []
    for spec in specs:
        if spec.kind == "u":
            if list(spec.columns) == list(primary_key) and not spec.nulls_not_distinct:
                continue
            prior = next((p for p in out if p.kind == "u" and p.columns == spec.columns and
                          p.nulls_not_distinct == spec.nulls_not_distinct), None)
            if prior is not None:
                if prior.name is None:
                    prior.name = spec.name
                continue
        out.append(spec)
    return out


# Names ------------------------------------------------------------------------------------


def _truncated(base: str, label: str) -> str:
    """`<base>_<label>` within 63 bytes, shortening `base` as PostgreSQL's makeObjectName."""
    room = _MAX_NAME - len(label) - 1
    return f"{base[:room]}_{label}"


def _pick(base: str, label: str, taken) -> str:
    name = _truncated(base, label)
    i = 0
    while taken(name):
        i += 1
        name = _truncated(base, f"{label}{i}")
    return name


def _object_name(name1: str, name2: str, label: str) -> str:
    """PostgreSQL's makeObjectName: `<name1>_<name2>_<label>` within 63 bytes, shortening
    the longer of the two names one character at a time."""
    room = _MAX_NAME - len(label) - 2
    n1, n2 = len(name1), len(name2)
    while n1 + n2 > room:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    return f"{name1[:n1]}_{name2[:n2]}_{label}"


def _pick_object_name(name1: str, name2: str, label: str, taken) -> str:
    name = _object_name(name1, name2, label)
    i = 0
    while taken(name):
        i += 1
        name = _object_name(name1, name2, f"{label}{i}")
    return name


# Operators PostgreSQL's deparser prints between operands, by sqlglot class.
_OPERATORS = {
    exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
    exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%",
    exp.DPipe: "||", exp.Like: "~~", exp.ILike: "~~*", exp.RegexpLike: "~",
    exp.RegexpILike: "~*",
}
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike,
                exp.RegexpLike, exp.RegexpILike)
# A literal compared with a column of these types is shown cast to the type, as the parser
# coerced it (`'x'::text`, `(0)::numeric`).
_LITERAL_CASTS = {"text": "text", "numeric": "numeric", "float8": "double precision",
                  "float4": "real", "bpchar": "bpchar"}


def _list_in(node: exp.Expression) -> bool:
    """`x IN (a, b, ...)` with a list (not a subquery)."""
    return isinstance(node, exp.In) and bool(node.expressions) and \
        not node.args.get("query") and not node.args.get("unnest")


class _Deparser:
    """A CHECK condition printed as PostgreSQL's ruleutils prints a stored expression: every
    operator expression in parentheses (pg_get_constraintdef), or only where needed (its
    pretty form, which psql shows); literals compared with a column carry their cast."""

    def __init__(self, table_def: TableDef, pretty: bool) -> None:
        self.types = {c.name: c.type for c in table_def.columns}
        self.pretty = pretty

    def __call__(self, node: exp.Expression, top: bool = False) -> str:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, (exp.And, exp.Or)):
            word = "AND" if isinstance(node, exp.And) else "OR"
            parts = []
            for side in node.flatten():  # a chain of ANDs (ORs) is one list, as stored
                inner = side
                while isinstance(inner, exp.Paren):
                    inner = inner.this
                text = self(inner)
                if self.pretty and isinstance(inner, (exp.And, exp.Or)) and \
                        type(inner) is not type(node):
                    text = f"({text})"
                parts.append(text)
            return self._wrap(f" {word} ".join(parts), top)
        if isinstance(node, exp.Not):
            inner = node.this
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Is):
                return self._wrap(f"{self._operand(inner.this)} IS NOT "
                                  f"{to_sql(inner.expression).upper()}", top)
            if _list_in(inner):  # NOT IN: x <> 3, x <> ALL (ARRAY[3, 4])
                if len(inner.expressions) == 1:
                    return self(exp.NEQ(this=inner.this, expression=inner.expressions[0]), top)
                kind = self._type_of(inner.this)
                items = ", ".join(self._operand(e, kind) for e in inner.expressions)
                return self._wrap_array(f"{self._operand(inner.this)} <> ALL (ARRAY[{items}])",
                                        top)
            if self.pretty and not isinstance(inner, (exp.And, exp.Or)):
                return f"NOT {self(inner)}"
            return self._wrap(f"NOT {self._operand(inner)}", top)
        if isinstance(node, exp.Is):
            word = "IS NOT" if node.args.get("negate") else "IS"
            return self._wrap(f"{self._operand(node.this)} {word} "
                              f"{to_sql(node.expression).upper()}", top)
        if isinstance(node, exp.Between) and not node.args.get("symmetric"):
            # PostgreSQL stores BETWEEN as the two comparisons.
            return self(exp.And(this=exp.GTE(this=node.this.copy(), expression=node.args["low"]),
                                expression=exp.LTE(this=node.this.copy(),
                                                   expression=node.args["high"])), top)
        if _list_in(node):
            if len(node.expressions) == 1:
                return self(exp.EQ(this=node.this, expression=node.expressions[0]), top)
            kind = self._type_of(node.this)
            items = ", ".join(self._operand(e, kind) for e in node.expressions)
            return self._wrap_array(f"{self._operand(node.this)} = ANY (ARRAY[{items}])", top)
        if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast):
            try:
                target = sql_type(node.to).format()
            except SqlVecError:
                return to_sql(node)
            inner = node.this
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Literal) and inner.is_string:
                return f"{to_sql(inner)}::{target}"
            text = self._operand(inner)
            return f"{text}::{target}" if self.pretty else f"({text})::{target}"
        op = _OPERATORS.get(type(node))
        if op is not None and isinstance(node.expression, (exp.Any, exp.All)):
            word = "ANY" if isinstance(node.expression, exp.Any) else "ALL"
            array = node.expression.this
            while isinstance(array, exp.Paren):
                array = array.this
            return self._wrap_array(f"{self._operand(node.this)} {op} {word} ({to_sql(array)})",
                                    top)
        if op is not None:
            left, right = node.this, node.expression
            if isinstance(node, _COMPARISONS):
                left, right = self._as_text(left, right), self._as_text(right, left)
                left_text = self._operand(left, self._type_of(right))
                right_text = self._operand(right, self._type_of(left))
            else:  # arithmetic: a constant takes the type of the other operand
                left_text = self._operand(left, self._type_of(right))
                right_text = self._operand(right, self._type_of(left))
            return self._wrap(f"{left_text} {op} {right_text}", top)
        if isinstance(node, exp.Column) and not node.table:
            return quote_ident(node.name)  # `"position"`: a keyword is quoted, as ruleutils does
        if isinstance(node, exp.Func) and not isinstance(node, (exp.Cast, exp.Case)):
            text = to_sql(node.transform(_quoted_columns))
            name, paren, rest = text.partition("(")
            if not paren or not name.isidentifier():
                return text
            given = {k for k, v in node.args.items() if v}
            args = node.expressions if isinstance(node, exp.Anonymous) else \
                [node.this] if given == {"this"} else None
            if args is None:
                return f"{name.lower()}({rest}"
            return f"{name.lower()}({', '.join(self._argument(a) for a in args)})"
        return to_sql(node)

    def _argument(self, node: exp.Expression) -> str:
        """A function's argument: PostgreSQL has no varchar functions, so a varchar column
        is passed cast to text (`length((c)::text)`)."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = self._type_of(node)
        if isinstance(node, exp.Column) and kind is not None and kind.name == "varchar":
            name = quote_ident(node.name)
            return f"{name}::text" if self.pretty else f"({name})::text"
        return self(node)

    def _wrap_array(self, text: str, top: bool) -> str:
        """`x = ANY (ARRAY[...])`: parenthesized inside another expression, pretty or not."""
        return text if self.pretty and top else f"({text})"

    def _wrap(self, text: str, top: bool) -> str:
        return text if self.pretty and not top else f"({text})" if not self.pretty else text

    def _as_text(self, node: exp.Expression, other: exp.Expression) -> exp.Expression:
        """A varchar column compared with a string literal: PostgreSQL compares them as
        text, and shows the column cast (`(c)::text`)."""
        kind = self._type_of(node)
        while isinstance(other, exp.Paren):
            other = other.this
        if kind is not None and kind.name == "varchar" and isinstance(other, exp.Literal) \
                and other.is_string:
            return exp.Cast(this=node, to=exp.DataType.build("text"))
        return node

    def _type_of(self, node: exp.Expression):
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column):
            return self.types.get(node.name)
        if isinstance(node, exp.Cast):
            try:
                return sql_type(node.to)
            except SqlVecError:
                return None
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
            return self._type_of(node.this) or self._type_of(node.expression)
        return None

    def _operand(self, node: exp.Expression, other=None) -> str:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Literal) and other is not None:
            cast = _LITERAL_CASTS.get(other.name)
            if node.is_string and cast == "text":
                return f"{to_sql(node)}::text"
            if not node.is_string and cast in ("numeric", "double precision", "real"):
                number = to_sql(node)
                return f"{number}::{cast}" if self.pretty else f"({number})::{cast}"
        text = self(node)
        if self.pretty and (isinstance(node, tuple(_OPERATORS)) or
                            isinstance(node, (exp.And, exp.Or))):
            return f"({text})"
        return text


def _quoted_columns(node: exp.Expression) -> exp.Expression:
    """A column inside a function's arguments, named as quote_ident names it."""
    if isinstance(node, exp.Column) and not node.table:
        name = node.name
        return exp.column(exp.to_identifier(name, quoted=quote_ident(name) != name))
    return node


def check_condition_text(condition: exp.Expression, table_def: TableDef,
                         pretty: bool = False) -> str:
    """A CHECK's condition as PostgreSQL prints it: `(a > 0)` for pg_get_constraintdef
    (`((a > 0) AND (b <> 'x'::text))`), or its pretty form `a > 0 AND b <> 'x'::text`."""
    return _Deparser(table_def, pretty)(condition, top=True)


def name_constraints(table: str, schema: str, specs: list[Spec], catalog: Catalog,
                     existing: TableDef | None) -> list[Spec]:
    """Give every unnamed constraint PostgreSQL's default name; refuse a name in use."""
    used_relations: set[str] = set()
    used_constraints: set[str] = set()
    if existing is not None:
        used_constraints |= {c.name for c in existing.constraints}
        if existing.primary_key:
            used_constraints.add(existing.pkey_name)

    def relation_taken(name: str) -> bool:
        return name in used_relations or catalog.relation_exists(name, schema)

    def constraint_taken(name: str) -> bool:
        return name in used_constraints or name in used_relations
    for spec in specs:  # given names first: a default name never takes one of them
        if spec.name:
            if spec.kind in ("u", "p") and relation_taken(spec.name):
                raise DuplicateTable(f'relation "{spec.name}" already exists')
            if spec.name in used_constraints:
                raise SqlVecError(f'constraint "{spec.name}" for relation "{table}" already '
                                  "exists", sqlstate="42710")
            (used_relations if spec.kind in ("u", "p") else used_constraints).add(spec.name)
    for spec in specs:
        if spec.name:
            continue
        if spec.kind == "p":
            spec.name = _pick(table, "pkey", relation_taken)
            used_relations.add(spec.name)
        elif spec.kind == "u":
            spec.name = _pick(f"{table}_{'_'.join(spec.columns)}", "key", relation_taken)
            used_relations.add(spec.name)
        elif spec.kind == "c":
            cols = spec.column_level and [spec.column_level]
            if cols is None:
                cols = list(dict.fromkeys(c.name for c in spec.condition.find_all(exp.Column)))
            base = f"{table}_{cols[0]}" if len(cols) == 1 else table
            spec.name = _pick(base, "check", constraint_taken)
            used_constraints.add(spec.name)
        elif spec.kind == "f":
            spec.name = _pick_object_name(table, "_".join(spec.columns)[:_MAX_NAME], "fkey",
                                          constraint_taken)
            used_constraints.add(spec.name)
    return specs


# Building definitions ---------------------------------------------------------------------


def constraint_defs(table_def: TableDef, specs: list[Spec], catalog: Catalog) -> TableDef:
    """`table_def` with the named UNIQUE and CHECK specs added (primary keys are the
    caller's): columns checked to exist, CHECK conditions compiled (42703, 42804 here)."""
    added = []
    for spec in specs:
        if spec.kind in ("p", "f"):  # foreign keys: foreign_key_ddl.build
            continue
        for col in spec.columns:
            if not table_def.has_column(col):
                raise UndefinedColumn(f'column "{col}" named in key does not exist')
        if spec.kind == "u":
            types = [table_def.column(c).type for c in spec.columns]
            if any(t.is_vector for t in types):
                raise FeatureNotSupported("UNIQUE constraints on vector columns are not supported")
            added.append(ConstraintDef(spec.name, "u", catalog.store.allocate_oid(),
                                       spec.columns, nulls_not_distinct=spec.nulls_not_distinct,
                                       index_oid=catalog.store.allocate_oid(),
                                       deferrable=spec.deferrable, deferred=spec.deferred))
        else:
            # The statement's condition (its errors point into the statement), then the text
            # the definition keeps, which every write compiles.
            compile_check(table_def, spec.condition, ROW_CHECKS.functions())
            text = check_condition_text(spec.condition, table_def)
            compile_check(table_def, text, ROW_CHECKS.functions())
            cols = tuple(dict.fromkeys(c.name for c in spec.condition.find_all(exp.Column)))
            added.append(ConstraintDef(
                spec.name, "c", catalog.store.allocate_oid(), cols, expression=text,
                pretty=check_condition_text(spec.condition, table_def, pretty=True)))
    return table_def.with_changes(constraints=table_def.constraints + tuple(added))


def set_primary_key(table_def: TableDef, spec: Spec, catalog: Catalog) -> TableDef:
    """`table_def` with `spec` as its primary key (its columns made NOT NULL)."""
    if table_def.primary_key:
        raise SqlVecError(f'multiple primary keys for table "{table_def.name}" are not allowed',
                          sqlstate="42P16")
    for col in spec.columns:
        if not table_def.has_column(col):
            raise UndefinedColumn(f'column "{col}" of relation "{table_def.name}" does not '
                                  "exist")
    columns = tuple(replace(c, not_null=True) if c.name in spec.columns else c
                    for c in table_def.columns)
    default_name = spec.name == f"{table_def.name}_pkey"
    return table_def.with_changes(
        columns=columns, primary_key=spec.columns,
        primary_key_name=None if default_name else spec.name,
        primary_key_oid=catalog.store.allocate_oid(),
        primary_key_deferrable=spec.deferrable, primary_key_deferred=spec.deferred)


# ALTER TABLE ------------------------------------------------------------------------------


def add_constraint(action: exp.AddConstraint, table, catalog: Catalog, not_valid: bool) -> None:
    """ALTER TABLE ... ADD [CONSTRAINT name] UNIQUE | CHECK | PRIMARY KEY, validated against
    the rows already in the table (23505 / 23514 / 23502), unless NOT VALID (CHECK only)."""
    for node in action.expressions:
        spec = spec_of(node)
        if spec is None:
            raise FeatureNotSupported(f"ALTER TABLE ADD {to_sql(node)} is not supported")
        d = table.def_
        (spec,) = name_constraints(d.name, d.schema, [spec], catalog, d)
        if spec.kind == "p":
            snapshot = table.snapshot()
            for col in spec.columns:
                if d.has_column(col) and not d.column(col).not_null and snapshot.row_count:
                    nulls = sum(part.column(0).null_count for part in snapshot.scan([col]))
                    if nulls:
                        raise NotNullViolation(
                            f'column "{col}" of relation "{d.name}" contains null values',
                            schema=d.schema, table=d.name, column=col)
            new_def = set_primary_key(d, spec, catalog)
        else:
            try:
                new_def = constraint_defs(d, [spec], catalog)
            except SqlVecError as error:
                error.position = None  # PostgreSQL places no name of ALTER TABLE's CHECK
                raise
            if spec.kind == "c":
                constraint = new_def.constraints[-1]
                if not_valid:
                    new_def = new_def.with_changes(constraints=new_def.constraints[:-1] + (
                        replace(constraint, validated=False),))
                else:
                    validate_existing(d, constraint,
                                      lambda: list(table.snapshot().scan(None)), ROW_CHECKS)
        # A unique key is built and checked against the rows under the store's commit lock.
        catalog.store.alter_table(table.id, lambda _old, new_def=new_def: new_def)


def drop_constraint(action: exp.Drop, table, catalog: Catalog,
                    notices: list[Notice] | None = None) -> None:
    """ALTER TABLE ... DROP CONSTRAINT [IF EXISTS] name (42704 when missing; with IF EXISTS,
    PostgreSQL's NOTICE in `notices`)."""
    for target in action.args.get("tables") or []:
        name = target.name
        d = table.def_
        if d.primary_key and d.pkey_name == name:
            catalog.store.alter_table(table.id, lambda x: x.with_changes(
                primary_key=(), primary_key_name=None, primary_key_oid=0))
            continue
        if d.constraint(name) is None:
            if action.args.get("exists"):
                if notices is not None:
                    notices.append(Notice.notice(
                        f'constraint "{name}" of relation "{d.name}" does not exist, skipping'))
                continue
            raise UndefinedObject(f'constraint "{name}" of relation "{d.name}" does not exist')
        catalog.store.alter_table(table.id, lambda x, name=name: x.with_changes(
            constraints=tuple(c for c in x.constraints if c.name != name)))


def refuse_constraint_index(catalog: Catalog, name: str, schema: str | None,
                            search_path: list[str]) -> None:
    """DROP INDEX of the index of a PRIMARY KEY or UNIQUE constraint: PostgreSQL's 2BP01
    (the constraint is dropped with ALTER TABLE ... DROP CONSTRAINT)."""
    for table in catalog.store.tables.values():
        d = table.def_
        if (schema or (d.schema if d.schema in search_path else None)) != d.schema:
            continue
        for key in d.unique_keys:
            if key.name == name and (key.primary or d.constraint(name) is not None):
                raise SqlVecError(
                    f"cannot drop index {name} because constraint {name} on table {d.name} "
                    "requires it", sqlstate="2BP01",
                    hint=f"You can drop constraint {name} on table {d.name} instead.")


def unique_index_columns(table_def: TableDef, columns: list[str]) -> None:
    """CREATE UNIQUE INDEX: only on scalar columns."""
    for col in columns:
        if table_def.column(col).type.is_vector:
            raise FeatureNotSupported("UNIQUE indexes on vector columns are not supported")


def columns_after_rename(table_def: TableDef, old: str, new: str) -> tuple[ConstraintDef, ...]:
    """The constraints with column `old` renamed to `new` (CHECK text included)."""
    out = []
    for c in table_def.constraints:
        cols = tuple(new if x == old else x for x in c.columns)
        expression = c.expression
        if c.kind == "c" and old in c.columns and expression:
            cond = parse_condition(expression)
            for col in cond.find_all(exp.Column):
                if col.name == old:
                    col.set("this", exp.to_identifier(new))
            renamed = table_def.with_changes(columns=tuple(
                replace(col, name=new) if col.name == old else col for col in table_def.columns))
            expression = check_condition_text(cond, renamed)
            out.append(replace(c, columns=cols, expression=expression,
                               pretty=check_condition_text(cond, renamed, pretty=True)))
            continue
        refs = c.ref_columns
        if c.kind == "f" and c.ref_table == table_def.id:  # a table referencing itself
            refs = tuple(new if x == old else x for x in refs)
        out.append(replace(c, columns=cols, expression=expression, ref_columns=refs,
                           delete_set_columns=tuple(new if x == old else x
                                                    for x in c.delete_set_columns)))
    return tuple(out)
