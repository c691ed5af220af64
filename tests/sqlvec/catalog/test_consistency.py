"""Every table and column created through SQL appears in pg_class, pg_attribute and
information_schema with matching names, types and OIDs, and disappears on DROP."""

from __future__ import annotations

from sqlvec.types import VECTOR_OID
from tests.sqlvec.catalog.conftest import rows

COLUMNS = [("k", "int8", 20, -1), ("label", "varchar(12)", 1043, 16), ("v", "vector(4)", VECTOR_OID, 4),
           ("ok", "bool", 16, -1), ("amount", "numeric(8,3)", 1700, (8 << 16 | 3) + 4),
           ("at", "timestamp", 1114, -1), ("words", "text[]", 1009, -1)]


def test_created_table_everywhere(db):
    s = db.connect()
    s.execute_one("CREATE SCHEMA app")
    s.execute_one("CREATE TABLE app.things (" + ", ".join(f"{n} {t}" for n, t, _, _ in COLUMNS)
                  + ", PRIMARY KEY (k))")
    (oid, nsp, kind, natts, hasindex), = rows(
        s, "SELECT c.oid, n.nspname, c.relkind, c.relnatts, c.relhasindex FROM pg_class c "
           "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'things'")
    assert (nsp, kind, natts, hasindex) == ("app", "r", len(COLUMNS), True)
    assert rows(s, "SELECT 'app.things'::regclass::oid") == [(oid,)]
    attrs = rows(s, "SELECT attname, atttypid, atttypmod, attnum, attnotnull, "
                    f"format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = {oid} "
                    "AND attnum > 0 ORDER BY attnum")
    assert [(a[0], a[1], a[2], a[3]) for a in attrs] == [
        (n, toid, mod, i + 1) for i, (n, _t, toid, mod) in enumerate(COLUMNS)]
    assert attrs[0][4] is True and attrs[1][4] is False
    assert [a[5] for a in attrs] == ["bigint", "character varying(12)", "vector(4)", "boolean",
                                     "numeric(8,3)", "timestamp without time zone", "text[]"]
    # pg_type knows every column type by the same OID.
    type_oids = {a[1] for a in attrs}
    known = {r[0] for r in rows(s, "SELECT oid FROM pg_type")}
    assert type_oids <= known
    info = rows(s, "SELECT column_name, data_type, udt_name, character_maximum_length, "
                   "numeric_precision, numeric_scale, is_nullable FROM information_schema.columns "
                   "WHERE table_schema = 'app' AND table_name = 'things' ORDER BY ordinal_position")
    assert info == [
        ("k", "bigint", "int8", None, 64, 0, "NO"),
        ("label", "character varying", "varchar", 12, None, None, "YES"),
        ("v", "USER-DEFINED", "vector", None, None, None, "YES"),
        ("ok", "boolean", "bool", None, None, None, "YES"),
        ("amount", "numeric", "numeric", None, 8, 3, "YES"),
        ("at", "timestamp without time zone", "timestamp", None, None, None, "YES"),
        ("words", "ARRAY", "_text", None, None, None, "YES"),
    ]
    assert rows(s, "SELECT table_type FROM information_schema.tables WHERE table_schema = 'app'") \
        == [("BASE TABLE",)]
    assert rows(s, "SELECT constraint_name, constraint_type FROM "
                   "information_schema.table_constraints WHERE table_name = 'things' AND "
                   "constraint_type = 'PRIMARY KEY'") == [("things_pkey", "PRIMARY KEY")]
    assert rows(s, "SELECT column_name, ordinal_position FROM information_schema.key_column_usage "
                   "WHERE table_name = 'things'") == [("k", 1)]
    assert rows(s, f"SELECT conname, contype, conkey FROM pg_constraint WHERE conrelid = {oid} "
                   "AND contype = 'p'") == [("things_pkey", "p", [1])]
    assert rows(s, "SELECT schemaname, relname FROM pg_stat_user_tables WHERE relid = "
                   f"{oid}") == [("app", "things")]

    s.execute_one("ALTER TABLE app.things RENAME COLUMN label TO title")
    assert rows(s, f"SELECT attname FROM pg_attribute WHERE attrelid = {oid} AND attnum = 2") == \
        [("title",)]

    s.execute_one("DROP TABLE app.things")
    assert rows(s, "SELECT count(*) FROM pg_class WHERE relname IN ('things', 'things_pkey')") \
        == [(0,)]
    assert rows(s, f"SELECT count(*) FROM pg_attribute WHERE attrelid = {oid}") == [(0,)]
    assert rows(s, "SELECT count(*) FROM information_schema.columns WHERE table_name = "
                   "'things'") == [(0,)]
    assert rows(s, f"SELECT count(*) FROM pg_constraint WHERE conrelid = {oid}") == [(0,)]


def test_index_and_sequence_entries(session):
    got = rows(session, "SELECT c.relname, c.relkind, am.amname FROM pg_class c LEFT JOIN pg_am am "
                        "ON am.oid = c.relam WHERE c.relname LIKE 'items%' ORDER BY 1")
    assert got == [("items", "r", "heap"), ("items_embedding_idx", "i", "hnsw"),
                   ("items_id_seq", "S", None), ("items_name_idx", "i", "btree"),
                   ("items_pkey", "i", "btree")]
    opclass = rows(session, "SELECT o.opcname, o.opcdefault FROM pg_index i JOIN pg_class c ON "
                            "c.oid = i.indexrelid JOIN pg_opclass o ON o.oid = i.indclass[1] "
                            "WHERE c.relname = 'items_embedding_idx'")
    assert opclass in ([("vector_cosine_ops", False)], [])
    assert rows(session, "SELECT opcname, opcdefault FROM pg_opclass o JOIN pg_am a ON "
                         "a.oid = o.opcmethod WHERE a.amname = 'hnsw' ORDER BY 1") == [
        ("bit_hamming_ops", False), ("bit_jaccard_ops", False),
        ("halfvec_cosine_ops", False), ("halfvec_ip_ops", False), ("halfvec_l1_ops", False),
        ("halfvec_l2_ops", False), ("sparsevec_cosine_ops", False), ("sparsevec_ip_ops", False),
        ("sparsevec_l1_ops", False), ("sparsevec_l2_ops", False),
        ("vector_cosine_ops", False), ("vector_ip_ops", False),
        ("vector_l1_ops", False), ("vector_l2_ops", True)]
    assert rows(session, "SELECT pg_get_serial_sequence('items', 'id')") == \
        [("public.items_id_seq",)]
    assert rows(session, "SELECT seqstart, seqincrement FROM pg_sequence s JOIN pg_class c ON "
                         "c.oid = s.seqrelid WHERE c.relname = 'items_id_seq'") == [(1, 1)]


def test_vector_type_row(session):
    assert rows(session, "SELECT oid, typname, typtype, typcategory, typarray, typinput::text, "
                         "typoutput::text, typreceive::text, typsend::text, typlen, typstorage "
                         "FROM pg_type WHERE typname = 'vector'") == [
        (VECTOR_OID, "vector", "b", "U", VECTOR_OID + 1, "vector_in", "vector_out",
         "vector_recv", "vector_send", -1, "e")]
    assert rows(session, "SELECT typelem FROM pg_type WHERE typname = '_vector'") == \
        [(VECTOR_OID,)]
    assert rows(session, "SELECT typname FROM pg_type WHERE oid = 'int4[]'::regtype") == \
        [("_int4",)]


def test_system_column_oid_and_catalog_oids(session):
    assert rows(session, "SELECT 'pg_class'::regclass::oid, 'pg_type'::regclass::oid, "
                         "'pg_catalog.pg_namespace'::regclass::oid") == [(1259, 1247, 2615)]
    assert rows(session, "SELECT relname FROM pg_class WHERE oid = 'pg_attribute'::regclass") == \
        [("pg_attribute",)]
