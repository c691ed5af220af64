"""The pg_catalog tables, as PostgreSQL 16 shapes them (columns clients read, in catalog order).

Rows come from `CatalogObjects` (objects.py). Tables a client only needs to exist are declared
with `empty(...)`: correctly shaped, no rows.
"""

from __future__ import annotations

from functools import lru_cache

from sqlvec.catalog import functions as F
from sqlvec.catalog import objects as O
from sqlvec.catalog import sequences as seqrules
from sqlvec.catalog.catalog import BOOTSTRAP_SUPERUSER_OID, PG_CATALOG_OID
from sqlvec.catalog.pg_stat import gather_other_processes, instant
from sqlvec.catalog.settings import SETTINGS, Setting, parse_amount
from sqlvec.catalog.virtual import empty, parse_columns, table_oid, virtual
from sqlvec.storage import access_methods
from sqlvec.types import TYPES_BY_NAME


def _rows(columns: list[str], rows: list[tuple]) -> dict:
    return {c: [r[i] for r in rows] for i, c in enumerate(columns)}


# Namespaces, classes, attributes ------------------------------------------------------------------

@virtual("pg_namespace", parse_columns("oid oid, nspname name, nspowner oid, nspacl _text"))
def _pg_namespace(o) -> dict:
    rows = []
    for oid, name, owner in o.namespaces:
        acl = None
        if name == "public":
            acl = ["pg_database_owner=UC/pg_database_owner", "=U/pg_database_owner"]
        rows.append((oid, name, owner, acl))
    return _rows(["oid", "nspname", "nspowner", "nspacl"], rows)


PG_CLASS = parse_columns(
    "oid oid, relname name, relnamespace oid, reltype oid, reloftype oid, relowner oid, "
    "relam oid, relfilenode oid, reltablespace oid, relpages int4, reltuples float4, "
    "relallvisible int4, reltoastrelid oid, relhasindex bool, relisshared bool, "
    "relpersistence char, relkind char, relnatts int2, relchecks int2, relhasrules bool, "
    "relhastriggers bool, relhassubclass bool, relrowsecurity bool, relforcerowsecurity bool, "
    "relispopulated bool, relreplident char, relispartition bool, relrewrite oid, "
    "relfrozenxid int8, relminmxid int8, relacl _text, reloptions _text, relpartbound text")


@virtual("pg_class", PG_CLASS)
def _pg_class(o) -> dict:
    out: dict[str, list] = {c: [] for c, _ in PG_CLASS}
    checks: dict[int, int] = {}
    triggers: set[int] = set()  # both sides of a foreign key (PostgreSQL's RI triggers)
    for con in o.constraints:
        if con.type == "c":
            checks[con.relation] = checks.get(con.relation, 0) + 1
        elif con.type == "f":
            triggers.update((con.relation, con.ref_relation))
    for rel in o.relations:
        options = None
        if rel.index is not None and rel.index.options:
            options = [f"{k}={v}" for k, v in rel.index.options.items()]
        values = {
            "oid": rel.oid, "relname": rel.name, "relnamespace": rel.namespace, "reltype": 0,
            "reloftype": 0, "relowner": BOOTSTRAP_SUPERUSER_OID, "relam": rel.am,
            "relfilenode": rel.oid if rel.kind in "riS" else 0, "reltablespace": 0,
            "relpages": 1 if rel.kind in "ri" and rel.tuples > 0 else 0,
            "reltuples": rel.tuples, "relallvisible": 0, "reltoastrelid": 0,
            "relhasindex": bool(rel.indexes), "relisshared": False,
            "relpersistence": rel.sequence.get("persistence", "p") if rel.kind == "S" else "p",
            "relkind": rel.kind, "relnatts": len(rel.columns) if rel.kind != "i" else
            len(rel.columns), "relchecks": checks.get(rel.oid, 0), "relhasrules": False,
            "relhastriggers": rel.oid in triggers,
            "relhassubclass": False, "relrowsecurity": False, "relforcerowsecurity": False,
            "relispopulated": rel.populated, "relreplident": "d" if rel.kind in "rm" else "n",
            "relispartition": False, "relrewrite": 0, "relfrozenxid": 0, "relminmxid": 0,
            "relacl": None, "reloptions": options, "relpartbound": None,
        }
        for c, _ in PG_CLASS:
            out[c].append(values[c])
    return out


PG_ATTRIBUTE = parse_columns(
    "attrelid oid, attname name, atttypid oid, attlen int2, attnum int2, attcacheoff int4, "
    "atttypmod int4, attndims int2, attbyval bool, attalign char, attstorage char, "
    "attcompression char, attnotnull bool, atthasdef bool, atthasmissing bool, "
    "attidentity char, attgenerated char, attisdropped bool, attislocal bool, attinhcount int2, "
    "attstattarget int2, attcollation oid, attacl _text, attoptions _text, "
    "attfdwoptions _text, attmissingval _text")


@lru_cache(maxsize=1)
def _type_rows_by_oid() -> dict:
    return {r.info.oid: r for r in O.type_rows()}


@virtual("pg_attribute", PG_ATTRIBUTE)
def _pg_attribute(o) -> dict:
    types = _type_rows_by_oid()
    defaults = {(d.relation, d.attnum) for d in o.defaults}
    rows = []
    for rel in o.relations:
        for col in rel.columns:
            t = types[col.type.oid]
            identity = {"always": "a", "by default": "d"}.get(col.identity or "", "")
            rows.append((rel.oid, col.name, col.type.oid, t.info.typlen, col.attnum, -1,
                         col.type.typmod, 1 if col.type.is_array else 0, t.byval, t.align,
                         t.storage, "", col.not_null, (rel.oid, col.attnum) in defaults, False,
                         identity, "", False, True, 0, -1, t.collation, None, None, None, None))
    return _rows([c for c, _ in PG_ATTRIBUTE], rows)


@virtual("pg_attrdef", parse_columns("oid oid, adrelid oid, adnum int2, adbin text"))
def _pg_attrdef(o) -> dict:
    return _rows(["oid", "adrelid", "adnum", "adbin"],
                 [(d.oid, d.relation, d.attnum, d.text) for d in o.defaults])


PG_INDEX = parse_columns(
    "indexrelid oid, indrelid oid, indnatts int2, indnkeyatts int2, indisunique bool, "
    "indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, "
    "indisclustered bool, indisvalid bool, indcheckxmin bool, indisready bool, indislive bool, "
    "indisreplident bool, indkey int2vector, indcollation oidvector, indclass oidvector, "
    "indoption int2vector, "
    "indexprs text, indpred text")


@virtual("pg_index", PG_INDEX)
def _pg_index(o) -> dict:
    rows = []
    for rel in o.relations:
        for ix in rel.indexes:
            n = len(ix.attnums)
            table_cols = {c.attnum: c for c in rel.columns}
            collations = [O.DEFAULT_COLLATION if a in table_cols and table_cols[a].type.name in
                          ("text", "varchar", "bpchar") else 0 for a in ix.attnums]
            rows.append((ix.oid, rel.oid, n, n, ix.unique, ix.nulls_not_distinct, ix.primary,
                         False, True,
                         False, True, False, True, True, False, list(ix.attnums), collations,
                         list(ix.opclasses), [0] * n, ix.expression_sql, None))
    return _rows([c for c, _ in PG_INDEX], rows)


PG_CONSTRAINT = parse_columns(
    "oid oid, conname name, connamespace oid, contype char, condeferrable bool, "
    "condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, "
    "conparentid oid, confrelid oid, confupdtype char, confdeltype char, confmatchtype char, "
    "conislocal bool, coninhcount int2, connoinherit bool, conkey _int2, confkey _int2, "
    "conpfeqop _oid, conppeqop _oid, conffeqop _oid, confdelsetcols _int2, conexclop _oid, "
    "conbin text")


@virtual("pg_constraint", PG_CONSTRAINT)
def _pg_constraint(o) -> dict:
    rows = [(c.oid, c.name, c.namespace, c.type, c.deferrable, c.deferred, c.validated,
             c.relation, 0, c.index, 0, c.ref_relation, c.on_update, c.on_delete, c.match, True,
             0, c.type == "n", list(c.keys),
             list(c.ref_keys) if c.type == "f" else None, None, None, None,
             list(c.delete_set_keys) if c.delete_set_keys else None, None, None)
            for c in o.constraints]
    return _rows([c for c, _ in PG_CONSTRAINT], rows)


# Types, functions, operators classes --------------------------------------------------------------

PG_TYPE = parse_columns(
    "oid oid, typname name, typnamespace oid, typowner oid, typlen int2, typbyval bool, "
    "typtype char, typcategory char, typispreferred bool, typisdefined bool, typdelim char, "
    "typrelid oid, typsubscript regproc, typelem oid, typarray oid, typinput regproc, "
    "typoutput regproc, typreceive regproc, typsend regproc, typmodin regproc, "
    "typmodout regproc, typanalyze regproc, typalign char, typstorage char, typnotnull bool, "
    "typbasetype oid, typtypmod int4, typndims int4, typcollation oid, typdefaultbin text, "
    "typdefault text, typacl _text")


@virtual("pg_type", PG_TYPE)
def _pg_type(o) -> dict:
    procs = F.proc_oids()

    def proc(name: str) -> int:
        return 0 if name == "-" else procs.get(name, 0)

    rows = []
    for t in O.type_rows():
        i = t.info
        rows.append((i.oid, i.typname, t.namespace, BOOTSTRAP_SUPERUSER_OID, i.typlen, t.byval,
                     O.type_kind(t), i.category, t.preferred, True, t.delim, 0,
                     procs.get("array_subscript_handler", 0) if t.elem else 0, t.elem, t.array,
                     proc(t.input), proc(t.output), proc(t.receive), proc(t.send),
                     proc(t.modin), proc(t.modout), proc(t.analyze), t.align, t.storage, False,
                     0, -1, 0, t.collation, None, None, None))
    return _rows([c for c, _ in PG_TYPE], rows)


PG_PROC = parse_columns(
    "oid oid, proname name, pronamespace oid, proowner oid, prolang oid, procost float4, "
    "prorows float4, provariadic oid, prosupport regproc, prokind char, prosecdef bool, "
    "proleakproof bool, proisstrict bool, proretset bool, provolatile char, proparallel char, "
    "pronargs int2, pronargdefaults int2, prorettype oid, proargtypes oidvector, "
    "proallargtypes _oid, proargmodes _char, proargnames _text, proargdefaults text, "
    "protrftypes _oid, prosrc text, probin text, prosqlbody text, proconfig _text, "
    "proacl _text")


@virtual("pg_proc", PG_PROC)
def _pg_proc(o) -> dict:
    """From the function catalog (catalog/functions.py): one row per name and signature."""
    rows = [(p.oid, p.name, p.namespace, BOOTSTRAP_SUPERUSER_OID, p.language, 1.0,
             1000.0 if p.retset else 0.0, p.variadic, 0, p.kind, False, False, p.strict,
             p.retset, p.volatile, "s", len(p.argtypes), len(p.argdefaults), p.rettype,
             list(p.argtypes), list(p.allargtypes) if p.allargtypes else None,
             list(p.argmodes) if p.argmodes else None,
             list(p.argnames) if p.argnames else None,
             None, None, p.source, None if p.language == F.INTERNAL_LANGUAGE else "$libdir/vector",
             None, None, None)
            for p in F.proc_rows()]
    return _rows([c for c, _ in PG_PROC], rows)


@virtual("pg_am", parse_columns("oid oid, amname name, amhandler regproc, amtype char"))
def _pg_am(o) -> dict:
    return _rows(["oid", "amname", "amhandler", "amtype"],
                 [(O.HEAP_AM, "heap", 0, "t"), (O.BTREE_AM, "btree", 0, "i"),
                  (405, "hash", 0, "i"), (O.GIN_AM, "gin", 0, "i")]
                 + [(m.am_oid, m.access_method, 0, "i") for m in access_methods.methods()])


@virtual("pg_opclass", parse_columns("oid oid, opcmethod oid, opcname name, opcnamespace oid, "
                             "opcowner oid, opcfamily oid, opcintype oid, opcdefault bool, "
                             "opckeytype oid"))
def _pg_opclass(o) -> dict:
    rows = []
    seen = set()
    for typname, (oid, name) in O.BTREE_OPCLASSES.items():
        if oid in seen or typname not in TYPES_BY_NAME:
            continue
        seen.add(oid)
        ns = o.nsp_by_name.get("public", PG_CATALOG_OID) if typname in O.EXTENSION_TYPES else \
            PG_CATALOG_OID
        rows.append((oid, O.BTREE_AM, name, ns, BOOTSTRAP_SUPERUSER_OID, oid + 100000,
                     TYPES_BY_NAME[typname].oid, True, 0))
    for name, (oid, family, type_oid, default) in O.GIN_OPCLASSES.items():
        rows.append((oid, O.GIN_AM, name, PG_CATALOG_OID, BOOTSTRAP_SUPERUSER_OID, family,
                     type_oid, default, 0))
    for method in access_methods.methods():
        for oc in method.opclasses:
            rows.append((oc.oid, method.am_oid, oc.name, o.nsp_by_name.get("public", PG_CATALOG_OID),
                         BOOTSTRAP_SUPERUSER_OID, oc.family_oid, TYPES_BY_NAME[oc.input_type].oid,
                         oc.default, 0))
    return _rows(["oid", "opcmethod", "opcname", "opcnamespace", "opcowner", "opcfamily",
                  "opcintype", "opcdefault", "opckeytype"], rows)


@virtual("pg_opfamily", parse_columns("oid oid, opfmethod oid, opfname name, opfnamespace oid, "
                              "opfowner oid"))
def _pg_opfamily(o) -> dict:
    rows = [(oc.family_oid, method.am_oid, oc.name, o.nsp_by_name.get("public", PG_CATALOG_OID),
             BOOTSTRAP_SUPERUSER_OID)
            for method in access_methods.methods() for oc in method.opclasses]
    rows += [(family, O.GIN_AM, name, PG_CATALOG_OID, BOOTSTRAP_SUPERUSER_OID)
             for name, (_, family, _, _) in O.GIN_OPCLASSES.items()]
    return _rows(["oid", "opfmethod", "opfname", "opfnamespace", "opfowner"], rows)


@virtual("pg_collation", parse_columns("oid oid, collname name, collnamespace oid, collowner oid, "
                               "collprovider char, collisdeterministic bool, collencoding int4, "
                               "collcollate text, collctype text, colliculocale text, "
                               "collicurules text, collversion text"))
def _pg_collation(o) -> dict:
    return _rows(["oid", "collname", "collnamespace", "collowner", "collprovider",
                  "collisdeterministic", "collencoding", "collcollate", "collctype"],
                 [(O.DEFAULT_COLLATION, "default", PG_CATALOG_OID, BOOTSTRAP_SUPERUSER_OID, "d",
                   True, -1, None, None),
                  (O.C_COLLATION, "C", PG_CATALOG_OID, BOOTSTRAP_SUPERUSER_OID, "c", True, -1,
                   "C", "C"),
                  (951, "POSIX", PG_CATALOG_OID, BOOTSTRAP_SUPERUSER_OID, "c", True, -1,
                   "POSIX", "POSIX")])


@virtual("pg_range", parse_columns("rngtypid oid, rngsubtype oid, rngmultitypid oid, "
                           "rngcollation oid, rngsubopc oid, rngcanonical regproc, "
                           "rngsubdiff regproc"))
def _pg_range(o) -> dict:
    return {}


empty("pg_enum", parse_columns("oid oid, enumtypid oid, enumsortorder float4, enumlabel name"))


# Descriptions, extensions, databases, roles ------------------------------------------------------

@virtual("pg_description", parse_columns("objoid oid, classoid oid, objsubid int4, description text"))
def _pg_description(o) -> dict:
    rows = []
    for key, text in o.state.get("comments", {}).items():
        classoid, objoid, subid = (int(x) for x in key.split(":"))
        rows.append((objoid, classoid, subid, text))
    comments = o.state.get("comments", {})
    for oid, name, _version, _ns in o.extensions():
        text = {"plpgsql": "PL/pgSQL procedural language",
                "vector": "vector data type and ivfflat and hnsw access methods",
                "pg_stat_statements": "track planning and execution statistics of all SQL "
                                      "statements executed"}[name]
        if f"{O.PG_EXTENSION_OID}:{oid}:0" not in comments:  # else COMMENT ON EXTENSION's
            rows.append((oid, O.PG_EXTENSION_OID, 0, text))
    for oid, name, _owner in o.namespaces:
        if name == "public":
            rows.append((oid, O.PG_NAMESPACE_OID, 0, "standard public schema"))
    return _rows(["objoid", "classoid", "objsubid", "description"], rows)


@virtual("pg_shdescription", parse_columns("objoid oid, classoid oid, description text"))
def _pg_shdescription(o) -> dict:
    return _rows(["objoid", "classoid", "description"],
                 [(O.database_oid("postgres"), O.PG_DATABASE_OID,
                   "default administrative connection database")])


@virtual("pg_extension", parse_columns("oid oid, extname name, extowner oid, extnamespace oid, "
                               "extrelocatable bool, extversion text, extconfig _oid, "
                               "extcondition _text"))
def _pg_extension(o) -> dict:
    return _rows(["oid", "extname", "extowner", "extnamespace", "extrelocatable", "extversion"],
                 [(oid, name, BOOTSTRAP_SUPERUSER_OID, ns, name == "vector", version)
                  for oid, name, version, ns in o.extensions()])


PG_DATABASE = parse_columns(
    "oid oid, datname name, datdba oid, encoding int4, datlocprovider char, "
    "datistemplate bool, datallowconn bool, datconnlimit int4, datfrozenxid int8, "
    "datminmxid int8, dattablespace oid, datcollate text, datctype text, daticulocale text, "
    "daticurules text, datcollversion text, datacl _text")


@virtual("pg_database", PG_DATABASE)
def _pg_database(o) -> dict:
    names = o.database.databases() if hasattr(o.database, "databases") else [
        o.session.database_name]
    rows = [(O.database_oid(n), n, BOOTSTRAP_SUPERUSER_OID, 6, "c", False, True, -1, 0, 0,
             O.PG_DEFAULT_TABLESPACE, "C", "C", None, None, None, None) for n in names]
    return _rows([c for c, _ in PG_DATABASE], rows)


@virtual("pg_tablespace", parse_columns("oid oid, spcname name, spcowner oid, spcacl _text, "
                                "spcoptions _text"))
def _pg_tablespace(o) -> dict:
    return _rows(["oid", "spcname", "spcowner"],
                 [(O.PG_DEFAULT_TABLESPACE, "pg_default", BOOTSTRAP_SUPERUSER_OID),
                  (O.PG_GLOBAL_TABLESPACE, "pg_global", BOOTSTRAP_SUPERUSER_OID)])


PG_AUTHID = parse_columns(
    "oid oid, rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, "
    "rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolbypassrls bool, "
    "rolconnlimit int4, rolpassword text, rolvaliduntil timestamptz")
PG_ROLES = parse_columns(
    "rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, "
    "rolcanlogin bool, rolreplication bool, rolconnlimit int4, rolpassword text, "
    "rolvaliduntil timestamptz, rolbypassrls bool, rolconfig _text, oid oid")


def _roles(o) -> list[dict]:
    out = []
    for name, role in sorted(o.state.get("roles", {}).items()):
        su = bool(role.get("superuser"))
        out.append({"oid": int(role["oid"]), "rolname": name, "rolsuper": su,
                    "rolinherit": True, "rolcreaterole": su, "rolcreatedb": su,
                    "rolcanlogin": bool(role.get("login", True)), "rolreplication": su,
                    "rolbypassrls": su, "rolconnlimit": -1, "rolvaliduntil": None,
                    "rolconfig": None})
    # The built-in role that owns the public schema, as in PostgreSQL 15 and later (pg_dump
    # resolves every owner OID it reads through pg_roles).
    out.append({"oid": O.PG_DATABASE_OWNER_OID, "rolname": "pg_database_owner", "rolsuper": False,
                "rolinherit": True, "rolcreaterole": False, "rolcreatedb": False,
                "rolcanlogin": False, "rolreplication": False, "rolbypassrls": False,
                "rolconnlimit": -1, "rolvaliduntil": None, "rolconfig": None})
    return out


@virtual("pg_authid", PG_AUTHID)
def _pg_authid(o) -> dict:
    roles = _roles(o)
    return {c: [r.get(c) for r in roles] for c, _ in PG_AUTHID}


@virtual("pg_roles", PG_ROLES)
def _pg_roles(o) -> dict:
    roles = _roles(o)
    out = {c: [r.get(c) for r in roles] for c, _ in PG_ROLES}
    out["rolpassword"] = ["********"] * len(roles)
    return out


@virtual("pg_user", parse_columns("usename name, usesysid oid, usecreatedb bool, usesuper bool, "
                          "userepl bool, usebypassrls bool, passwd text, valuntil timestamptz, "
                          "useconfig _text"))
def _pg_user(o) -> dict:
    roles = [r for r in _roles(o) if r["rolcanlogin"]]
    return _rows(["usename", "usesysid", "usecreatedb", "usesuper", "userepl", "usebypassrls",
                  "passwd"],
                 [(r["rolname"], r["oid"], r["rolcreatedb"], r["rolsuper"], r["rolreplication"],
                   r["rolbypassrls"], "********") for r in roles])


empty("pg_auth_members", parse_columns("oid oid, roleid oid, member oid, grantor oid, admin_option bool, "
                               "inherit_option bool, set_option bool"))


# Settings and activity ---------------------------------------------------------------------------

PG_SETTINGS = parse_columns(
    "name text, setting text, unit text, category text, short_desc text, extra_desc text, "
    "context text, vartype text, source text, min_val text, max_val text, enumvals _text, "
    "boot_val text, reset_val text, sourcefile text, sourceline int4, pending_restart bool")


@virtual("pg_settings", PG_SETTINGS, live=True)
def _pg_settings(o) -> dict:
    session = o.session
    settings = session.settings
    source_of = getattr(session, "setting_source", None)  # where each value comes from
    config = getattr(session.database, "config", None)
    pending = config.pending_restart if config is not None else set()
    rows = []
    for name in sorted(settings, key=str.lower):
        declared = SETTINGS.get(name)
        if declared is None:  # a custom placeholder: a string with no description
            declared = Setting(name, "string", "", category="Customized Options")
        value = settings[name]
        default = getattr(session, "_defaults", {}).get(name, declared.default)

        def raw(text: str, s: Setting = declared) -> str:
            # pg_settings shows amounts in the base unit ('4096' kB) where SHOW says '4MB'.
            return str(parse_amount(s, text)) if s.unit and s.vartype == "integer" and text \
                else text
        if source_of is not None:
            source, sourcefile, sourceline = source_of(name)
        else:
            source, sourcefile, sourceline = \
                ("session" if value != default else "default"), None, None
        rows.append((name, raw(value), declared.unit, declared.category, declared.description,
                     None, declared.context, declared.vartype, source,
                     declared.min, declared.max,
                     list(declared.enumvals) if declared.enumvals else None,
                     raw(declared.default), raw(default), sourcefile, sourceline,
                     name in pending))
    return _rows([c for c, _ in PG_SETTINGS], rows)


PG_STAT_ACTIVITY = parse_columns(
    "datid oid, datname name, pid int4, leader_pid int4, usesysid oid, usename name, "
    "application_name text, client_addr text, client_hostname text, client_port int4, "
    "backend_start timestamptz, xact_start timestamptz, query_start timestamptz, "
    "state_change timestamptz, wait_event_type text, wait_event text, state text, "
    "backend_xid int8, backend_xmin int8, query_id int8, query text, backend_type text")


@virtual("pg_stat_activity", PG_STAT_ACTIVITY, live=True)
def _pg_stat_activity(o) -> dict:
    gather_other_processes(o)  # the reads the server's workers answered, for the times below
    rows = []
    for s in list(getattr(o.database, "sessions", {}).values()):
        # (a failed block's transaction is over: PostgreSQL shows no start until ROLLBACK)
        in_transaction = not s.failed and (s.explicit or s.state == "active")
        rows.append((O.database_oid(s.database_name), s.database_name, s.pid, None,
                     o.role_oid(s.user), s.user, s.settings.get("application_name", ""),
                     getattr(s, "client_addr", None), None, getattr(s, "client_port", None),
                     s.started, instant(s.xact_started if in_transaction else None),
                     instant(s.query_started), instant(s.state_changed),
                     *_wait_event(s), s.state, None, None, None,
                     s.current_query, "client backend"))
    return _rows([c for c, _ in PG_STAT_ACTIVITY], rows)


PG_STATIO = parse_columns("relid oid, schemaname name, relname name, heap_blks_read int8, "
                  "heap_blks_hit int8, idx_blks_read int8, idx_blks_hit int8")
empty("pg_statio_user_tables", PG_STATIO)


@virtual("pg_cursors", parse_columns("name text, statement text, is_holdable bool, is_binary bool, "
                             "is_scrollable bool, creation_time timestamptz"))
def _pg_cursors(o) -> dict:
    cursors = getattr(o.session, "cursors", {})
    return _rows(["name", "statement", "is_holdable", "is_binary", "is_scrollable"],
                 [(name, None, bool(c.hold), False, False) for name, c in cursors.items()])


# System views -------------------------------------------------------------------------------------

@virtual("pg_tables", parse_columns("schemaname name, tablename name, tableowner name, tablespace name, "
                            "hasindexes bool, hasrules bool, hastriggers bool, rowsecurity bool"))
def _pg_tables(o) -> dict:
    rows = [(r.schema, r.name, "postgres", None, bool(r.indexes), False, False, False)
            for r in o.relations if r.kind == "r"]
    return _rows(["schemaname", "tablename", "tableowner", "tablespace", "hasindexes",
                  "hasrules", "hastriggers", "rowsecurity"], rows)


@virtual("pg_indexes", parse_columns("schemaname name, tablename name, indexname name, "
                             "tablespace name, indexdef text"))
def _pg_indexes(o) -> dict:
    rows = []
    for r in o.relations:
        if r.kind == "i":
            table = o.table_of(r)
            rows.append((r.schema, table.name if table else None, r.name, None,
                         o.index_definition(r.oid)))
    return _rows(["schemaname", "tablename", "indexname", "tablespace", "indexdef"], rows)


@virtual("pg_sequences", parse_columns("schemaname name, sequencename name, sequenceowner name, "
                               "data_type regtype, start_value int8, min_value int8, "
                               "max_value int8, increment_by int8, cycle bool, cache_size int8, "
                               "last_value int8"))
def _pg_sequences(o) -> dict:
    rows = []
    for r in o.relations:
        if r.kind == "S":
            d = seqrules.described(r.sequence)
            rows.append((r.schema, r.name, "postgres", TYPES_BY_NAME[d["type"]].oid, d["start"],
                         d["min"], d["max"], d["increment"], d["cycle"], d["cache"],
                         r.sequence.get("value")))
    return _rows(["schemaname", "sequencename", "sequenceowner", "data_type", "start_value",
                  "min_value", "max_value", "increment_by", "cycle", "cache_size", "last_value"],
                 rows)


@virtual("pg_sequence", parse_columns("seqrelid oid, seqtypid oid, seqstart int8, seqincrement int8, "
                              "seqmax int8, seqmin int8, seqcache int8, seqcycle bool"))
def _pg_sequence(o) -> dict:
    rows = []
    for r in o.relations:
        if r.kind == "S":
            d = seqrules.described(r.sequence)
            rows.append((r.oid, TYPES_BY_NAME[d["type"]].oid, d["start"], d["increment"],
                         d["max"], d["min"], d["cache"], d["cycle"]))
    return _rows(["seqrelid", "seqtypid", "seqstart", "seqincrement", "seqmax", "seqmin",
                  "seqcache", "seqcycle"], rows)


@virtual("pg_views", parse_columns("schemaname name, viewname name, viewowner name, "
                                   "definition text"))
def _pg_views(o) -> dict:
    rows = [(r.schema, r.name, r.owner, r.definition) for r in o.relations
            if r.kind == "v" and r.definition is not None]
    return _rows(["schemaname", "viewname", "viewowner", "definition"], rows)


@virtual("pg_matviews", parse_columns("schemaname name, matviewname name, matviewowner name, "
                                      "tablespace name, hasindexes bool, ispopulated bool, "
                                      "definition text"))
def _pg_matviews(o) -> dict:
    rows = [(r.schema, r.name, r.owner, None, bool(r.indexes), r.populated, r.definition)
            for r in o.relations if r.kind == "m"]
    return _rows(["schemaname", "matviewname", "matviewowner", "tablespace", "hasindexes",
                  "ispopulated", "definition"], rows)
empty("pg_inherits", parse_columns("inhrelid oid, inhparent oid, inhseqno int4, "
                           "inhdetachpending bool"))
empty("pg_trigger", parse_columns("oid oid, tgrelid oid, tgparentid oid, tgname name, tgfoid oid, "
                          "tgtype int2, tgenabled char, tgisinternal bool, tgconstrrelid oid, "
                          "tgconstrindid oid, tgconstraint oid, tgdeferrable bool, "
                          "tginitdeferred bool, tgnargs int2, tgattr _int2, tgargs bytea, "
                          "tgqual text, tgoldtable name, tgnewtable name"))
empty("pg_policy", parse_columns("oid oid, polname name, polrelid oid, polcmd char, "
                         "polpermissive bool, polroles _oid, polqual text, polwithcheck text"))
empty("pg_rewrite", parse_columns("oid oid, rulename name, ev_class oid, ev_type char, "
                          "ev_enabled char, is_instead bool, ev_qual text, ev_action text"))
empty("pg_publication", parse_columns("oid oid, pubname name, pubowner oid, puballtables bool, "
                              "pubinsert bool, pubupdate bool, pubdelete bool, "
                              "pubtruncate bool, pubviaroot bool"))
empty("pg_publication_rel", parse_columns("oid oid, prpubid oid, prrelid oid, prqual text, "
                                  "prattrs _int2"))
empty("pg_publication_namespace", parse_columns("oid oid, pnpubid oid, pnnspid oid"))
empty("pg_statistic_ext", parse_columns("oid oid, stxrelid oid, stxname name, stxnamespace oid, "
                                "stxowner oid, stxstattarget int4, stxkeys _int2, "
                                "stxkind _char, stxexprs text"))
PG_DEPEND = parse_columns("classid oid, objid oid, objsubid int4, refclassid oid, refobjid oid, "
                  "refobjsubid int4, deptype char")


@virtual("pg_depend", PG_DEPEND)
def _pg_depend(o) -> dict:
    """The dependencies clients act on: extension members ('e': pg_dump dumps `CREATE
    EXTENSION vector` instead of its functions, types, operator classes and access method) and
    sequences owned by a column ('a': `ALTER SEQUENCE … OWNED BY`, pg_get_serial_sequence)."""
    rows = []
    extensions = {name: oid for oid, name, _version, _ns in o.extensions()}
    vector = extensions.get("vector")
    if vector is not None:
        public = o.nsp_by_name.get("public")
        members = [(O.PG_PROC_OID, p.oid) for p in F.proc_rows() if p.oid >= F.VECTOR_FIRST_OID]
        types = _pg_type(o)
        members += [(O.PG_TYPE_OID, oid) for oid, ns in zip(types["oid"], types["typnamespace"])
                    if ns == public]  # vector, _vector: tables have no row types here
        members += [(table_oid("pg_operator"), oid) for oid in _pg_operator(o)["oid"]]
        opclasses = _pg_opclass(o)
        members += [(table_oid("pg_opclass"), oid) for oid, ns in
                    zip(opclasses["oid"], opclasses["opcnamespace"]) if ns == public]
        members += sorted({(table_oid("pg_opfamily"), family) for family, ns in
                           zip(opclasses["opcfamily"], opclasses["opcnamespace"]) if ns == public})
        members += [(O.PG_AM_OID, m.am_oid) for m in access_methods.methods()]
        rows += [(classid, oid, 0, table_oid("pg_extension"), vector, 0, "e") for classid, oid in members]
    if "plpgsql" in extensions:
        rows.append((table_oid("pg_language"), 13545, 0, table_oid("pg_extension"), extensions["plpgsql"], 0, "e"))
    by_table_id = {r.table_id: r for r in o.relations if r.kind == "r"}
    for rel in o.relations:
        owner = (rel.sequence or {}).get("owned_by") if rel.kind == "S" else None
        if not owner:
            continue
        table_id, _, column = owner.partition(".")
        table = by_table_id.get(int(table_id)) if table_id.isdigit() else None
        col = next((c for c in table.columns if c.name == column), None) \
            if table is not None else None
        if col is not None:  # an identity column's sequence is internal to it ('i')
            kind = "i" if col.identity in ("always", "by default") else "a"
            rows.append((O.PG_CLASS_OID, rel.oid, 0, O.PG_CLASS_OID, table.oid, col.attnum, kind))
    return _rows([c for c, _ in PG_DEPEND], rows)


empty("pg_foreign_table", parse_columns("ftrelid oid, ftserver oid, ftoptions _text"))
empty("pg_foreign_data_wrapper", parse_columns("oid oid, fdwname name, fdwowner oid, fdwhandler oid, "
                                       "fdwvalidator oid, fdwacl _text, fdwoptions _text"))
empty("pg_foreign_server", parse_columns("oid oid, srvname name, srvowner oid, srvfdw oid, "
                                 "srvtype text, srvversion text, srvacl _text, "
                                 "srvoptions _text"))
empty("pg_event_trigger", parse_columns("oid oid, evtname name, evtevent name, evtowner oid, "
                                "evtfoid oid, evtenabled char, evttags _text"))
empty("pg_conversion", parse_columns("oid oid, conname name, connamespace oid, conowner oid, "
                             "conforencoding int4, contoencoding int4, conproc regproc, "
                             "condefault bool"))
empty("pg_cast", parse_columns("oid oid, castsource oid, casttarget oid, castfunc oid, "
                       "castcontext char, castmethod char"))
PG_OPERATOR = parse_columns("oid oid, oprname name, oprnamespace oid, oprowner oid, "
                            "oprkind char, oprcanmerge bool, oprcanhash bool, oprleft oid, "
                            "oprright oid, oprresult oid, oprcom oid, oprnegate oid, "
                            "oprcode regproc, oprrest regproc, oprjoin regproc")

# pgvector's operators, as its extension script creates them: (name, left = right type,
# result, function, commutator, negator, restriction and join estimators). The OIDs are fixed
# by position here (VECTOR_OPERATOR_FIRST_OID + index), so append, never reorder.
_DISTANCES = [("<->", "l2_distance"), ("<#>", "{t}_negative_inner_product"),
              ("<=>", "cosine_distance"), ("<+>", "l1_distance")]
_COMPARISONS = [("<", "lt", ">", ">=", "scalarltsel", "scalarltjoinsel"),
                ("<=", "le", ">=", ">", "scalarlesel", "scalarlejoinsel"),
                ("<>", "ne", "<>", "=", "eqsel", "eqjoinsel"),
                ("=", "eq", "=", "<>", "eqsel", "eqjoinsel"),
                (">", "gt", "<", "<=", "scalargtsel", "scalargtjoinsel"),
                (">=", "ge", "<=", "<", "scalargesel", "scalargejoinsel")]
VECTOR_OPERATOR_FIRST_OID = 15901


def _vector_operator_specs() -> list[tuple]:
    specs: list[tuple] = []
    for t in ("vector", "halfvec", "sparsevec"):
        specs += [(name, t, "float8", fn.format(t=t), name, None, None, None)
                  for name, fn in _DISTANCES]
        if t != "sparsevec":
            specs += [("+", t, t, f"{t}_add", "+", None, None, None),
                      ("-", t, t, f"{t}_sub", None, None, None, None),
                      ("*", t, t, f"{t}_mul", "*", None, None, None),
                      ("||", t, t, f"{t}_concat", None, None, None, None)]
        specs += [(name, t, "bool", f"{t}_{fn}", com, neg, rest, join)
                  for name, fn, com, neg, rest, join in _COMPARISONS]
    specs += [("<~>", "bit", "float8", "hamming_distance", "<~>", None, None, None),
              ("<%>", "bit", "float8", "jaccard_distance", "<%>", None, None, None)]
    return specs


@virtual("pg_operator", PG_OPERATOR)
def _pg_operator(o) -> dict:
    """pgvector's operators (in public, as its extension creates them); PostgreSQL's own
    operators have no rows here."""
    specs = _vector_operator_specs()
    oids = {(name, t): VECTOR_OPERATOR_FIRST_OID + i for i, (name, t, *_) in enumerate(specs)}
    procs = {(p.name, p.argtypes): p.oid for p in F.proc_rows()}
    namespace = o.nsp_by_name.get("public", O.PUBLIC_OID)
    rows = []
    for name, t, result, fn, com, neg, rest, join in specs:
        if t not in TYPES_BY_NAME:  # a type this build does not have
            continue
        oid, arg = oids[(name, t)], TYPES_BY_NAME[t].oid
        rows.append((oid, name, namespace, BOOTSTRAP_SUPERUSER_OID, "b", False, False, arg, arg,
                     TYPES_BY_NAME[result].oid, oids.get((com, t), 0), oids.get((neg, t), 0),
                     procs.get((fn, (arg, arg)), 0), F.proc_oids().get(rest or "", 0),
                     F.proc_oids().get(join or "", 0)))
    return _rows([c for c, _ in PG_OPERATOR], rows)
empty("pg_aggregate", parse_columns("aggfnoid regproc, aggkind char, aggnumdirectargs int2, "
                            "aggtransfn regproc, aggfinalfn regproc, aggsortop oid, "
                            "aggtranstype oid, agginitval text"))
empty("pg_partitioned_table", parse_columns("partrelid oid, partstrat char, partnatts int2, "
                                    "partdefid oid, partattrs _int2, partclass _oid, "
                                    "partcollation _oid, partexprs text"))
empty("pg_stat_replication", parse_columns("pid int4, usesysid oid, usename name, "
                                   "application_name text, state text"))
empty("pg_prepared_xacts", parse_columns("transaction int8, gid text, prepared timestamptz, "
                                 "owner name, database name"))
@virtual("pg_locks", parse_columns("locktype text, database oid, relation oid, pid int4, "
                           "mode text, granted bool"), live=True)
def _pg_locks(o) -> dict:
    """Row locks as PostgreSQL shows them: a block holding rows holds its transaction id
    (ExclusiveLock), a session waiting for a row waits for the holder's (ShareLock, not
    granted). Relation locks, of no relation: a block's open schema changes (granted), a
    schema change waiting for the tables' users and a statement waiting behind a change."""
    rows = []
    for s in list(getattr(o.database, "sessions", {}).values()):
        holder = getattr(s, "lock_holder", None)
        if holder is not None and holder.held:
            rows.append(("transactionid", None, None, s.pid, "ExclusiveLock", True))
        if row_lock_wait_of(s) is not None:
            rows.append(("transactionid", None, None, s.pid, "ShareLock", False))
        database = O.database_oid(s.database_name)
        if getattr(s, "ddl_open", False):  # its schema changes hold the DDL lock
            rows.append(("relation", database, None, s.pid, "AccessExclusiveLock", True))
        if getattr(s, "relation_lock_wait", False):
            rows.append(("relation", database, None, s.pid, "AccessExclusiveLock", False))
        elif _waits_for_tables(s):  # a statement waiting behind a schema change
            rows.append(("relation", database, None, s.pid, "AccessShareLock", False))
    return _rows(["locktype", "database", "relation", "pid", "mode", "granted"], rows)


def _wait_event(session: object) -> tuple[str | None, str | None]:
    """pg_stat_activity's wait_event_type and wait_event: a lock on a row's transaction, or
    on a relation a schema change waits for (or a statement queued behind that change); an
    idle session waits for its client."""
    if row_lock_wait_of(session) is not None:
        return "Lock", "transactionid"
    if getattr(session, "relation_lock_wait", False) or _waits_for_tables(session):
        return "Lock", "relation"
    if str(getattr(session, "state", "")).startswith("idle"):
        return "Client", "ClientRead"
    return None, None


def _waits_for_tables(session: object) -> bool:
    """A statement waiting behind a schema change (its claim, or a block's open changes)."""
    waits = getattr(session, "waits_for_tables", None)
    return waits is not None and waits()


def row_lock_wait_of(session: object) -> object:
    """The block a session waits for the end of (a row it writes is locked), or None."""
    holder = getattr(session, "lock_holder", None)
    waits_for = holder.waits_for if holder is not None else None
    return waits_for if waits_for is not None else getattr(session, "row_lock_wait", None)


@virtual("pg_language", parse_columns("oid oid, lanname name, lanowner oid, lanispl bool, "
                              "lanpltrusted bool, lanplcallfoid oid, laninline oid, "
                              "lanvalidator oid, lanacl _text"))
def _pg_language(o) -> dict:
    return _rows(["oid", "lanname", "lanowner", "lanispl", "lanpltrusted"],
                 [(12, "internal", 10, False, False), (13, "c", 10, False, False),
                  (14, "sql", 10, False, True), (13545, "plpgsql", 10, True, True)])


# sqlvec: vector index status ----------------------------------------------------------------------

@virtual("sqlvec_indexes", parse_columns("schemaname name, tablename name, indexname name, "
                                 "segment int8, state text, rows_indexed int8, rows_total int8, "
                                 "progress float8, memory_bytes int8"))
def _sqlvec_indexes(o) -> dict:
    store = o.session.catalog.store
    schema_of = {t.def_.name: t.def_.schema for t in list(store.tables.values())}
    rows = []
    for st in store.index_status():
        total = int(st.get("rows") or 0)
        done = int(st.get("indexed") or 0)
        rows.append((schema_of.get(st["table"], "public"), st["table"], st["index"],
                     st.get("segment"), st.get("state"), done, total,
                     1.0 if total == 0 else min(done / total, 1.0),
                     int(st.get("memory_bytes") or 0)))
    return _rows(["schemaname", "tablename", "indexname", "segment", "state", "rows_indexed",
                  "rows_total", "progress", "memory_bytes"], rows)



# Catalogs pg_dump reads and finds nothing to dump in: no initial privileges, transforms,
# subscriptions, text search objects, user mappings, default ACLs, large objects, security
# labels, operator-class members, shared dependencies or per-role settings exist here.
empty("pg_init_privs", parse_columns("objoid oid, classoid oid, objsubid int4, privtype char, "
                             "initprivs _text"))
empty("pg_transform", parse_columns("oid oid, trftype oid, trflang oid, trffromsql oid, trftosql oid"))
empty("pg_subscription", parse_columns(
    "oid oid, subdbid oid, subskiplsn text, subname name, subowner oid, subenabled bool, "
    "subbinary bool, substream char, subtwophasestate char, subdisableonerr bool, "
    "subpasswordrequired bool, subrunasowner bool, subfailover bool, subconninfo text, "
    "subslotname name, subsynccommit text, subpublications _text, suborigin text"))
empty("pg_statistic_ext_data", parse_columns("stxoid oid, stxdinherit bool, stxdndistinct text, "
                                     "stxddependencies text, stxdmcv text, stxdexpr text"))
empty("pg_ts_parser", parse_columns("oid oid, prsname name, prsnamespace oid, prsstart oid, "
                            "prstoken oid, prsend oid, prsheadline oid, prslextype oid"))
empty("pg_ts_dict", parse_columns("oid oid, dictname name, dictnamespace oid, dictowner oid, "
                          "dicttemplate oid, dictinitoption text"))
empty("pg_ts_template", parse_columns("oid oid, tmplname name, tmplnamespace oid, tmplinit oid, "
                              "tmpllexize oid"))
empty("pg_ts_config", parse_columns("oid oid, cfgname name, cfgnamespace oid, cfgowner oid, "
                            "cfgparser oid"))
empty("pg_ts_config_map", parse_columns("mapcfg oid, maptokentype int4, mapseqno int4, mapdict oid"))
empty("pg_user_mapping", parse_columns("oid oid, umuser oid, umserver oid, umoptions _text"))
empty("pg_default_acl", parse_columns("oid oid, defaclrole oid, defaclnamespace oid, defaclobjtype char, "
                              "defaclacl _text"))
empty("pg_largeobject_metadata", parse_columns("oid oid, lomowner oid, lomacl _text"))
empty("pg_seclabel", parse_columns("objoid oid, classoid oid, objsubid int4, provider text, label text"))
empty("pg_shseclabel", parse_columns("objoid oid, classoid oid, provider text, label text"))
empty("pg_amop", parse_columns("oid oid, amopfamily oid, amoplefttype oid, amoprighttype oid, "
                       "amopstrategy int2, amoppurpose char, amopopr oid, amopmethod oid, "
                       "amopsortfamily oid"))
empty("pg_amproc", parse_columns("oid oid, amprocfamily oid, amproclefttype oid, amprocrighttype oid, "
                         "amprocnum int2, amproc oid"))
empty("pg_shdepend", parse_columns("dbid oid, classid oid, objid oid, objsubid int4, refclassid oid, "
                           "refobjid oid, deptype char"))
empty("pg_db_role_setting", parse_columns("setdatabase oid, setrole oid, setconfig _text"))
empty("pg_seclabels", parse_columns("objoid oid, classoid oid, objsubid int4, objtype text, "
                            "objnamespace oid, objname text, provider text, label text"))
