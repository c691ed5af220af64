"""Views as the catalog keeps them: a stored query with its output columns and dependencies.

A view lives in the manifest's `catalog` section (so it is as durable as a table definition:
written with the manifest, atomically, and back after a restart):

    views   {"schema.name": {"oid": int, "owner": role name,
                             "query": the SELECT's text (table names schema-qualified),
                             "definition": the text pg_get_viewdef shows,
                             "qualified": the same with every table name schema-qualified
                                 (shown when a schema it reads is off the search_path),
                             "schemas": the schemas of the relations it reads,
                             "columns": [[name, pg_type name, typmod], ...],
                             "depends": [OIDs of the tables and views the query reads]}}

    matviews {"<table id>": {"query": the stored query's text (table names qualified),
                             "definition", "qualified", "schemas", "depends": as a
                                 view's,
                             "populated": false after WITH NO DATA, until a REFRESH}}

A materialized view is a table holding its query's rows (session/matviews.py) with an entry
under `matviews`: pg_class shows it with relkind `m`.

Views share the relation namespace of their schema with tables, indexes and sequences. The
planner expands a view where it is named, as a subquery (`plan/planner.py`, `_plan_view`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlvec.errors import Notice, SqlVecError
from sqlvec.types import SqlType


@dataclass(frozen=True)
class View:
    """One stored view."""

    schema: str
    name: str
    oid: int
    owner: str
    query: str
    definition: str
    columns: tuple[tuple[str, SqlType], ...]
    depends: tuple[int, ...]
    qualified: str = ""
    schemas: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"

    def definition_for(self, search_path: list[str]) -> str:
        """pg_get_viewdef's text under a search_path: names unqualified when every schema the
        view reads is on the path, all qualified otherwise (pg_dump sets an empty path and
        restores what it prints)."""
        if not self.qualified or all(s in search_path for s in self.schemas):
            return self.definition
        return self.qualified


def _view(key: str, entry: dict) -> View:
    schema, _, name = key.partition(".")
    return View(schema, name, int(entry["oid"]), entry.get("owner") or "postgres",
                entry["query"], entry.get("definition") or entry["query"],
                tuple((c[0], SqlType(c[1], int(c[2]))) for c in entry["columns"]),
                tuple(int(d) for d in entry.get("depends", ())), entry.get("qualified", ""),
                tuple(entry.get("schemas", ())))


def all_views(catalog) -> list[View]:
    """Every view of the database."""
    return [_view(k, v) for k, v in catalog.state.get("views", {}).items()]


def get_view(catalog, name: str, schema: str) -> View | None:
    """The view `schema.name`, or None."""
    entry = catalog.state.get("views", {}).get(f"{schema}.{name}")
    return None if entry is None else _view(f"{schema}.{name}", entry)


def find_view(catalog, name: str, schema: str | None, search_path: list[str]) -> View | None:
    """The view a relation name means, or None when it means a table (or nothing): the first
    schema along the path holding a relation of that name decides, as PostgreSQL resolves."""
    for candidate in [schema] if schema else search_path:
        view = get_view(catalog, name, candidate)
        if view is not None:
            return view
        if catalog.store.find_table(name, candidate) is not None:
            return None
    return None


def store_view(catalog, view: View) -> None:
    """Create or replace a view's record (one manifest commit)."""
    entry = {"oid": view.oid, "owner": view.owner, "query": view.query,
             "definition": view.definition,
             "columns": [[n, t.name, t.typmod] for n, t in view.columns],
             "depends": list(view.depends), "qualified": view.qualified,
             "schemas": list(view.schemas)}
    catalog.store.update_catalog(lambda c: {**c, "views": {**c.get("views", {}),
                                                           view.key: entry}})


def remove_views(catalog, keys: list[str]) -> None:
    """Forget views by key (one manifest commit)."""
    if keys:
        catalog.store.update_catalog(lambda c: {**c, "views": {
            k: v for k, v in c.get("views", {}).items() if k not in keys}})


def dependents(catalog, oid: int) -> list[View]:
    """Every view that reads the relation `oid`, directly or through other views, in
    PostgreSQL's reporting order (each view followed by the views built on it)."""
    views = all_views(catalog)
    out: list[View] = []
    seen: set[int] = set()

    def visit(target: int) -> None:
        for v in views:
            if target in v.depends and v.oid not in seen:
                seen.add(v.oid)
                out.append(v)
                visit(v.oid)
    visit(oid)
    return out


def drop_dependents(catalog, kind: str, name: str, oid: int, cascade: bool,
                    notices: list) -> None:
    """Before dropping relation `oid` (a table or view named `name`): without CASCADE, 2BP01
    naming the views that depend on it, as PostgreSQL; with it, drop them (reporting each in
    a NOTICE as PostgreSQL does)."""
    deps = dependents(catalog, oid)
    if not deps:
        return
    by_oid = {v.oid: v for v in all_views(catalog)}
    if not cascade:
        lines = []
        for v in deps:
            on = next((d for d in v.depends if d == oid or d in {x.oid for x in deps}), oid)
            lines.append(f"view {v.name} depends on "
                         + (f"{kind} {name}" if on == oid else f"view {by_oid[on].name}"))
        raise SqlVecError(f"cannot drop {kind} {name} because other objects depend on it",
                          sqlstate="2BP01", detail="\n".join(lines),
                          hint="Use DROP ... CASCADE to drop the dependent objects too.")
    # PostgreSQL adds the list as DETAIL; a notice here carries only its message.
    notices.append(Notice.notice(f"drop cascades to view {deps[0].name}" if len(deps) == 1
                                 else f"drop cascades to {len(deps)} other objects"))
    remove_views(catalog, [v.key for v in deps])


def matview(catalog, table_id: int) -> dict | None:
    """The catalog entry of a materialized view (by its table's id), or None for a table."""
    return catalog.state.get("matviews", {}).get(str(table_id))


def set_matview(catalog, table_id: int, entry: dict | None) -> None:
    """Record (None: forget) the materialized view that table `table_id` holds."""
    key = str(table_id)

    def change(c: dict) -> dict:
        kept = {k: v for k, v in c.get("matviews", {}).items() if k != key}
        if entry is not None:
            kept[key] = entry
        return {**c, "matviews": kept}
    catalog.store.update_catalog(change)
