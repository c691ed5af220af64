"""Virtual catalog tables (pg_catalog, information_schema), built from the catalog as Arrow.

Each table is a list of columns (name, type) and a builder producing its rows from the live
catalog state; the planner sees them as ordinary relations.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from sqlvec.types import SqlType

Builder = Callable[[object, object], dict]  # (database, session) -> {column: list}

TABLES: dict[str, tuple[list[tuple[str, str]], Builder]] = {}


def virtual(name: str, columns: list[tuple[str, str]]):
    def register(fn: Builder) -> Builder:
        TABLES[name] = (columns, fn)
        return fn
    return register


def table_oid(name: str) -> int:
    """A stable OID for a virtual catalog table (PostgreSQL's own where clients rely on it)."""
    known = {"pg_class": 1259, "pg_attribute": 1249, "pg_type": 1247, "pg_proc": 1255,
             "pg_namespace": 2615, "pg_index": 2610, "pg_constraint": 2606, "pg_database": 1262,
             "pg_am": 2601, "pg_description": 2609, "pg_extension": 3079}
    return known.get(name, 12000 + sorted(TABLES).index(name) if name in TABLES else 0)


def virtual_fields(name: str, schema: str | None) -> list[tuple[str, SqlType]] | None:
    key = name if schema in (None, "pg_catalog") else f"{schema}.{name}"
    if schema is None and name not in TABLES:
        return None
    entry = TABLES.get(key)
    if entry is None:
        return None
    return [(col, SqlType.parse(t)) for col, t in entry[0]]


def build_virtual_table(database, session, name: str) -> pa.Table:
    key = name.split(".", 1)[1] if name.startswith("pg_catalog.") else name
    columns, fn = TABLES[key]
    data = fn(database, session)
    arrays = []
    for col, t in columns:
        values = data.get(col, [])
        arrays.append(pa.array(values, SqlType.parse(t).to_arrow()))
    n = max((len(a) for a in arrays), default=0)
    arrays = [a if len(a) == n else pa.nulls(n, a.type) for a in arrays]
    return pa.Table.from_arrays(arrays, names=[c for c, _ in columns])


@virtual("pg_namespace", [("oid", "oid"), ("nspname", "name"), ("nspowner", "oid"),
                          ("nspacl", "text")])
def _pg_namespace(database, session) -> dict:
    catalog = session.catalog
    names = catalog.schema_names()
    return {"oid": [catalog.schema_oid(n) for n in names], "nspname": names,
            "nspowner": [10] * len(names), "nspacl": [None] * len(names)}
