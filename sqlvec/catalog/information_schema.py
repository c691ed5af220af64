"""The information_schema views (SQL standard), built from the same model as pg_catalog.

Identifier columns are `name`, cardinal numbers `int4` and character data `varchar`: the base
types of PostgreSQL's information-schema domains, which every client decodes.
"""

from __future__ import annotations

from sqlvec.catalog import objects as O
from sqlvec.catalog import sequences as seqrules
from sqlvec.catalog.virtual import empty, parse_columns, virtual
from sqlvec.types import SqlType


def _rows(columns: list[tuple[str, str]], rows: list[dict]) -> dict:
    return {c: [r.get(c) for r in rows] for c, _ in columns}


def _user(rel) -> bool:
    return rel.table_id is not None


SCHEMATA = parse_columns("catalog_name name, schema_name name, schema_owner name, "
                 "default_character_set_catalog name, default_character_set_schema name, "
                 "default_character_set_name name, sql_path varchar")


@virtual("information_schema.schemata", SCHEMATA)
def _schemata(o) -> dict:
    db = o.session.database_name
    rows = [{"catalog_name": db, "schema_name": name,
             "schema_owner": o.role_name(owner) or "postgres"} for _oid, name, owner in o.namespaces]
    return _rows(SCHEMATA, rows)


TABLES = parse_columns("table_catalog name, table_schema name, table_name name, table_type varchar, "
               "self_referencing_column_name name, reference_generation varchar, "
               "user_defined_type_catalog name, user_defined_type_schema name, "
               "user_defined_type_name name, is_insertable_into varchar, is_typed varchar, "
               "commit_action varchar")


@virtual("information_schema.tables", TABLES)
def _tables(o) -> dict:
    db = o.session.database_name
    rows = []
    for rel in o.relations:
        if rel.kind not in "rv":
            continue
        base = rel.kind == "r"
        rows.append({"table_catalog": db, "table_schema": rel.schema, "table_name": rel.name,
                     "table_type": "BASE TABLE" if base else "VIEW",
                     "is_insertable_into": "YES" if base and _user(rel) else "NO",
                     "is_typed": "NO"})
    return _rows(TABLES, rows)


COLUMNS = parse_columns(
    "table_catalog name, table_schema name, table_name name, column_name name, "
    "ordinal_position int4, column_default varchar, is_nullable varchar, data_type varchar, "
    "character_maximum_length int4, character_octet_length int4, numeric_precision int4, "
    "numeric_precision_radix int4, numeric_scale int4, datetime_precision int4, "
    "interval_type varchar, interval_precision int4, character_set_catalog name, "
    "character_set_schema name, character_set_name name, collation_catalog name, "
    "collation_schema name, collation_name name, domain_catalog name, domain_schema name, "
    "domain_name name, udt_catalog name, udt_schema name, udt_name name, scope_catalog name, "
    "scope_schema name, scope_name name, maximum_cardinality int4, dtd_identifier name, "
    "is_self_referencing varchar, is_identity varchar, identity_generation varchar, "
    "identity_start varchar, identity_increment varchar, identity_maximum varchar, "
    "identity_minimum varchar, identity_cycle varchar, is_generated varchar, "
    "generation_expression varchar, is_updatable varchar")

_PRECISION = {"int2": (16, 2, 0), "int4": (32, 2, 0), "int8": (64, 2, 0), "float4": (24, 2, None),
              "float8": (53, 2, None)}


def data_type(t: SqlType) -> str:
    """information_schema's data_type of a column type."""
    if t.is_array:
        return "ARRAY"
    if t.is_vector:
        return "USER-DEFINED"
    return t.info.display


def _identity_sequences(o) -> dict[str, dict]:
    """The options of the sequences identity columns own, by `table id.column`."""
    return {r.sequence["owned_by"]: seqrules.described(r.sequence) for r in o.relations
            if r.kind == "S" and r.sequence.get("owned_by")}


def _identity_fields(rel, col, sequences: dict[str, dict]) -> dict:
    """identity_start ... identity_cycle of an identity column, from its sequence."""
    d = sequences.get(f"{rel.table_id}.{col.name}") \
        if col.identity in ("always", "by default") else None
    if d is None:
        return {"identity_cycle": "NO"}
    return {"identity_start": str(d["start"]), "identity_increment": str(d["increment"]),
            "identity_maximum": str(d["max"]), "identity_minimum": str(d["min"]),
            "identity_cycle": "YES" if d["cycle"] else "NO"}


def _column_row(rel, col, db: str, defaults: dict, sequences: dict[str, dict]) -> dict:
    t = col.type
    row = {"table_catalog": db, "table_schema": rel.schema, "table_name": rel.name,
           "column_name": col.name, "ordinal_position": col.attnum,
           "column_default": defaults.get((rel.oid, col.attnum)),
           "is_nullable": "NO" if col.not_null else "YES", "data_type": data_type(t),
           "udt_catalog": db, "udt_schema": "public" if t.is_vector else "pg_catalog",
           "udt_name": t.name, "dtd_identifier": str(col.attnum), "is_self_referencing": "NO",
           "is_identity": "YES" if col.identity in ("always", "by default") else "NO",
           "identity_generation": {"always": "ALWAYS", "by default": "BY DEFAULT"}.get(
               col.identity or ""),
           **_identity_fields(rel, col, sequences), "is_generated": "NEVER",
           "is_updatable": "YES" if _user(rel) else "NO"}
    if t.name in ("varchar", "bpchar"):
        n = t.char_length
        row["character_maximum_length"] = n
        row["character_octet_length"] = n * 4 if n is not None else 1073741824
    elif t.name == "text":
        row["character_octet_length"] = 1073741824
    if t.name in _PRECISION:
        p, radix, scale = _PRECISION[t.name]
        row.update(numeric_precision=p, numeric_precision_radix=radix, numeric_scale=scale)
    elif t.name == "numeric":
        ps = t.numeric_precision_scale
        row.update(numeric_precision=ps[0] if ps else None, numeric_precision_radix=10,
                   numeric_scale=ps[1] if ps else None)
    if t.name in ("date",):
        row["datetime_precision"] = 0
    elif t.name in ("time", "timestamp", "timestamptz", "interval"):
        row["datetime_precision"] = t.typmod if t.typmod >= 0 else 6
    return row


@virtual("information_schema.columns", COLUMNS)
def _columns(o) -> dict:
    db = o.session.database_name
    defaults = {(d.relation, d.attnum): d.text for d in o.defaults}
    sequences = _identity_sequences(o)
    rows = [_column_row(rel, col, db, defaults, sequences)
            for rel in o.relations if rel.kind in "rv" for col in rel.columns]
    return _rows(COLUMNS, rows)


VIEWS = parse_columns("table_catalog name, table_schema name, table_name name, view_definition varchar, "
              "check_option varchar, is_updatable varchar, is_insertable_into varchar, "
              "is_trigger_updatable varchar, is_trigger_deletable varchar, "
              "is_trigger_insertable_into varchar")


@virtual("information_schema.views", VIEWS)
def _views(o) -> dict:
    db = o.session.database_name
    rows = [{"table_catalog": db, "table_schema": rel.schema, "table_name": rel.name,
             "view_definition": rel.definition, "check_option": "NONE", "is_updatable": "NO", "is_insertable_into": "NO",
             "is_trigger_updatable": "NO", "is_trigger_deletable": "NO",
             "is_trigger_insertable_into": "NO"} for rel in o.relations if rel.kind == "v"]
    return _rows(VIEWS, rows)


TABLE_CONSTRAINTS = parse_columns(
    "constraint_catalog name, constraint_schema name, constraint_name name, table_catalog name, "
    "table_schema name, table_name name, constraint_type varchar, is_deferrable varchar, "
    "initially_deferred varchar, enforced varchar, nulls_distinct varchar")


_CONSTRAINT_TYPES = {"p": "PRIMARY KEY", "u": "UNIQUE", "f": "FOREIGN KEY", "c": "CHECK",
                     "n": "CHECK"}


def _constraint_name(con, rel) -> str:
    if con.type == "n":  # PostgreSQL names these <nsp oid>_<table oid>_<attnum>_not_null here
        return f"{rel.namespace}_{rel.oid}_{con.keys[0]}_not_null"
    return con.name


@virtual("information_schema.table_constraints", TABLE_CONSTRAINTS)
def _table_constraints(o) -> dict:
    db = o.session.database_name
    rows = []
    for con in o.constraints:
        rel = o.relation(con.relation)
        rows.append({"constraint_catalog": db, "constraint_schema": rel.schema,
                     "constraint_name": _constraint_name(con, rel), "table_catalog": db,
                     "table_schema": rel.schema, "table_name": rel.name,
                     "constraint_type": _CONSTRAINT_TYPES[con.type],
                     "is_deferrable": "YES" if con.deferrable else "NO",
                     "initially_deferred": "YES" if con.deferred else "NO", "enforced": "YES",
                     "nulls_distinct": ("NO" if con.nulls_not_distinct else "YES")
                     if con.type == "u" else None})
    return _rows(TABLE_CONSTRAINTS, rows)


KEY_COLUMN_USAGE = parse_columns(
    "constraint_catalog name, constraint_schema name, constraint_name name, table_catalog name, "
    "table_schema name, table_name name, column_name name, ordinal_position int4, "
    "position_in_unique_constraint int4")


def _key_rows(o) -> list[dict]:
    db = o.session.database_name
    rows = []
    for con in o.constraints:
        if con.type not in ("p", "u", "f"):
            continue
        rel = o.relation(con.relation)
        names = {c.attnum: c.name for c in rel.columns}
        referenced = o.relation(con.ref_relation) if con.type == "f" else None
        for i, attnum in enumerate(con.keys):
            position = None
            if referenced is not None and i < len(con.ref_keys):
                # The column's place in the referenced unique key.
                target = next((c for c in o.constraints if c.relation == referenced.oid
                               and c.index == con.index and c.type in ("p", "u")), None)
                if target is not None and con.ref_keys[i] in target.keys:
                    position = target.keys.index(con.ref_keys[i]) + 1
            rows.append({"constraint_catalog": db, "constraint_schema": rel.schema,
                         "constraint_name": con.name, "table_catalog": db,
                         "table_schema": rel.schema, "table_name": rel.name,
                         "column_name": names.get(attnum), "ordinal_position": i + 1,
                         "position_in_unique_constraint": position})
    return rows


def _usage_rows(o) -> list[dict]:
    """constraint_column_usage: the columns a constraint uses (a foreign key: the columns
    it references), NOT NULL ones included as PostgreSQL 18 lists them."""
    db = o.session.database_name
    rows = []
    for con in o.constraints:
        rel = o.relation(con.ref_relation if con.type == "f" else con.relation)
        if rel is None:
            continue
        names = {c.attnum: c.name for c in rel.columns}
        for attnum in con.ref_keys if con.type == "f" else con.keys:
            rows.append({"table_catalog": db, "table_schema": rel.schema,
                         "table_name": rel.name, "column_name": names.get(attnum),
                         "constraint_catalog": db, "constraint_schema": rel.schema,
                         "constraint_name": con.name})
    return rows


@virtual("information_schema.key_column_usage", KEY_COLUMN_USAGE)
def _key_column_usage(o) -> dict:
    return _rows(KEY_COLUMN_USAGE, _key_rows(o))


CONSTRAINT_COLUMN_USAGE = parse_columns(
    "table_catalog name, table_schema name, table_name name, column_name name, "
    "constraint_catalog name, constraint_schema name, constraint_name name")


@virtual("information_schema.constraint_column_usage", CONSTRAINT_COLUMN_USAGE)
def _constraint_column_usage(o) -> dict:
    return _rows(CONSTRAINT_COLUMN_USAGE, _usage_rows(o))


REFERENTIAL_CONSTRAINTS = parse_columns(
    "constraint_catalog name, constraint_schema name, constraint_name name, "
    "unique_constraint_catalog name, unique_constraint_schema name, "
    "unique_constraint_name name, match_option varchar, update_rule varchar, "
    "delete_rule varchar")
_RULES = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
          "d": "SET DEFAULT"}


@virtual("information_schema.referential_constraints", REFERENTIAL_CONSTRAINTS)
def _referential_constraints(o) -> dict:
    """Foreign keys with the unique constraint they reference (the one over the index
    pg_constraint.conindid names)."""
    db = o.session.database_name
    rows = []
    for con in o.constraints:
        if con.type != "f":
            continue
        rel = o.relation(con.relation)
        target = next((c for c in o.constraints if c.type in ("p", "u")
                       and c.relation == con.ref_relation and c.index == con.index), None)
        target_rel = o.relation(con.ref_relation)
        rows.append({"constraint_catalog": db, "constraint_schema": rel.schema,
                     "constraint_name": con.name,
                     "unique_constraint_catalog": db if target else None,
                     "unique_constraint_schema": target_rel.schema if target else None,
                     "unique_constraint_name": target.name if target else None,
                     "match_option": "FULL" if con.match == "f" else "NONE",
                     "update_rule": _RULES.get(con.on_update, "NO ACTION"),
                     "delete_rule": _RULES.get(con.on_delete, "NO ACTION")})
    return _rows(REFERENTIAL_CONSTRAINTS, rows)


CHECK_CONSTRAINTS = parse_columns(
    "constraint_catalog name, constraint_schema name, constraint_name name, "
    "check_clause varchar")


@virtual("information_schema.check_constraints", CHECK_CONSTRAINTS)
def _check_constraints(o) -> dict:
    """CHECK constraints, and NOT NULL ones as PostgreSQL 16 lists them (`x IS NOT NULL`)."""
    db = o.session.database_name
    rows = []
    for con in o.constraints:
        if con.type not in ("c", "n"):
            continue
        rel = o.relation(con.relation)
        if con.type == "c":
            clause = f"({con.check})"
        else:
            column = next(c.name for c in rel.columns if c.attnum == con.keys[0])
            clause = f"{column} IS NOT NULL"
        rows.append({"constraint_catalog": db, "constraint_schema": rel.schema,
                     "constraint_name": _constraint_name(con, rel), "check_clause": clause})
    return _rows(CHECK_CONSTRAINTS, rows)
empty("information_schema.routines", parse_columns(
    "specific_catalog name, specific_schema name, specific_name name, routine_catalog name, "
    "routine_schema name, routine_name name, routine_type varchar, data_type varchar, "
    "type_udt_catalog name, type_udt_schema name, type_udt_name name, routine_body varchar, "
    "routine_definition varchar, external_language varchar, is_deterministic varchar, "
    "security_type varchar"))
empty("information_schema.parameters", parse_columns(
    "specific_catalog name, specific_schema name, specific_name name, ordinal_position int4, "
    "parameter_mode varchar, parameter_name name, data_type varchar, udt_name name"))
empty("information_schema.triggers", parse_columns(
    "trigger_catalog name, trigger_schema name, trigger_name name, event_manipulation varchar, "
    "event_object_catalog name, event_object_schema name, event_object_table name, "
    "action_statement varchar, action_orientation varchar, action_timing varchar"))


SEQUENCES = parse_columns("sequence_catalog name, sequence_schema name, sequence_name name, "
                  "data_type varchar, numeric_precision int4, numeric_precision_radix int4, "
                  "numeric_scale int4, start_value varchar, minimum_value varchar, "
                  "maximum_value varchar, increment varchar, cycle_option varchar")


@virtual("information_schema.sequences", SEQUENCES)
def _sequences(o) -> dict:
    db = o.session.database_name
    rows = []
    for r in o.relations:
        if r.kind == "S":
            d = seqrules.described(r.sequence)
            bits = {"int2": 16, "int4": 32, "int8": 64}[d["type"]]
            rows.append({"sequence_catalog": db, "sequence_schema": r.schema,
                         "sequence_name": r.name, "data_type": seqrules.TYPE_SQL[d["type"]],
                         "numeric_precision": bits, "numeric_precision_radix": 2,
                         "numeric_scale": 0, "start_value": str(d["start"]),
                         "minimum_value": str(d["min"]), "maximum_value": str(d["max"]),
                         "increment": str(d["increment"]),
                         "cycle_option": "YES" if d["cycle"] else "NO"})
    return _rows(SEQUENCES, rows)


__all__ = ["data_type", "O"]
