"""Virtual catalog tables (pg_catalog, information_schema), built from the catalog as Arrow.

Each table is a list of columns (name, type spelling) and a builder producing its rows, as
`{column: [values]}`, from a `CatalogObjects` model of the live catalog (objects.py). The planner
sees them as ordinary relations (`VirtualScan`), so every client query over them runs through the
normal executor. Tables are registered by pg_catalog.py and information_schema.py, which the
package imports (`sqlvec/catalog/__init__.py`), so the registry is complete whenever any catalog
module is in use; keys are the bare name for pg_catalog and `information_schema.<name>` for the
information schema. `objects.build_virtual_table` builds one.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlvec.types import SqlType

Builder = Callable[[object], dict]  # (CatalogObjects) -> {column: list}

TABLES: dict[str, tuple[list[tuple[str, str]], Builder]] = {}

# The tables of the server's live state (sessions, locks, settings, statement counters): built
# from no catalog object, so a statement reading only them needs no DDL lock and answers while
# another transaction's schema changes are open (`session/live_reads.py`).
LIVE: set[str] = set()

# PostgreSQL's OIDs for the catalogs clients name in `classoid = 'pg_class'::regclass` tests.
_KNOWN_OIDS = {
    "pg_class": 1259, "pg_attribute": 1249, "pg_type": 1247, "pg_proc": 1255,
    "pg_namespace": 2615, "pg_index": 2610, "pg_constraint": 2606, "pg_database": 1262,
    "pg_am": 2601, "pg_description": 2609, "pg_extension": 3079, "pg_attrdef": 2604,
    "pg_inherits": 2611, "pg_tablespace": 1213, "pg_authid": 1260, "pg_collation": 3456,
    "pg_opclass": 2616, "pg_range": 3541, "pg_enum": 3501, "pg_trigger": 2620,
    "pg_rewrite": 2618, "pg_policy": 3256, "pg_sequence": 2224, "pg_publication": 6104,
    "pg_statistic_ext": 3381, "pg_shdescription": 2396, "pg_auth_members": 1261,
    "pg_depend": 2608, "pg_operator": 2617, "pg_cast": 2605, "pg_language": 2612,
    "pg_event_trigger": 3466, "pg_foreign_table": 3118, "pg_conversion": 2607,
    "pg_aggregate": 2600, "pg_amop": 2602, "pg_amproc": 2603, "pg_db_role_setting": 2964,
    "pg_default_acl": 826, "pg_foreign_data_wrapper": 2328, "pg_foreign_server": 1417,
    "pg_init_privs": 3394, "pg_largeobject": 2613, "pg_largeobject_metadata": 2995,
    "pg_opfamily": 2753, "pg_partitioned_table": 3350, "pg_publication_namespace": 6237,
    "pg_publication_rel": 6106, "pg_seclabel": 3596, "pg_shdepend": 1214, "pg_shseclabel": 3592,
    "pg_statistic_ext_data": 3429, "pg_subscription": 6100, "pg_transform": 3576,
    "pg_ts_config": 3602, "pg_ts_config_map": 3603, "pg_ts_dict": 3600, "pg_ts_parser": 3601,
    "pg_ts_template": 3764, "pg_user_mapping": 1418,
}


def parse_columns(spec: str) -> list[tuple[str, str]]:
    """A table's columns written as PostgreSQL's docs list them, `"oid oid, relname name, ..."`,
    into [(name, type spelling)]: the tables stay readable next to their documentation."""
    out = []
    for item in spec.split(","):
        name, _, t = item.strip().partition(" ")
        out.append((name, t.strip()))
    return out


def virtual(name: str, columns: list[tuple[str, str]], live: bool = False):
    """Register a builder as the virtual catalog table `name` with `columns` (a decorator);
    `live`: it reads the server's live state only (`LIVE`), never the catalog's objects."""
    def register(fn: Builder) -> Builder:
        TABLES[name] = (columns, fn)
        if live:
            LIVE.add(name)
        return fn
    return register


def empty(name: str, columns: list[tuple[str, str]]) -> None:
    """A table a client only needs to exist (it queries it and gets no rows)."""
    TABLES[name] = (columns, lambda objects: {})


def table_oid(name: str) -> int:
    """A stable OID for a virtual catalog table (PostgreSQL's own where clients rely on it)."""
    key = name.split(".", 1)[1] if name.startswith("pg_catalog.") else name
    if key in _KNOWN_OIDS:
        return _KNOWN_OIDS[key]
    if key not in TABLES:
        return 0
    if len(_ORDER) != len(TABLES):
        _ORDER.clear()
        _ORDER.update({name: i for i, name in enumerate(sorted(TABLES))})
    return 12000 + _ORDER[key]


_ORDER: dict[str, int] = {}  # position of each table name in sorted order


def virtual_fields(name: str, schema: str | None) -> list[tuple[str, SqlType]] | None:
    """The columns and types of a virtual table as the planner binds them, or None if the name is
    not one."""
    key = name if schema in (None, "pg_catalog") else f"{schema}.{name}"
    if schema is None and name not in TABLES:
        return None
    entry = TABLES.get(key)
    if entry is None:
        return None
    return [(col, parse_type(t)) for col, t in entry[0]]


_TYPE_CACHE: dict[str, SqlType] = {}


def parse_type(spelling: str) -> SqlType:
    """A column type spelling of the tables above, parsed once."""
    t = _TYPE_CACHE.get(spelling)
    if t is None:
        t = _TYPE_CACHE[spelling] = SqlType.parse(spelling)
    return t
