"""The registry of vector access methods, keyed by name (`CREATE INDEX … USING <name>`).

Each method is a class implementing `VectorIndex` (vector_index.py); HNSW (hnsw.py) and
IVFFlat (ivfflat.py) are built in. DDL, storage, search, settings and the catalogs look methods
up here and speak only the protocol, so a new index type is its module plus one `register` line
below.

An index's definition (`IndexDef`: method, opclass, options) is stored in the manifest as it
always was; its per-segment files are named `seg-<segment>.<index oid>.<method>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from sqlvec.errors import (
    DataException,
    DatatypeMismatch,
    FeatureNotSupported,
    InvalidParameterValue,
    SqlVecError,
    UndefinedObject,
)
from sqlvec.storage.bit_index import PackedBitsIndex
from sqlvec.storage.hnsw import SPARSE_MAX_NNZ, HnswIndex
from sqlvec.storage.ivfflat import IvfflatIndex
from sqlvec.storage.schema import ColumnDef, IndexDef, TableDef
from sqlvec.storage.segment import SegmentData, key_name
from sqlvec.storage.sparse_index import SparseInvertedIndex
from sqlvec.storage.vector_index import OpClass, VectorIndex, all_options, check_options
from sqlvec.types import SqlType
from sqlvec.vectors import Metric

# Names PostgreSQL's own access methods and the search strategies use: never a vector method's.
RESERVED_NAMES = frozenset({"heap", "btree", "hash", "gist", "gin", "spgist", "brin", "exact",
                            "skip"})

_METHODS: dict[str, type[VectorIndex]] = {}
_LISTENERS: list[Callable[[type[VectorIndex], bool], None]] = []


# Registering ------------------------------------------------------------------------------------

def register(method: type[VectorIndex]) -> type[VectorIndex]:
    """Add an access method (usable as a class decorator). Its name and OIDs must be new, and
    it must have exactly one default operator class."""
    name = method.access_method
    if not name.isidentifier() or name != name.lower() or name in RESERVED_NAMES:
        raise ValueError(f"access method name {name!r} must be a new lower-case identifier")
    if name in _METHODS:
        raise ValueError(f"access method {name!r} is already registered")
    inputs = {o.input_type for o in method.opclasses}
    if not any(o.default for o in method.opclasses) or any(
            sum(1 for o in method.opclasses if o.default and o.input_type == t) > 1
            for t in inputs):
        raise ValueError(f"access method {name!r} needs exactly one default operator class (at most "
                         "one per input type)")
    taken = {oid for m in _METHODS.values() for oid in _oids(m)}
    clash = taken.intersection(_oids(method))
    if clash or len(set(_oids(method))) != len(_oids(method)):
        raise ValueError(f"access method {name!r} reuses OIDs {sorted(clash) or 'of its own'}")
    _METHODS[name] = method
    for listener in list(_LISTENERS):
        listener(method, True)
    return method


def unregister(name: str) -> None:
    """Remove an access method (for tests that register one of their own)."""
    method = _METHODS.pop(name, None)
    if method is not None:
        for listener in list(_LISTENERS):
            listener(method, False)


def watch(listener: Callable[[type[VectorIndex], bool], None]) -> Callable[[], None]:
    """Call `listener(method, True)` for every method registered now and later, and
    `listener(method, False)` when one is removed: how the layers above keep tables derived
    from the methods (settings) in step without storage importing them. Returns the function
    that stops it."""
    _LISTENERS.append(listener)
    for method in list(_METHODS.values()):
        listener(method, True)
    return lambda: _LISTENERS.remove(listener)


def _oids(method: type[VectorIndex]) -> list[int]:
    return [method.am_oid] + [o for c in method.opclasses for o in (c.oid, c.family_oid)]


# Looking up -------------------------------------------------------------------------------------

def find(name: str) -> type[VectorIndex] | None:
    """The vector access method of this name, or None (btree and unknown names)."""
    return _METHODS.get(name)


def get(name: str) -> type[VectorIndex]:
    """The access method of an index definition; 0A000 when it is not a vector method."""
    method = _METHODS.get(name)
    if method is None:
        raise FeatureNotSupported(f'access method "{name}" is not supported',
                                  hint=f"sqlvec supports USING {', '.join(_METHODS)} for vectors "
                                       "and btree.")
    return method


def methods() -> tuple[type[VectorIndex], ...]:
    """Every registered method, in registration order."""
    return tuple(_METHODS.values())


def opclass(method: type[VectorIndex], name: str | None, input_type: str = "vector") -> OpClass:
    """The method's operator class of this name (for None, its default for columns of
    `input_type`); 42704 when unknown."""
    for candidate in method.opclasses:
        if (candidate.default and candidate.input_type == input_type if name is None
                else candidate.name == name):
            return candidate
    raise UndefinedObject(f'operator class "{name}" does not exist for access method '
                          f'"{method.access_method}"')


def metric_of(index: IndexDef) -> Metric:
    """The metric a vector index answers."""
    return opclass(get(index.method), index.opclass).metric


def params_of(index: IndexDef) -> Any:
    """What the index's per-segment structure's build and load take for this definition."""
    method = get(index.method)
    return structure(index).make_params(opclass(method, index.opclass).metric,
                                        all_options(method, index.options))


def structure(index: IndexDef) -> type[VectorIndex]:
    """The class of the per-segment structure an index definition builds: its method's own,
    except for indexes on bits (`bit_hamming_ops`, `bit_jaccard_ops`, on a bit column or a
    `binary_quantize(v)::bit(n)` expression), which build packed bits whatever the method
    (bit_index.py: hnswlib has no Hamming or Jaccard space, and an exact popcount scan of packed
    words is as fast as a graph at a segment's size, with recall 1)."""
    if on_bits(index):
        return PackedBitsIndex
    if on_sparse(index):
        return SparseInvertedIndex
    return get(index.method)


def on_sparse(index: IndexDef) -> bool:
    """An index on a sparsevec column (its operator class is one of sparsevec): inverted lists
    per segment (sparse_index.py: hnswlib has only dense spaces)."""
    return (index.opclass or "").startswith("sparsevec_")


def on_bits(index: IndexDef) -> bool:
    """An index on bit strings (its operator class is one of bits)."""
    return (index.opclass or "").startswith("bit_")


def vector_indexes(table: TableDef) -> tuple[IndexDef, ...]:
    """The table's indexes that registered vector methods build per segment (each through its
    `structure`)."""
    return tuple(ix for ix in table.indexes if ix.method in _METHODS)


def key_dims(table: TableDef, index: IndexDef) -> int:
    """The length of the index's keys: a vector's dimensions, or a bit string's bits."""
    col = table.column(index.columns[0])
    if col.type.name in ("bit", "varbit") and index.key_type is None:
        return max(col.type.typmod, 1)
    return int(col.type.dims or 0)


def index_rows(seg: SegmentData, table: TableDef,
               index: IndexDef) -> tuple[np.ndarray, np.ndarray | None]:
    """What the index's structure is built from for one segment, with the rows' validity: the
    vectors (or their cast, for an expression index), or the packed bits of a bit column or of
    `binary_quantize(col)::bit(n)`."""
    col = table.column(index.columns[0])
    physical = key_name(col.physical, index.key_type)
    if on_bits(index):
        return seg.bits(physical, key_dims(table, index))
    if on_sparse(index):
        return seg.sparse(physical)  # type: ignore[return-value]
    return seg.vectors(physical, col.type.dims)


def sparse_indexes(table: TableDef) -> tuple[IndexDef, ...]:
    """The table's vector-method indexes on sparsevec columns: definitions whose limits writes
    respect (`check_sparse_rows`)."""
    return tuple(ix for ix in table.indexes if ix.method in _METHODS and _on_sparse(table, ix))


def _on_sparse(table: TableDef, index: IndexDef) -> bool:
    try:
        return any(table.column(c).type.is_sparse for c in index.columns)
    except KeyError:
        return False


def check_sparse_rows(index: IndexDef, lengths: Iterable[int]) -> None:
    """pgvector's limit on the non-zero elements of the rows of an index on a sparsevec
    column (54000), for rows written or already there when the index is created."""
    if any(n > SPARSE_MAX_NNZ for n in lengths):
        raise SqlVecError(f"sparsevec cannot have more than {SPARSE_MAX_NNZ} non-zero elements "
                          f"for {index.method} index", sqlstate="54000")


def index_for(table: TableDef, column: str, metric: Metric,
              key_type: str | None = None) -> IndexDef | None:
    """The first vector index of the table on `column` (with `key_type`: on the expression
    casting it to that type) that answers `metric`."""
    for ix in vector_indexes(table):
        if ix.columns == (column,) and ix.key_type == key_type and metric_of(ix) is metric:
            return ix
    return None


def key_columns(table: TableDef, index: IndexDef) -> list[ColumnDef]:
    """The index's keys as columns of the types it indexes: the columns themselves, or for an
    expression index on a vector cast, the column typed as the cast's result."""
    columns = [table.column(c) for c in index.columns]
    if index.key_type is None:
        return columns
    col = columns[0]
    return [replace(col, type=SqlType(index.key_type, col.type.typmod))]


def file_name(segment_id: int, index: IndexDef) -> str:
    """The file of one index of one segment."""
    return f"seg-{segment_id:08d}.{index.oid}.{index.method}"


# Checking a definition --------------------------------------------------------------------------

def check_definition(method_name: str, columns: list[ColumnDef], opclass_name: str | None,
                     options: Iterable[tuple[str, object]]) -> tuple[str, dict[str, int]]:
    """Check `CREATE INDEX … USING <method> (<columns> [<opclass>]) WITH (<options>)` as
    PostgreSQL and pgvector do; return the operator class (the default filled in) and the
    given options parsed. Errors: 0A000 for an unsupported method, several columns or an
    unsupported operator class; 42704 / 42804 for operator classes and column types; 22023 for
    options."""
    method = get(method_name)
    name = method.access_method
    if len(columns) != 1:
        raise FeatureNotSupported(f"{name} indexes on several columns are not supported")
    col = columns[0]
    if opclass_name is None:
        defaults = [o for o in method.opclasses if o.default and o.input_type == col.type.name]
        chosen = defaults[0] if defaults else opclass(method, None)
        if col.type.name != chosen.input_type:
            raise SqlVecError(f"data type {col.type.info.display} has no default operator class for "
                              f'access method "{name}"', sqlstate="42704",
                              hint="You must specify an operator class for the index or define "
                                   "a default operator class for the data type.")
    else:
        chosen = opclass(method, opclass_name)
        if col.type.name != chosen.input_type:
            raise DatatypeMismatch(f'operator class "{chosen.name}" does not accept data type '
                                   f"{col.type.info.display}")
    if not chosen.supported:
        raise FeatureNotSupported(f"operator class {chosen.name} is not supported by {name} "
                                  "indexes here")
    if chosen.input_type != "bit" and col.type.dims is None:
        raise DataException(f'column "{col.name}" does not have dimensions')
    given = check_options(method, options)
    # Bits and sparse vectors build their own structures (the method's options are still
    # checked as the method's).
    built = {"bit": PackedBitsIndex, "sparsevec": SparseInvertedIndex}.get(chosen.input_type,
                                                                          method)
    try:
        built.make_params(chosen.metric, all_options(method, given))
    except (TypeError, ValueError) as exc:  # a method's own checks, if not already SQL errors
        raise InvalidParameterValue(str(exc)) from exc
    return chosen.name, given


register(HnswIndex)
register(IvfflatIndex)
