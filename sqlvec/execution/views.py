"""CREATE [OR REPLACE] VIEW, DROP VIEW, ALTER VIEW, and the table CREATE TABLE ... AS makes.

A view is stored as its query's text with the table names it reads schema-qualified (so a
later search_path cannot change what it means, as PostgreSQL binds names when the view is
created), its output columns and the relations it depends on (`catalog/views.py`). The session
plans the query first (which checks it and gives the columns' names and types) and hands the
result here.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from sqlvec.catalog.catalog import Catalog
from sqlvec.catalog.views import (
    View,
    all_views,
    dependents,
    drop_dependents,
    find_view,
    get_view,
    matview,
    remove_views,
    store_view,
)
from sqlvec.errors import (
    DuplicateTable,
    FeatureNotSupported,
    Notice,
    SqlVecError,
    UndefinedTable,
)
from sqlvec.plan.planner import output_name
from sqlvec.sql.binder import SYSTEM_COLUMNS
from sqlvec.sql.dialect import parse_one, to_sql
from sqlvec.storage.schema import ColumnDef
from sqlvec.types import SqlType


def target_of(stmt: exp.Create) -> tuple[exp.Table, list[str]]:
    """The relation a CREATE VIEW / CREATE TABLE AS names, and its column name list."""
    this = stmt.this
    if isinstance(this, exp.Schema):
        return this.this, [c.name for c in this.expressions]
    return this, []


def check_options(stmt: exp.Create, what: str) -> None:
    """TEMPORARY and other properties this engine does not keep: 0A000 naming them."""
    props = stmt.args.get("properties")
    for p in props.expressions if props is not None else []:
        if isinstance(p, exp.MaterializedProperty):
            raise FeatureNotSupported("materialized views are not supported")
        if isinstance(p, exp.TemporaryProperty):
            raise FeatureNotSupported(f"temporary {what}s are not supported")
        if not isinstance(p, exp.WithDataProperty):
            raise FeatureNotSupported(f"{to_sql(p)} is not supported for {what}s")


def output_columns(names: list[str], result: list[tuple[str, SqlType]],
                   what: str) -> list[tuple[str, SqlType]]:
    """The query's result columns renamed by the statement's column list, checked as
    PostgreSQL does (too many names: 42601; a name twice: 42701)."""
    if len(names) > len(result):
        raise SqlVecError(f"{what} specifies more column names than columns"
                          if what == "CREATE VIEW" else "too many column names were specified",
                          sqlstate="42601")
    out = [(names[i] if i < len(names) else n, t) for i, (n, t) in enumerate(result)]
    seen: set[str] = set()
    for n, _t in out:
        if n in seen:
            raise SqlVecError(f'column "{n}" specified more than once', sqlstate="42701")
        seen.add(n)
    return [(n, SqlType("text") if t.name == "unknown" else t) for n, t in out]


def create_view(stmt: exp.Create, catalog: Catalog, search_path: list[str],
                result: list[tuple[str, SqlType]]) -> str:
    """CREATE [OR REPLACE] VIEW, its query already planned (`result`: its columns); returns
    the command tag."""
    check_options(stmt, "view")
    table, names = target_of(stmt)
    schema = catalog.creation_schema(table.db or None, search_path)
    columns = output_columns(names, result, "CREATE VIEW")
    query = stmt.args["expression"]
    if any(True for _ in query.find_all(exp.Parameter, exp.Placeholder)):
        raise SqlVecError("there is no parameter $1", sqlstate="42P02")
    old = get_view(catalog, table.name, schema)
    if old is None and catalog.relation_exists(table.name, schema):
        if stmt.args.get("replace") and catalog.store.find_table(table.name, schema):
            raise SqlVecError(f'"{table.name}" is not a view', sqlstate="42809")
        raise DuplicateTable(f'relation "{table.name}" already exists')
    if old is not None:
        if not stmt.args.get("replace"):
            raise DuplicateTable(f'relation "{table.name}" already exists')
        _check_replacement(old, columns)
    stored, depends = _qualified(query, catalog, search_path)
    if old is not None and old.oid in depends:
        raise SqlVecError(f'infinite recursion detected in rules for relation "{old.name}"',
                          sqlstate="42P17")
    view = _with_texts(View(schema, table.name,
                            old.oid if old else catalog.store.allocate_oid(), "postgres",
                            to_sql(stored), "", tuple(columns), tuple(depends)), stored)
    store_view(catalog, view)
    return "CREATE VIEW"


def _with_texts(view: View, stored: exp.Expression) -> View:
    """`view` with its pg_get_viewdef texts made from its stored (qualified) query."""
    names = [n for n, _ in view.columns]
    schemas = sorted({t.db for t in stored.find_all(exp.Table) if t.db})
    return replace(view, query=to_sql(stored), definition=definition(_unqualified(stored), names),
                   qualified=definition(stored, names), schemas=tuple(schemas))


def _check_replacement(old: View, new: list[tuple[str, SqlType]]) -> None:
    """OR REPLACE may only add columns at the end (PostgreSQL's checkViewColumns, 42P16)."""
    if len(new) < len(old.columns):
        raise SqlVecError("cannot drop columns from view", sqlstate="42P16")
    for (old_name, old_type), (name, t) in zip(old.columns, new):
        if old_name != name:
            raise SqlVecError(
                f'cannot change name of view column "{old_name}" to "{name}"', sqlstate="42P16",
                hint="Use ALTER VIEW ... RENAME COLUMN ... to change name of view column "
                     "instead.")
        if (old_type.name, old_type.typmod) != (t.name, t.typmod):
            raise SqlVecError(f'cannot change data type of view column "{name}" from '
                              f"{old_type} to {t}", sqlstate="42P16")


def _qualified(query: exp.Expression, catalog: Catalog,
               search_path: list[str]) -> tuple[exp.Expression, list[int]]:
    """The query with every table and view it names schema-qualified, and their OIDs."""
    query = query.copy()
    ctes = {c.alias_or_name for c in query.find_all(exp.CTE)}
    depends: list[int] = []
    for t in query.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier) or (not t.db and t.name in ctes):
            continue
        if t.db in ("pg_catalog", "information_schema"):
            continue
        view = find_view(catalog, t.name, t.db or None, search_path)
        if view is not None:
            schema, oid = view.schema, view.oid
        else:
            table = catalog.find_table(t.name, t.db or None, search_path)
            if table is None:
                continue  # a catalog table or a sequence: found by name at each use
            schema, oid = table.def_.schema, table.def_.oid
        if t.args.get("alias") is None and not t.db:
            # References such as `t.col` keep working: the alias is the old bare name.
            t.set("alias", exp.TableAlias(this=exp.to_identifier(t.name)))
        t.set("db", exp.to_identifier(schema))
        if oid not in depends:
            depends.append(oid)
    return query, depends


def _text(e: exp.Expression) -> str:
    """An expression as the view's definition prints it: function names in lower case, as
    PostgreSQL prints them (`count(*)`)."""
    return to_sql(e, normalize_functions="lower")


def definition(query: exp.Expression, columns: list[str]) -> str:
    """The view's text as pg_get_viewdef shows it, laid out as PostgreSQL's pretty printer
    does for the common shapes (one clause per line, one select item per line, output names
    given by AS where they differ from the item's own)."""
    if not isinstance(query, exp.Select) or query.args.get("with_") or query.args.get("with"):
        return f" {_text(query)};"

    items = []
    exprs = query.expressions
    if len(exprs) == 1 and isinstance(exprs[0], exp.Star) and len(query.args.get("joins") or []) == 0:
        items = [exp.to_identifier(c).sql(dialect="postgres") for c in columns]
    else:
        for i, e in enumerate(exprs):
            inner = e.this if isinstance(e, exp.Alias) else e
            name = columns[i] if i < len(columns) else output_name(e)
            text = _text(inner)
            if isinstance(inner, exp.Star) or output_name(inner) == name:
                items.append(text)
            else:
                items.append(f"{text} AS {exp.to_identifier(name).sql(dialect='postgres')}")
    distinct = query.args.get("distinct")
    lines = [" SELECT " + ("DISTINCT " if distinct is not None else "") + ",\n    ".join(items)]
    from_ = query.args.get("from_") or query.args.get("from")
    if from_ is not None:
        text = "   FROM " + _from_item(from_.this)
        for join in query.args.get("joins") or []:
            words = [join.args.get(k) for k in ("method", "side", "kind")]
            on, using = join.args.get("on"), join.args.get("using")
            text += "\n     " + " ".join(w.upper() for w in words if w) + \
                (" JOIN " if any(words) else "JOIN ") + _from_item(join.this)
            if on is not None:
                text += " ON " + _text(on)
            elif using:
                text += " USING (" + ", ".join(_text(u) for u in using) + ")"
        lines.append(text)
    where = query.args.get("where")
    if where is not None:
        lines.append("  WHERE " + _text(where.this))
    group = query.args.get("group")
    if group is not None:
        lines.append("  GROUP BY " + ", ".join(_text(g) for g in group.expressions))
    having = query.args.get("having")
    if having is not None:
        lines.append(" HAVING " + _text(having.this))
    order = query.args.get("order")
    if order is not None:
        lines.append("  ORDER BY " + ", ".join(_text(o) for o in order.expressions))
    limit = query.args.get("limit")
    if limit is not None:
        lines.append(" LIMIT " + _text(limit.expression))
    offset = query.args.get("offset")
    if offset is not None:
        lines.append(" OFFSET " + _text(offset.expression))
    return "\n".join(lines) + ";"


def _from_item(item: exp.Expression) -> str:
    """A FROM item as PostgreSQL prints it: a table alias without AS."""
    if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
        alias = item.args.get("alias")
        bare = item.copy()
        bare.set("alias", None)
        shown = alias is not None and (alias.name != item.name or bool(alias.columns))
        return _text(bare) + (f" {_text(alias)}" if shown else "")
    return _text(item)


def drop_views(stmt: exp.Drop, catalog: Catalog, search_path: list[str],
               notices: list[Notice]) -> str:
    """DROP VIEW [IF EXISTS] a, b [CASCADE | RESTRICT]: every name is checked before any view
    is dropped; a table is 42809, as PostgreSQL says it."""
    if stmt.args.get("materialized"):
        raise FeatureNotSupported("materialized views are not supported")
    found: list[View] = []
    for t in stmt.args.get("tables") or [stmt.this]:
        view = find_view(catalog, t.name, t.db or None, search_path)
        if view is None:
            table = catalog.find_table(t.name, t.db or None, search_path)
            if table is not None:
                hint = "Use DROP MATERIALIZED VIEW to remove a materialized view." \
                    if matview(catalog, table.id) is not None else \
                    "Use DROP TABLE to remove a table."
                raise SqlVecError(f'"{t.name}" is not a view', sqlstate="42809", hint=hint)
            if stmt.args.get("exists"):
                notices.append(Notice.notice(f'view "{t.name}" does not exist, skipping'))
                continue
            raise UndefinedTable(f'view "{t.name}" does not exist')
        found.append(view)
    cascade = bool(stmt.args.get("cascade"))
    dropping = {v.oid for v in found}
    if not cascade:  # views dropped by the same statement do not hold the drop back
        for view in found:
            if any(d.oid not in dropping for d in dependents(catalog, view.oid)):
                drop_dependents(catalog, "view", view.name, view.oid, False, notices)
        remove_views(catalog, [v.key for v in found])
        return "DROP VIEW"
    for view in found:
        if get_view(catalog, view.name, view.schema) is None:
            continue  # dropped already, by the CASCADE of an earlier one
        drop_dependents(catalog, "view", view.name, view.oid, True, notices)
        remove_views(catalog, [view.key])
    return "DROP VIEW"


def not_a_table(catalog: Catalog, name: str, schema: str | None, search_path: list[str]) -> None:
    """DROP TABLE naming a view: 42809, as PostgreSQL says it."""
    if find_view(catalog, name, schema, search_path) is not None:
        raise SqlVecError(f'"{name}" is not a table', sqlstate="42809",
                          hint="Use DROP VIEW to remove a view.")


def alter_view(stmt: exp.Alter, catalog: Catalog, search_path: list[str]) -> str:
    """ALTER VIEW ... RENAME TO: the views reading it are rewritten to the new name (PostgreSQL
    refers to it by OID, so they keep working there too)."""
    t = stmt.this
    view = find_view(catalog, t.name, t.db or None, search_path)
    if view is None:
        if catalog.find_table(t.name, t.db or None, search_path) is not None:
            raise SqlVecError(f'"{t.name}" is not a view', sqlstate="42809")
        if stmt.args.get("exists"):
            return "ALTER VIEW"
        raise UndefinedTable(f'relation "{t.name}" does not exist')
    actions = stmt.args.get("actions") or []
    if len(actions) != 1 or not isinstance(actions[0], exp.AlterRename):
        raise FeatureNotSupported("ALTER VIEW supports only RENAME TO")
    new = actions[0].this.name
    if catalog.relation_exists(new, view.schema):
        raise DuplicateTable(f'relation "{new}" already exists')
    renamed = replace(view, name=new)
    remove_views(catalog, [view.key])
    store_view(catalog, renamed)
    rename_references(catalog, view.schema, view.name, new, view.oid)
    return "ALTER VIEW"


def rename_references(catalog: Catalog, schema: str, old: str, new: str, oid: int) -> None:
    """Rewrite the stored queries of the views reading relation `oid` (renamed from `old` to
    `new` in `schema`) to the new name; their column names stay."""
    for v in all_views(catalog):
        if oid not in v.depends:
            continue
        query = parse_one(v.query)
        for t in query.find_all(exp.Table):
            if t.name == old and t.db == schema:
                t.set("this", exp.to_identifier(new))
        store_view(catalog, _with_texts(v, query))


def _unqualified(query: exp.Expression) -> exp.Expression:
    """A stored query with the schemas `_qualified` added taken off, and the aliases that
    kept the bare names."""
    query = query.copy()
    for t in query.find_all(exp.Table):
        if not t.db or t.db in ("pg_catalog", "information_schema"):
            continue
        alias = t.args.get("alias")
        t.set("db", None)
        if alias is not None and alias.name == t.name and not alias.columns:
            t.set("alias", None)
    return query


def select_into(ast: exp.Select) -> exp.Create:
    """SELECT ... INTO [TABLE] name FROM ...: the CREATE TABLE ... AS it means."""
    into = ast.args["into"]
    if into.args.get("temporary"):
        raise FeatureNotSupported("temporary tables are not supported")
    query = ast.copy()
    query.set("into", None)
    return exp.Create(this=into.this.copy(), kind="TABLE", expression=query)


def unsupported_view_kind(command: exp.Command) -> str | None:
    """The kind of view a statement sqlglot could not parse is about, when it is one this
    engine refuses (materialized and recursive views), for a 0A000 naming it."""
    body = command.expression
    text = body if isinstance(body, str) else (body.name if body is not None else "")
    words = " ".join(f"{command.this} {text}".lower().split()[:4])
    if "materialized view" in words:
        return "materialized views"
    if words.startswith(("create recursive view", "create or replace recursive view")):
        return "recursive views"
    return None


def matview_texts(query: exp.Expression, catalog: Catalog, search_path: list[str],
                  names: list[str]) -> dict:
    """A materialized view's catalog texts: its stored query (table names schema-qualified,
    so REFRESH reads the same tables whatever its search_path), the text pg_get_viewdef shows,
    and the same qualified, shown when a schema it reads is off the search_path (as a
    view's)."""
    stored, depends = _qualified(query, catalog, search_path)
    return {"query": to_sql(stored), "depends": depends, "definition": definition(_unqualified(stored), names),
            "qualified": definition(stored, names),
            "schemas": sorted({t.db for t in stored.find_all(exp.Table) if t.db})}


def table_columns(result: list[tuple[str, SqlType]]) -> list[ColumnDef]:
    """CREATE TABLE AS: the new table's columns, typed as the query's results (a vector keeps
    its dimensions when the query knows them)."""
    for n, _t in result:
        if n in SYSTEM_COLUMNS:
            raise SqlVecError(f'column name "{n}" conflicts with a system column name',
                              sqlstate="42701")
    return [ColumnDef(n, t, i + 1) for i, (n, t) in enumerate(result)]


__all__ = ["create_view", "drop_views", "alter_view", "not_a_table", "table_columns",
           "output_columns", "target_of", "matview_texts", "select_into", "check_options", "definition", "rename_references"]
