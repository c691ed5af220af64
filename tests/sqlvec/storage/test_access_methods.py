"""The registry of vector access methods: what it accepts, how a CREATE INDEX definition is
checked (PostgreSQL's and pgvector's messages and SQLSTATEs), and the lookups storage, search
and the catalogs derive from it. A whole second method, end to end through a real server, is
tests/e2e/test_index_access_method.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sqlvec.errors import SqlVecError
from sqlvec.storage import access_methods
from sqlvec.storage.bit_index import PackedBitsIndex
from sqlvec.storage.hnsw import HnswIndex, HnswParams
from sqlvec.storage.ivfflat import IvfflatIndex
from sqlvec.storage.schema import ColumnDef, IndexDef, TableDef
from sqlvec.storage.vector_index import OpClass
from sqlvec.types import SqlType
from sqlvec.vectors import Metric

EMB = ColumnDef("emb", SqlType.vector(3), 1)
FREE = ColumnDef("free", SqlType.vector(), 2)
TAG = ColumnDef("tag", SqlType("text"), 3)


def method(name: str, *, oid: int = 9800, opclasses=None, **extra) -> type:
    """A class with the declarations `register` checks (nothing is built from it here)."""
    body = {"access_method": name, "am_oid": oid, "options": (), "settings": (),
            "opclasses": opclasses if opclasses is not None else
            (OpClass("vector_l2_ops", Metric.L2, oid + 1, oid + 2, default=True),)}
    body.update(extra)
    return type(name.title(), (), body)


@pytest.fixture
def registered():
    """Register methods for one test; always removed again."""
    names: list[str] = []

    def add(cls):
        access_methods.register(cls)
        names.append(cls.access_method)
        return cls

    yield add
    for name in names:
        access_methods.unregister(name)


def test_hnsw_and_ivfflat_are_built_in():
    assert access_methods.find("hnsw") is HnswIndex
    assert access_methods.get("hnsw") is HnswIndex
    assert access_methods.find("ivfflat") is IvfflatIndex
    assert access_methods.methods()[:2] == (HnswIndex, IvfflatIndex)
    assert access_methods.find("btree") is None and access_methods.find("diskann") is None


def test_unknown_method_is_0a000_naming_the_registered_ones(registered):
    with pytest.raises(SqlVecError) as exc:
        access_methods.get("diskann")
    assert (exc.value.sqlstate, exc.value.message) == ("0A000",
                                                       'access method "diskann" is not supported')
    assert exc.value.hint == "sqlvec supports USING hnsw, ivfflat for vectors and btree."
    registered(method("flat"))
    with pytest.raises(SqlVecError) as exc:
        access_methods.get("diskann")
    assert exc.value.hint == "sqlvec supports USING hnsw, ivfflat, flat for vectors and btree."


@pytest.mark.parametrize("cls, problem", [
    (method("hnsw"), "already registered"),
    (method("btree"), "new lower-case identifier"),
    (method("exact"), "new lower-case identifier"),  # a search strategy's name
    (method("Flat"), "new lower-case identifier"),
    (method("flat", oid=HnswIndex.am_oid), "reuses OIDs"),
    (method("flat", opclasses=(OpClass("a_ops", Metric.L2, 9801, 9802, default=True),
                               OpClass("b_ops", Metric.IP, 9801, 9803))), "reuses OIDs"),
    (method("flat", opclasses=(OpClass("a_ops", Metric.L2, 9801, 9802),)),
     "exactly one default operator class"),
])
def test_register_refuses_ambiguous_methods(cls, problem):
    with pytest.raises(ValueError, match=problem):
        access_methods.register(cls)
    assert access_methods.methods() == (HnswIndex, IvfflatIndex)


def test_watchers_see_every_method_coming_and_going(registered):
    seen: list[tuple[str, bool]] = []
    stop = access_methods.watch(lambda m, added: seen.append((m.access_method, added)))
    try:
        assert seen == [("hnsw", True), ("ivfflat", True)]
        registered(method("flat"))
        access_methods.unregister("flat")
        assert seen[2:] == [("flat", True), ("flat", False)]
        assert access_methods.find("flat") is None
    finally:
        stop()
    registered(method("flat"))
    assert seen[-1] == ("flat", False)


# Checking CREATE INDEX ------------------------------------------------------------------------

def check(columns=(EMB,), opclass=None, options=(), method_name="hnsw"):
    return access_methods.check_definition(method_name, list(columns), opclass, list(options))


def test_valid_definitions_fill_in_the_default_operator_class():
    assert check() == ("vector_l2_ops", {})
    assert check(opclass="vector_cosine_ops", options=[("m", 8), ("EF_CONSTRUCTION", "32")]) == \
        ("vector_cosine_ops", {"m": 8, "ef_construction": 32})


@pytest.mark.parametrize("kwargs, sqlstate, message", [
    ({"columns": (EMB, EMB)}, "0A000", "hnsw indexes on several columns are not supported"),
    ({"opclass": "vector_nope_ops"}, "42704",
     'operator class "vector_nope_ops" does not exist for access method "hnsw"'),
    ({"opclass": "vector_l1_ops"}, "0A000",
     "operator class vector_l1_ops is not supported by hnsw indexes here"),
    ({"columns": (TAG,)}, "42704",
     'data type text has no default operator class for access method "hnsw"'),
    ({"columns": (TAG,), "opclass": "vector_l2_ops"}, "42804",
     'operator class "vector_l2_ops" does not accept data type text'),
    ({"columns": (FREE,)}, "22000", 'column "free" does not have dimensions'),
    ({"options": [("nope", 1)]}, "22023", 'unrecognized parameter "nope"'),
    ({"options": [("m", 1)]}, "22023", 'value 1 out of bounds for option "m"'),
    ({"options": [("m", "x")]}, "22023", 'invalid value for integer option "m": x'),
    ({"options": [("m", 8), ("m", 8)]}, "22023", 'parameter "m" specified more than once'),
    ({"options": [("m", 33)]}, "22023",
     "ef_construction must be greater than or equal to 2 * m"),
    ({"method_name": "diskann"}, "0A000", 'access method "diskann" is not supported'),
])
def test_invalid_definitions_fail_as_postgresql_and_pgvector(kwargs, sqlstate, message):
    with pytest.raises(SqlVecError) as exc:
        check(**kwargs)
    assert (exc.value.sqlstate, exc.value.message) == (sqlstate, message)


# Lookups ----------------------------------------------------------------------------------------

def table(*indexes: IndexDef) -> TableDef:
    return TableDef(1, 16400, "t", "public", (EMB, TAG), indexes=indexes)


def test_lookups_derive_from_the_definition():
    cos = IndexDef("t_cos", 16401, ("emb",), "hnsw", "vector_cosine_ops", {"m": 8})
    default = IndexDef("t_l2", 16402, ("emb",), "hnsw", None)
    tag = IndexDef("t_tag", 16403, ("tag",), "btree")
    t = table(tag, cos, default)
    assert access_methods.vector_indexes(t) == (cos, default)
    assert access_methods.index_for(t, "emb", Metric.COSINE) is cos
    assert access_methods.index_for(t, "emb", Metric.L2) is default
    assert access_methods.index_for(t, "emb", Metric.IP) is None
    assert access_methods.metric_of(default) is Metric.L2
    assert access_methods.params_of(cos) == HnswParams(Metric.COSINE, m=8, ef_construction=64)
    assert access_methods.file_name(7, cos) == "seg-00000007.16401.hnsw"


def test_indexes_of_a_method_this_server_lacks_are_not_vector_indexes():
    gone = IndexDef("t_flat", 16404, ("emb",), "flat", "vector_l2_ops")
    t = table(gone)
    assert access_methods.vector_indexes(t) == ()
    assert access_methods.index_for(t, "emb", Metric.L2) is None
    assert access_methods.index_for(table(replace(gone, method="hnsw")), "emb", Metric.L2) \
        is not None


def test_manifest_entries_read_as_before():
    """Index definitions are stored as they always were; one without `method` (older
    manifests) is an HNSW index."""
    stored = {"name": "t_emb", "oid": 16401, "columns": ["emb"], "opclass": "vector_ip_ops",
              "options": {"m": 8}}
    ix = IndexDef.from_json(stored)
    assert ix.method == "hnsw" and access_methods.vector_indexes(table(ix)) == (ix,)
    assert access_methods.metric_of(ix) is Metric.IP
    assert ix.to_json() == {**stored, "method": "hnsw"}


# Expression indexes -----------------------------------------------------------------------------

HALF = IndexDef("t_half", 16405, ("emb",), "hnsw", "halfvec_l2_ops", expression="emb::halfvec(3)",
                expression_sql="(emb)::halfvec(3)", key_type="halfvec")
BITS = IndexDef("t_bits", 16406, ("emb",), "hnsw", "bit_hamming_ops",
                expression="binary_quantize(emb)::bit(3)",
                expression_sql="(binary_quantize(emb))::bit(3)", key_type="bit")


def test_an_index_on_a_cast_is_found_only_for_searches_of_that_cast():
    plain = IndexDef("t_l2", 16402, ("emb",), "hnsw", None)
    t = table(plain, HALF)
    assert access_methods.index_for(t, "emb", Metric.L2) is plain
    assert access_methods.index_for(t, "emb", Metric.L2, "halfvec") is HALF
    assert access_methods.index_for(table(HALF), "emb", Metric.L2) is None
    assert access_methods.index_for(t, "emb", Metric.COSINE, "halfvec") is None
    assert access_methods.key_columns(t, HALF)[0].type == SqlType("halfvec", 3)
    assert access_methods.key_columns(t, plain) == [EMB]


def test_bit_operator_classes_are_accepted_and_build_packed_bits():
    """hnswlib has no Hamming or Jaccard space: bit indexes build packed bits, whatever the
    method named."""
    bits = ColumnDef("b", SqlType("bit", 8), 4)
    assert check(columns=(bits,), opclass="bit_hamming_ops") == ("bit_hamming_ops", {})
    assert check(columns=(bits,), opclass="bit_jaccard_ops") == ("bit_jaccard_ops", {})
    assert check(columns=(bits,), opclass="bit_hamming_ops", method_name="ivfflat") == \
        ("bit_hamming_ops", {})
    with pytest.raises(SqlVecError) as exc:
        check(opclass="bit_hamming_ops")
    assert (exc.value.sqlstate, exc.value.message) == (
        "42804", 'operator class "bit_hamming_ops" does not accept data type vector')
    assert access_methods.structure(BITS) is PackedBitsIndex
    assert access_methods.structure(HALF) is access_methods.get("hnsw")
    assert access_methods.on_bits(BITS) and not access_methods.on_bits(HALF)
    assert access_methods.vector_indexes(table(HALF, BITS)) == (HALF, BITS)


def test_expression_indexes_round_trip_through_the_manifest():
    for ix in (HALF, BITS):
        assert IndexDef.from_json(ix.to_json()) == ix
    assert "expression" not in IndexDef("t_l2", 16402, ("emb",), "hnsw", None).to_json()
