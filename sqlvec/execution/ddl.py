"""CREATE / DROP / ALTER statements: tables, indexes, schemas, sequences, extensions, databases.

DDL takes effect at once in the store: durably (a new manifest version) in autocommit, in
memory only inside a transaction block, whose COMMIT writes it and whose ROLLBACK undoes it
(session/transactions.py, `Store.begin_deferred`). ALTER TABLE's column and table actions are
in alter.py; `alter_table` here gets the constraint actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sqlglot import exp

from sqlvec.catalog.catalog import Catalog
from sqlvec.catalog.sequences import SequenceOptions
from sqlvec.errors import (
    DataException,
    DatatypeMismatch,
    DuplicateTable,
    FeatureNotSupported,
    Notice,
    SqlVecError,
    UndefinedColumn,
    UndefinedObject,
    UndefinedTable,
)
from sqlvec.execution import constraint_ddl as cddl
from sqlvec.execution import foreign_key_ddl as fkddl
from sqlvec.execution import sequence_ddl
from sqlvec.sql import index_expressions as ixexpr
from sqlvec.sql.binder import SYSTEM_COLUMNS, serial_kind, sql_type
from sqlvec.sql.dialect import to_sql
from sqlvec.storage import access_methods
from sqlvec.storage.schema import ColumnDef, IndexDef, TableDef
from sqlvec.storage.store import CreateIndexProgress
from sqlvec.types import SqlType


def _literal_default(e: exp.Expression) -> str:
    """A column default's stored text, as pg_get_expr prints it (what `\\d` and pg_dump show):
    function names in lower case and a typed constant as `'x'::text`, so a default restored
    from a dump reads as the original does."""
    def constant_cast(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and \
                node.this.is_string:
            try:
                shown = sql_type(node.args["to"]).info.display
            except SqlVecError:
                return node
            quoted = node.this.this.replace("'", "''")
            return exp.Var(this=f"'{quoted}'::{shown}")
        return node

    return to_sql(e.copy().transform(constant_cast), normalize_functions="lower")


def create_table(stmt: exp.Create, catalog: Catalog, search_path: list[str]) -> str:
    """CREATE TABLE: columns, types, defaults, serial sequences and the primary key, checked and
    committed to the catalog; returns the command tag."""
    schema_node = stmt.this
    if not isinstance(schema_node, exp.Schema):
        if stmt.args.get("expression") is not None:
            raise FeatureNotSupported("CREATE TABLE ... AS is not supported")
        raise SqlVecError("syntax error in CREATE TABLE", sqlstate="42601")
    table = schema_node.this
    props = stmt.args.get("properties")
    if props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions):
        raise FeatureNotSupported("temporary tables are not supported")
    name = table.name
    schema = catalog.creation_schema(table.db or None, search_path)
    if catalog.relation_exists(name, schema):
        if stmt.args.get("exists"):
            return "NOTICE"
        raise DuplicateTable(f'relation "{name}" already exists')
    columns: list[ColumnDef] = []
    primary_key: list[str] = []
    pkey_name: str | None = None
    pkey_options = (False, False)  # DEFERRABLE, INITIALLY DEFERRED
    specs: list[cddl.Spec] = []  # UNIQUE and CHECK constraints, in declaration order
    # (column, its SEQUENCE NAME if given, options)
    sequences: list[tuple[str, str | None, SequenceOptions]] = []
    for item in schema_node.expressions:
        if isinstance(item, exp.ColumnDef):
            col, pk, serial = _column_def(item, len(columns) + 1)
            if any(c.name == col.name for c in columns):
                raise SqlVecError(f'column "{col.name}" specified more than once', sqlstate="42701")
            columns.append(col)
            if pk:
                primary_key.append(col.name)
                pkey_options = cddl.primary_key_options(item)
            if serial:
                options = sequence_ddl.column_options(col.type.name, item)
                sequences.append((col.name, sequence_ddl.named_sequence(options, schema),
                                  options))
            for spec in cddl.column_specs(item):
                if spec.kind == "p":
                    pkey_name = spec.name
                else:
                    specs.append(spec)
            for fk_name, fk_cols, reference in fkddl.column_foreign_keys(item):
                specs.append(cddl.Spec("f", fk_name, fk_cols, reference=reference))
        elif isinstance(item, exp.PrimaryKey):
            primary_key = [c.name for c in item.expressions]
            pkey_options = cddl.primary_key_options(item)
        elif cddl.spec_of(item) is not None:
            spec = cddl.spec_of(item)
            if spec.kind == "p":
                if primary_key:
                    raise SqlVecError(f'multiple primary keys for table "{name}" are not allowed',
                                      sqlstate="42P16")
                primary_key, pkey_name = list(spec.columns), spec.name
                pkey_options = (spec.deferrable, spec.deferred)
            else:
                specs.append(spec)
        elif fkddl.is_foreign_key(item):
            fk_name, fk_cols, reference = fkddl.foreign_key_of(item)
            specs.append(cddl.Spec("f", fk_name, fk_cols, reference=reference))
        else:
            raise FeatureNotSupported(f"table element {to_sql(item)} is not supported")
    names = [c.name for c in columns]
    for key in primary_key:
        if key not in names:
            raise UndefinedColumn(f'column "{key}" named in key does not exist')
    if primary_key:
        columns = [replace(c, not_null=True) if c.name in primary_key else c for c in columns]
    for col_name, named, options in sequences:
        seq = named or _unique_relation_name(catalog, f"{name}_{col_name}_seq", schema)
        key = catalog.create_sequence(seq, schema, options, owned_by=f"pending.{col_name}")
        # Qualified outside public, as PostgreSQL prints it: the default must find the
        # sequence whatever the search_path of the session inserting.
        reference = sequence_ddl.default_reference(key)
        columns = [replace(c, default=f"nextval('{reference}'::regclass)")
                   if c.name == col_name else c for c in columns]
    specs = cddl.without_duplicates(specs, primary_key)
    names = [c.name for c in columns]
    for spec in specs:
        for col in spec.columns:
            if col not in names:
                if spec.kind == "f":
                    raise UndefinedColumn(f'column "{col}" referenced in foreign key '
                                          "constraint does not exist")
                raise UndefinedColumn(f'column "{col}" named in key does not exist')
    named = cddl.name_constraints(
        name, schema, ([cddl.Spec("p", pkey_name, tuple(primary_key))] if primary_key else [])
        + specs, catalog, None)
    if primary_key:
        pkey_name = named[0].name
    staged = cddl.constraint_defs(TableDef(0, 0, name, schema, tuple(
        c if c.attnum else replace(c, attnum=i + 1) for i, c in enumerate(columns))),
        specs, catalog)
    staged = staged.with_changes(primary_key=tuple(primary_key))
    foreign = [fkddl.build(staged, spec.name, spec.columns, spec.reference,
                           fkddl.resolve_target(spec.reference, catalog, search_path, staged),
                           catalog) for spec in named if spec.kind == "f"]
    staged = staged.with_changes(constraints=staged.constraints + tuple(foreign))
    table_def = catalog.store.create_table(name, columns, schema=schema, primary_key=primary_key)
    if foreign:  # a table referencing itself: its id is known now
        staged = staged.with_changes(constraints=tuple(
            replace(c, ref_table=table_def.id) if c.kind == "f" and c.ref_table == 0 else c
            for c in staged.constraints))
    if staged.constraints or (pkey_name and pkey_name != f"{name}_pkey") or any(pkey_options):
        table_def = catalog.store.alter_table(table_def.id, lambda x: x.with_changes(
            constraints=staged.constraints,
            primary_key_name=pkey_name if pkey_name != f"{name}_pkey" else None,
            primary_key_deferrable=pkey_options[0], primary_key_deferred=pkey_options[1]))
    if sequences:
        catalog.store.update_catalog(lambda c: {**c, "sequences": {
            k: ({**v, "owned_by": v["owned_by"].replace("pending.", f"{table_def.id}.")}
                if (v.get("owned_by") or "").startswith("pending.") else v)
            for k, v in c["sequences"].items()}})
    return "CREATE TABLE"


def _unique_relation_name(catalog: Catalog, base: str, schema: str) -> str:
    """`base`, or `base1`, `base2`, ... : the first name no relation of `schema` has."""
    name = base
    i = 1
    while catalog.relation_exists(name, schema):
        name = f"{base}{i}"
        i += 1
    return name


def _check_not_system(name: str) -> None:
    """Every table has the system columns (`ctid`, `xmin`...): a column may not take a name."""
    if name in SYSTEM_COLUMNS:
        raise SqlVecError(f'column name "{name}" conflicts with a system column name',
                          sqlstate="42701")


def _column_def(item: exp.ColumnDef, attnum: int) -> tuple[ColumnDef, bool, bool]:
    _check_not_system(item.name)
    kind = item.args.get("kind")
    if kind is None:
        raise SqlVecError(f'column "{item.name}" has no type', sqlstate="42601")
    serial = serial_kind(kind) is not None
    col_type = sql_type(kind)
    not_null = serial
    default = None
    pk = False
    identity = "serial" if serial else None
    for constraint in item.args.get("constraints") or []:
        k = constraint.args.get("kind")
        if isinstance(k, exp.NotNullColumnConstraint):
            not_null = not k.args.get("allow_null")
        elif isinstance(k, exp.PrimaryKeyColumnConstraint):
            pk = True
            not_null = True
        elif isinstance(k, exp.DefaultColumnConstraint):
            default = _literal_default(k.this)
        elif isinstance(k, exp.GeneratedAsIdentityColumnConstraint):
            sequence_ddl.check_identity_type(col_type.name)
            identity = "always" if k.args.get("this") else "by default"
            serial = True
            not_null = True
        elif isinstance(k, (exp.UniqueColumnConstraint, exp.CheckColumnConstraint)):
            continue  # constraint_ddl.column_specs reads these
        elif isinstance(k, exp.Reference):
            continue  # foreign_key_ddl.column_foreign_keys reads these
        elif isinstance(k, exp.CollateColumnConstraint):
            continue
        else:
            raise FeatureNotSupported(f"column constraint {to_sql(constraint)} is not supported")
    if col_type.is_vector and col_type.dims is not None and default is not None:
        pass
    return ColumnDef(item.name, col_type, attnum, not_null=not_null, default=default,
                     identity=identity), pk, serial


def drop(stmt: exp.Drop, catalog: Catalog, search_path: list[str], database=None,
         notices: list[Notice] | None = None) -> str:
    """DROP of tables, indexes, schemas, sequences, databases; with IF EXISTS, each missing
    object is PostgreSQL's NOTICE `table "t" does not exist, skipping` in `notices`."""
    kind = (stmt.args.get("kind") or "").upper()
    if_exists = bool(stmt.args.get("exists"))
    cascade = bool(stmt.args.get("cascade"))
    targets = stmt.args.get("tables") or [stmt.this]
    notices = [] if notices is None else notices

    def skip(t: exp.Expression, what: str) -> None:
        """A missing object under IF EXISTS: a missing schema is named instead, as PostgreSQL
        does (its lookup fails there first)."""
        schema = t.args.get("db")
        if schema is not None and kind != "DATABASE" and not catalog.has_schema(schema.name):
            notices.append(skipping_notice("schema", schema.name))
        else:
            notices.append(skipping_notice(what, t.name))

    if kind == "TABLE":
        found = []
        for t in targets:
            table = catalog.find_table(t.name, t.db or None, search_path)
            if table is None:
                if if_exists:
                    skip(t, "table")
                    continue
                raise UndefinedTable(f'table "{t.name}" does not exist')
            found.append(table)
        for table in found:
            catalog.drop_table(table)
        return "DROP TABLE"
    if kind == "INDEX":
        for t in targets:
            cddl.refuse_constraint_index(catalog, t.name, t.db or None, search_path)
            try:
                catalog.store.drop_index(t.name)
            except UndefinedObject:
                if not if_exists:
                    raise
                skip(t, "index")
        return "DROP INDEX"
    if kind == "SCHEMA":
        for t in targets:
            name = t.db or t.name
            if if_exists and not catalog.has_schema(name):
                notices.append(skipping_notice("schema", name))
                continue
            catalog.drop_schema(name, if_exists=if_exists, cascade=cascade)
        return "DROP SCHEMA"
    if kind == "SEQUENCE":
        keys: list[str] = []
        for t in targets:
            key = f"{t.db or catalog.creation_schema(None, search_path)}.{t.name}"
            if key not in catalog.state["sequences"]:
                if if_exists:
                    skip(t, "sequence")
                    continue
                raise UndefinedTable(f'sequence "{t.name}" does not exist')
            keys.append(key)
        if keys:
            sequence_ddl.drop_sequences(catalog, keys, cascade, notices)
        return "DROP SEQUENCE"
    if kind == "DATABASE":
        if database is None:
            raise FeatureNotSupported("DROP DATABASE is not available here")
        for t in targets:
            if t.name not in database.databases():
                if if_exists:
                    skip(t, "database")
                    continue
                raise UndefinedObject(f'database "{t.name}" does not exist', sqlstate="3D000")
            database.drop_database(t.name)
        return "DROP DATABASE"
    raise FeatureNotSupported(f"DROP {kind} is not supported")


def skipping_notice(what: str, name: str) -> Notice:
    """DROP ... IF EXISTS of a missing object: PostgreSQL's NOTICE (dropcmds.c), 00000."""
    return Notice.notice(f'{what} "{name}" does not exist, skipping')


def create_index(stmt: exp.Create, catalog: Catalog, search_path: list[str], progress=None,
                 track: Callable[[CreateIndexProgress], None] | None = None) -> str:
    """CREATE INDEX: a btree, or a vector index (hnsw) with its operator class and options
    checked by its access method; returns the command tag. `track` receives the build's
    progress record before the build starts (pg_stat_progress_create_index reads it)."""
    index = stmt.this
    table_node = index.args.get("table")
    table = catalog.table(table_node.name, table_node.db or None, search_path)
    params = index.args.get("params")
    using = params.args.get("using") if params is not None else None
    method = using.name.lower() if using is not None else "btree"
    unique = bool(stmt.args.get("unique"))
    cols = params.args.get("columns") or []
    col_names, opclass, keys = [], None, []
    expression: exp.Expression | None = None
    for c in cols:
        inner = c.this if isinstance(c, exp.Ordered) else c
        if isinstance(inner, exp.Opclass):
            opclass = inner.expression.name.lower()
            inner = inner.this
        keys.append(inner)
        if not isinstance(inner, exp.Column):
            # An expression key: the columns it reads must exist, its functions be immutable.
            for ref in inner.find_all(exp.Column):
                if not table.def_.has_column(ref.name):
                    raise UndefinedColumn(f'column "{ref.name}" does not exist')
            ixexpr.check_immutable(inner)
            if expression is not None or len(cols) > 1:
                raise FeatureNotSupported("indexes with several keys including expressions are "
                                          "not supported")
            expression = inner
            for ref in inner.find_all(exp.Column):
                if ref.name not in col_names:
                    col_names.append(ref.name)
            continue
        if not table.def_.has_column(inner.name):
            raise UndefinedColumn(f'column "{inner.name}" does not exist')
        col_names.append(inner.name)
    key_type = None
    if expression is not None:
        if unique:
            raise FeatureNotSupported("unique expression indexes are not supported")
        if method not in ("btree", "gin"):
            key_type = _vector_key(table.def_, expression, col_names)
    given: list[tuple[str, object]] = []
    with_ = params.args.get("with_storage") if params is not None else None
    if with_ and not isinstance(with_, bool):
        props = with_ if isinstance(with_, list) else (
            with_.expressions if hasattr(with_, "expressions") else [])
        for prop in props:
            key = prop.this.name.lower() if isinstance(prop, (exp.EQ, exp.Property)) else str(prop)
            value = prop.args.get("value") if isinstance(prop, exp.Property) else prop.expression
            given.append((key, _option_value(value)))
    nulls_not_distinct = bool(params.meta.get("nulls_not_distinct")) if params is not None \
        else False
    if unique:
        cddl.unique_index_columns(table.def_, col_names)
        if params is not None and params.args.get("where") is not None:
            raise FeatureNotSupported("partial unique indexes are not supported")
        if params is not None and params.args.get("include"):
            raise FeatureNotSupported("unique indexes with INCLUDE are not supported")
    if unique and method != "btree":
        raise FeatureNotSupported(f'access method "{method}" does not support unique indexes')
    if method == "btree":
        options = dict(given)
    elif method == "gin":
        opclass, options = _gin_definition(table.def_, col_names, opclass, given, expression)
    else:  # a vector access method (0A000 for any other), checked as its declaration says
        columns = [table.def_.column(c) for c in col_names]
        if key_type is not None:  # checked as a column of the expression's type
            columns = [replace(columns[0], type=SqlType(key_type, columns[0].type.typmod))]
        opclass, options = access_methods.check_definition(method, columns, opclass, given)
    name = index.name or _default_index_name(
        catalog, table.def_.name,
        [c.name if isinstance(c, exp.Column) else ixexpr.figure_name(c) for c in keys],
        table.def_.schema)
    if catalog.relation_exists(name, table.def_.schema):
        if stmt.args.get("exists"):
            return "NOTICE"
        raise DuplicateTable(f'relation "{name}" already exists')
    definition = IndexDef(name=name, oid=catalog.store.allocate_oid(), columns=tuple(col_names),
                          method=method, opclass=opclass, options=options, unique=unique,
                          nulls_not_distinct=unique and nulls_not_distinct,
                          expression=ixexpr.deparse(expression) if expression is not None
                          else None,
                          expression_sql=ixexpr.deparse(expression, pretty=False)
                          if expression is not None else None,
                          key_type=key_type)
    report = CreateIndexProgress(table.def_.oid, definition.oid)
    if track is not None:
        track(report)
    catalog.store.create_index(table.id, definition, progress=progress, report=report)
    return "CREATE INDEX"


_GIN_OPTIONS = ("fastupdate", "gin_pending_list_limit")


def _gin_definition(table: TableDef, col_names: list[str], opclass: str | None,
                    given: list[tuple[str, object]], expression: exp.Expression | None
                    ) -> tuple[str, dict]:
    """A GIN index's operator class (jsonb_ops or jsonb_path_ops on jsonb, array_ops on
    arrays) and options, with PostgreSQL's errors. It is recorded in the catalogs; the
    operators it serves (`@>`, `?`, `@?`, `@@`) are answered by scanning."""
    if expression is not None:
        col_type = _gin_expression_type(table, expression)
    elif len(col_names) != 1:
        raise FeatureNotSupported("gin indexes on several columns are not supported")
    else:
        col_type = table.column(col_names[0]).type
    for key, _ in given:
        if key not in _GIN_OPTIONS:
            raise SqlVecError(f'unrecognized parameter "{key}"', sqlstate="22023")
    return gin_opclass(col_type, opclass), dict(given)


def gin_opclass(col_type: SqlType, opclass: str | None) -> str:
    """The GIN operator class for a key of `col_type` (None: its default), with
    PostgreSQL's errors for a type it does not take (also when ALTER TYPE changes a key)."""
    default = "jsonb_ops" if col_type.name == "jsonb" else "array_ops" if col_type.is_array \
        else None
    if opclass is None:
        if default is None:
            raise UndefinedObject(
                f'data type {col_type.format()} has no default operator class for access '
                'method "gin"', hint="You must specify an operator class for the index or "
                "define a default operator class for the data type.")
        opclass = default
    elif opclass not in ("jsonb_ops", "jsonb_path_ops", "array_ops"):
        raise UndefinedObject(f'operator class "{opclass}" does not exist for access method '
                              '"gin"')
    elif (opclass == "array_ops") != col_type.is_array or (
            opclass != "array_ops" and col_type.name != "jsonb"):
        raise DatatypeMismatch(f'operator class "{opclass}" does not accept data type '
                               f"{col_type.format()}")
    return opclass


def _gin_expression_type(table: TableDef, expression: exp.Expression) -> SqlType:
    """The type of a GIN expression key: a cast (`(meta -> 'tags')::jsonb`, as LlamaIndex
    indexes its array metadata) or `->` on a jsonb column."""
    node = expression.unnest() if isinstance(expression, exp.Paren) else expression
    if isinstance(node, exp.Cast):
        return sql_type(node.to)
    if isinstance(node, exp.JSONExtract) and isinstance(node.this, exp.Column) and \
            table.has_column(node.this.name):
        return table.column(node.this.name).type
    raise FeatureNotSupported("gin index expressions other than casts and -> on a jsonb column "
                              "are not supported")


def _vector_key(table: TableDef, expression: exp.Expression, col_names: list[str]) -> str:
    """The type of a vector index's expression key: the vector column cast (its dimensions
    kept: a different count fails on the rows, 22000, as pgvector's cast does), or bits."""
    if len(col_names) != 1:
        raise FeatureNotSupported("vector index expressions must read exactly one column")
    col = table.column(col_names[0])
    key_type = ixexpr.vector_key_type(expression, col.type.name)
    if key_type == "bit":
        return key_type
    dims = ixexpr.cast_dims(expression)
    if key_type not in ("halfvec", "vector") or not col.type.is_vector or \
            col.type.name == "sparsevec":
        raise FeatureNotSupported("vector index expressions must cast a vector or halfvec column")
    if dims is not None and col.type.dims is not None and dims != col.type.dims:
        raise DataException(f"expected {dims} dimensions, not {col.type.dims}")
    return key_type


def _option_value(value: exp.Expression | None) -> object:
    """A WITH (...) value as given: a number or a string (the access method parses it)."""
    if isinstance(value, exp.Literal):
        if value.is_string:
            return value.this
        try:
            return int(value.this)
        except ValueError:
            return value.this
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal):
        return f"-{value.this.this}"
    return None if value is None else value.name


def _default_index_name(catalog: Catalog, table: str, columns: list[str], schema: str) -> str:
    """PostgreSQL's choice: <table>_<col>[_<col>...]_idx, numbered when taken."""
    return _unique_relation_name(catalog, f"{table}_{'_'.join(columns)}_idx", schema)


def alter_table(stmt: exp.Alter, catalog: Catalog, search_path: list[str], default_of,
                notices: list[Notice] | None = None) -> str:
    """ALTER TABLE's supported actions (add, drop, rename and alter columns, rename the table);
    others are 0A000; returns the command tag."""
    t = stmt.this
    table = catalog.find_table(t.name, t.db or None, search_path)
    if table is None:
        if stmt.args.get("exists"):
            return "ALTER TABLE"
        raise UndefinedTable(f'relation "{t.name}" does not exist')
    for action in stmt.args.get("actions") or []:
        if isinstance(action, exp.AddConstraint) and \
                any(fkddl.is_foreign_key(e) for e in action.expressions):
            fkddl.add_foreign_key(action, table, catalog, search_path,
                                  bool(stmt.args.get("not_valid")))
            continue
        _alter_action(action, table, catalog, default_of, bool(stmt.args.get("not_valid")),
                      notices)
    return "ALTER TABLE"


def _alter_action(action, table, catalog: Catalog, default_of, not_valid: bool = False,
                  notices: list[Notice] | None = None) -> None:
    store = catalog.store
    d = table.def_
    if isinstance(action, exp.AddConstraint):
        cddl.add_constraint(action, table, catalog, not_valid)
        return
    if isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "CONSTRAINT":
        cddl.drop_constraint(action, table, catalog, notices)
        return
    if isinstance(action, exp.ColumnDef):
        if d.has_column(action.name):
            if action.args.get("exists"):
                return
            raise SqlVecError(f'column "{action.name}" of relation "{d.name}" already exists',
                              sqlstate="42701")
        col, pk, serial = _column_def(action, d.next_attnum)
        if pk or serial:
            raise FeatureNotSupported("ADD COLUMN with PRIMARY KEY or serial is not supported")
        missing = default_of(col) if col.default is not None else None
        if col.not_null and missing is None and table.snapshot().row_count:
            raise SqlVecError(f'column "{col.name}" of relation "{d.name}" contains null values',
                              sqlstate="23502")
        col = replace(col, missing_value=missing)
        store.alter_table(table.id, lambda x: x.with_changes(
            columns=x.columns + (col,), next_attnum=x.next_attnum + 1))
        return
    if isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
        for target in action.args.get("tables") or []:
            name = target.name
            if not d.has_column(name):
                if action.args.get("exists"):
                    continue
                raise UndefinedColumn(f'column "{name}" of relation "{d.name}" does not exist')
            if name in d.primary_key:
                raise FeatureNotSupported("dropping a primary key column is not supported")
            if any(name in ix.columns for ix in d.indexes):
                for ix in [ix for ix in d.indexes if name in ix.columns]:
                    store.drop_index(ix.name)
            store.alter_table(table.id, lambda x, name=name: x.with_changes(
                columns=tuple(c for c in x.columns if c.name != name),
                constraints=tuple(c for c in x.constraints if name not in c.columns)))
        return
    if isinstance(action, exp.RenameColumn):
        old, new = action.this.name, action.args["to"].name
        if not d.has_column(old):
            raise UndefinedColumn(f'column "{old}" does not exist')
        _check_not_system(new)
        if d.has_column(new):
            raise SqlVecError(f'column "{new}" of relation "{d.name}" already exists',
                              sqlstate="42701")
        store.alter_table(table.id, lambda x: x.with_changes(
            columns=tuple(replace(c, name=new) if c.name == old else c for c in x.columns),
            primary_key=tuple(new if k == old else k for k in x.primary_key),
            constraints=cddl.columns_after_rename(x, old, new),
            indexes=tuple(replace(ix, columns=tuple(new if c == old else c for c in ix.columns))
                          for ix in x.indexes)))
        return
    if isinstance(action, exp.AlterRename):
        new_name = action.this.name
        if catalog.relation_exists(new_name, d.schema):
            raise DuplicateTable(f'relation "{new_name}" already exists')
        # As in PostgreSQL, the primary key keeps its name (<old name>_pkey).
        store.alter_table(table.id, lambda x: x.with_changes(
            name=new_name, primary_key_name=x.pkey_name if x.primary_key else None))
        return
    if isinstance(action, exp.AlterColumn):
        name = action.this.name
        if not d.has_column(name):
            raise UndefinedColumn(f'column "{name}" of relation "{d.name}" does not exist')
        if action.args.get("drop") and action.args.get("allow_null") is not None:
            store.alter_table(table.id, lambda x: x.with_changes(columns=tuple(
                replace(c, not_null=False) if c.name == name else c for c in x.columns)))
            return
        if "default" in action.args and action.args.get("default") is not None:
            text = to_sql(action.args["default"])
            store.alter_table(table.id, lambda x: x.with_changes(columns=tuple(
                replace(c, default=text) if c.name == name else c for c in x.columns)))
            return
        if action.args.get("drop") and action.args.get("default") is None:
            store.alter_table(table.id, lambda x: x.with_changes(columns=tuple(
                replace(c, default=None) if c.name == name else c for c in x.columns)))
            return
        if action.args.get("allow_null") is False:
            raise FeatureNotSupported("SET NOT NULL on an existing column is not supported")
        raise FeatureNotSupported("ALTER COLUMN ... TYPE is not supported")
    raise FeatureNotSupported(f"ALTER TABLE action {to_sql(action)} is not supported")


def create_other(stmt: exp.Create, catalog: Catalog, search_path: list[str], database=None) -> str:
    """CREATE of what is not a table or index: schema and database (sequences: sequence_ddl.py);
    functions are refused with 0A000; returns the command tag."""
    kind = (stmt.args.get("kind") or "").upper()
    if kind == "SCHEMA":
        t = stmt.this
        catalog.create_schema(t.db or t.name, if_not_exists=bool(stmt.args.get("exists")))
        return "CREATE SCHEMA"
    if kind == "DATABASE":
        if database is None:
            raise FeatureNotSupported("CREATE DATABASE is not available here")
        database.create_database(stmt.this.name)
        return "CREATE DATABASE"
    if kind == "FUNCTION" or kind == "PROCEDURE":
        raise FeatureNotSupported(f"CREATE {kind} is not supported")
    raise FeatureNotSupported(f"CREATE {kind or to_sql(stmt)[:40]} is not supported")


# The column rules ALTER TABLE ADD / RENAME COLUMN share (execution/alter.py).
column_def = _column_def
check_column_name = _check_not_system


__all__ = ["create_table", "drop", "create_index", "alter_table", "create_other", "SqlType"]
