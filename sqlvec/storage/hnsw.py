"""HNSW, the first vector access method: one hnswlib graph per sealed segment.

`HnswIndex` implements the `VectorIndex` protocol (vector_index.py) for `CREATE INDEX … USING
hnsw (col vector_l2_ops|vector_cosine_ops|vector_ip_ops) WITH (m, ef_construction)` as pgvector
has it, searched with `hnsw.ef_search`; labels are row positions (0..n-1).

Metrics and hnswlib spaces: hnswlib's distances are converted into pgvector's values.

| SQL | opclass           | hnswlib space | hnswlib gives | convert |
|-----|-------------------|---------------|---------------|---------|
| <-> | vector_l2_ops     | l2            | squared L2    | sqrt    |
| <=> | vector_cosine_ops | cosine        | 1 - cosine    | none    |
| <#> | vector_ip_ops     | ip            | 1 - a . b     | d - 1   |
| <+> | vector_l1_ops     | (none: listed in the catalogs as pgvector has it, refused here) |

On-disk file
============
The file is hnswlib 0.8.0's own `save_index` output, unchanged, so hnswlib loads it directly.
All integers are little-endian; `size_t` is 8 bytes.

Header (96 bytes, fields written back to back, no padding):

| offset | type   | field                  | value here                                |
|--------|--------|------------------------|-------------------------------------------|
| 0      | size_t | offsetLevel0           | 0                                         |
| 8      | size_t | max_elements           | capacity (= indexed rows, at least 1)     |
| 16     | size_t | cur_element_count      | indexed rows                              |
| 24     | size_t | size_data_per_element  | links0 + d*4 + 8                          |
| 32     | size_t | label_offset           | links0 + d*4                              |
| 40     | size_t | offsetData             | links0 = (2*M + 1) * 4                    |
| 48     | int32  | maxlevel               | top level of the graph                    |
| 52     | uint32 | enterpoint_node        | internal id of the entry point            |
| 56     | size_t | maxM                   | M (links per node on upper levels)        |
| 64     | size_t | maxM0                  | 2*M (links per node on level 0)           |
| 72     | size_t | M                      | the index's `m`                           |
| 80     | double | mult                   | 1 / ln(M)                                 |
| 88     | size_t | ef_construction        | the index's `ef_construction`             |

Then level 0: cur_element_count records of size_data_per_element bytes each, in internal-id
order: uint32 link count, 2*M uint32 neighbour ids, the vector as d float32 (unit length under
cosine: hnswlib normalizes on insert), the label as uint64 (our row position). Then, for every
element in the same order, a uint32 byte count followed by that many bytes of upper-level links
(level × (M + 1) uint32: a count and M ids per level; 0 bytes for level-0-only nodes).

Checksum: `save` returns the CRC-32 (zlib.crc32) of the whole file; the caller keeps it in its
manifest and passes it back to `load`, which verifies it before hnswlib parses anything, because
hnswlib follows neighbour ids blindly and a damaged file can crash the process. Without a CRC only
the header and hnswlib's own size walk are checked. Any failure raises DataCorrupted: the index
holds nothing that is not in its segment, so it can always be rebuilt.
"""

from __future__ import annotations

import ctypes
import math
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import hnswlib
import numpy as np

from sqlvec.errors import DataCorrupted, FeatureNotSupported, InvalidParameterValue
from sqlvec.memory import collapse_to_huge_pages, release_zero_pages
from sqlvec.storage.calibration import (
    CALIBRATION_K,
    FILTER_SEED,
    FILTER_SELECTIVITIES,
    FilterTable,
    filter_queries,
    measure_filtered,
    worth_measuring,
)
from sqlvec.storage.vector_index import (
    IndexBuildCancelled,
    IndexOption,
    IndexSetting,
    OpClass,
    calibration_point,
    corrupted_index_file,
    overquery,
    recall_curve,
)
from sqlvec.vectors import Metric, check_same_dims

# pgvector's reloptions and setting for hnsw, with its defaults and bounds.
M_OPTION = IndexOption("m", 16, 2, 100)
EF_CONSTRUCTION_OPTION = IndexOption("ef_construction", 64, 4, 1000)
EF_SEARCH = IndexSetting("hnsw.ef_search", 40, 1, 1000,
                         "Sets the size of the dynamic candidate list for search")
# pgvector 0.8's iterative-scan settings. A filtered search here always widens until k rows
# survive (and finishes exactly if they do not), returning them in exact distance order, so
# every mode is strict; `max_scan_tuples` bounds the labels the widening asks for before the
# segment is finished exactly; the memory multiplier is accepted and shown (memory does not
# bound the scan here).
ITERATIVE_SCAN = IndexSetting("hnsw.iterative_scan", "off", description="Sets the mode for "
                              "iterative scans", vartype="enum",
                              enumvals=("off", "relaxed_order", "strict_order"))
MAX_SCAN_TUPLES = IndexSetting("hnsw.max_scan_tuples", 20_000, 1, 2**31 - 1,
                               "Sets the max number of tuples to visit for iterative scans")
SCAN_MEM_MULTIPLIER = IndexSetting("hnsw.scan_mem_multiplier", 1.0, 1.0, 1000.0,
                                   "Sets the multiple of work_mem to use for iterative scans",
                                   vartype="real")

# hnswlib's space per metric; pgvector's OIDs are fixed below the first user OID (objects.py).
SPACES = {Metric.L2: "l2", Metric.COSINE: "cosine", Metric.IP: "ip"}
OPCLASSES = (
    OpClass("vector_l2_ops", Metric.L2, 16388, 16392, default=True),
    OpClass("vector_cosine_ops", Metric.COSINE, 16389, 16393),
    OpClass("vector_ip_ops", Metric.IP, 16390, 16394),
    OpClass("vector_l1_ops", Metric.L1, 16391, 16395, supported=False),
    # halfvec columns: the graph is built from the halves widened to float (hnswlib stores
    # float32), and the winners are re-scored from the segment's float16 matrix with pgvector's
    # halfvec arithmetic. L1 has no hnswlib space: like vector_l1_ops it is listed, and
    # CREATE INDEX refuses it (0A000); `ORDER BY col <+> q` is then an exact scan.
    # As in pgvector, none of them is the default: `USING hnsw (col)` needs the opclass named.
    OpClass("halfvec_l2_ops", Metric.L2, 16360, 16364, input_type="halfvec"),
    OpClass("halfvec_cosine_ops", Metric.COSINE, 16361, 16365, input_type="halfvec"),
    OpClass("halfvec_ip_ops", Metric.IP, 16362, 16366, input_type="halfvec"),
    OpClass("halfvec_l1_ops", Metric.L1, 16363, 16367, supported=False, input_type="halfvec"),
    # sparsevec columns: accepted with pgvector's limits (no default, at most
    # SPARSE_MAX_NNZ non-zero elements per row), but no graph is built: hnswlib has only
    # dense spaces, and densifying is impossible in general (up to 10^9 dimensions) and wasteful
    # when rows hold a few dozen non-zeros out of thousands. Each segment gets inverted lists
    # instead (sparse_index.py, chosen by access_methods.structure), scored exactly.
    OpClass("sparsevec_l2_ops", Metric.L2, 16343, 16347, input_type="sparsevec"),
    OpClass("sparsevec_ip_ops", Metric.IP, 16344, 16348, input_type="sparsevec"),
    OpClass("sparsevec_cosine_ops", Metric.COSINE, 16345, 16349, input_type="sparsevec"),
    OpClass("sparsevec_l1_ops", Metric.L1, 16346, 16350, input_type="sparsevec"),
    # bit columns and `binary_quantize(v)::bit(n)` expressions: no graph either (hnswlib has no
    # Hamming or Jaccard space); each segment keeps its keys as packed bits, scanned exactly by
    # popcount (bit_index.py, chosen by access_methods.structure).
    OpClass("bit_hamming_ops", Metric.HAMMING, 16370, 16372, input_type="bit"),
    OpClass("bit_jaccard_ops", Metric.JACCARD, 16371, 16373, input_type="bit"),
)
# pgvector's limit on the non-zero elements of a sparsevec in an hnsw index.
SPARSE_MAX_NNZ = 1000
# The ladder of ef values a calibration measures recall at (up to hnsw.ef_search's maximum):
# close together where the usual targets fall (0.9-0.99 on real embeddings, ef 20-128), where a
# point costs little, so that the chord a target picks its ef on (search.choose_ef) hugs the
# curve; sparse above, where each point is dear and hard data alone goes.
CALIBRATION_EFS = (10, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 100, 128, 160, 256, 400, 640,
                   1000)
# Rows a build holds out of the graph to calibrate with (at most; see held_out_count), and the
# fewest worth measuring: below that (segments under 200 rows) the generic curve of
# vector_index is used. A query's recall is all or nothing often enough (a cluster missed) that
# the standard error, and the lower bound's distance below the mean, shrinks only with more
# queries: 1000 (with the exact neighbours from `_smallest_columns`) cost about what 500 did.
CALIBRATION_QUERIES = 1000
CALIBRATION_MIN_QUERIES = 20
# A search's cost grows with ef, so a point of the ladder measures at most this many ef-units
# of work (ef × queries, never under 100 queries): the large efs hard data needs stay cheap, at
# the price of a wider (lower) confidence bound there.
CALIBRATION_BUDGET = 100_000

# Rows added per add_items call: the unit of progress reporting and of cancellation latency.
BUILD_CHUNK_ROWS = 10_000

_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_LABEL_BYTES = 8
_CRC_CHUNK = 1 << 20

# hnswlib 0.8.0's objects (`_graph_words`): words read of the bindings' `Index` (up to its
# `appr_alg` pointer) and of `HierarchicalNSW`, and where in the latter its vectors of locks
# (begin, end, end of capacity) and its records' pointer lie. A std::mutex is 40 bytes with
# glibc on 64-bit Linux, zero when unlocked: one per element, and 65536 taken by label.
_INDEX_WORDS = 10
_GRAPH_WORDS = 40
_LABEL_LOCKS_WORD = 15
_ELEMENT_LOCKS_WORD = 23
_DATA_WORD = 31
_MUTEX_BYTES = 40
_LABEL_LOCKS = 65536
_DELETE_MARK = 0x01  # in the third byte of an element's level-0 link count


@dataclass(frozen=True)
class HnswParams:
    """What `CREATE INDEX … USING hnsw (col <opclass>) WITH (m, ef_construction)` fixes."""

    metric: Metric
    m: int = M_OPTION.default
    ef_construction: int = EF_CONSTRUCTION_OPTION.default

    def __post_init__(self) -> None:
        if not isinstance(self.metric, Metric):
            raise TypeError(f"metric must be a Metric, not {type(self.metric).__name__}")
        if self.metric not in SPACES:
            raise FeatureNotSupported(
                f"hnsw indexes do not support {self.metric.name} distance ({self.metric.operator})",
                hint="Use vector_l2_ops, vector_cosine_ops or vector_ip_ops.",
            )
        for option, value in ((M_OPTION, self.m), (EF_CONSTRUCTION_OPTION, self.ef_construction)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidParameterValue(
                    f'invalid value for integer option "{option.name}": {value}')
            option.parse(value)
        if self.ef_construction < 2 * self.m:
            raise InvalidParameterValue("ef_construction must be greater than or equal to 2 * m")


class HnswIndex:
    """An immutable (after build) HNSW graph, safe to search from many threads at once: the
    `hnsw` access method (a `VectorIndex`)."""

    access_method = "hnsw"
    am_oid = 16387
    opclasses = OPCLASSES
    options = (M_OPTION, EF_CONSTRUCTION_OPTION)
    settings = (EF_SEARCH, ITERATIVE_SCAN, MAX_SCAN_TUPLES, SCAN_MEM_MULTIPLIER)  # knob first

    def __init__(
        self, index: hnswlib.Index, params: HnswParams, dim: int, label_bound: int
    ) -> None:
        self._index = index
        self._params = params
        self._dim = dim
        self._count = int(index.element_count)
        # Whether `search(..., squared=True)`'s distances are float32 sums of the squared
        # float32 differences of the query and the segment's own rows (hnswlib's l2 space
        # keeps the rows as given), which bounds their error (storage/search.py
        # `_order_settled`). An attribute, not a property: read twice per search.
        self.float32_l2 = params.metric is Metric.L2
        self._label_bound = label_bound  # 1 + the largest label: `allowed` must cover it
        # hnswlib keeps ef in the index object (set_ef), not per query, so a set_ef must not
        # happen while another thread's knn_query relies on the ef it set. Searches at the ef
        # set run side by side (hnswlib's searches only read the graph); one at another ef
        # waits until those running end, and those arriving after it wait for it (`_enter`).
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)  # (`_lock` taken alone when not waiting)
        self._ef = 0  # the ef set on the index, 0: none yet
        self._searching = 0  # knn_query calls running at `_ef`
        self._changing = 0  # searches waiting to set another ef
        # (ef, recall@10) measured during the build on held-out rows; see storage/search.py.
        self.calibration: list[tuple[int, float]] = []
        # (selectivity, multiple of the over-query used as ef, recall@10) of filtered searches,
        # measured with the curve (storage/calibration.py); [] = unknown.
        self.filter_calibration: FilterTable = []
        self.calibration_seconds = 0.0  # of the build's calibration (benchmarks report it)
        # A graph loaded without hnswlib's label map (`load`): its records, read in place
        # (internal id × bytes per element), and each label's internal id (-1: none).
        self._records: np.ndarray | None = None
        self._internal: np.ndarray | None = None

    # Build ----------------------------------------------------------------------------------

    @classmethod
    def make_params(cls, metric: Metric, options: Mapping[str, int]) -> HnswParams:
        """The parameters of an index with these options (pgvector's defaults for the rest)."""
        return HnswParams(metric, m=int(options.get("m", M_OPTION.default)),
                          ef_construction=int(options.get("ef_construction",
                                                          EF_CONSTRUCTION_OPTION.default)))

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        params: HnswParams,
        *,
        valid: np.ndarray | None = None,
        num_threads: int = 0,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        calibrate: bool = True,
    ) -> HnswIndex:
        """Index the rows of `vectors` (n, d) whose `valid` flag is set (all when None).

        Under cosine, zero vectors are skipped as pgvector does: they have no direction and their
        distance is NaN. Rows go in chunks so a long build reports progress and can be cancelled
        (IndexBuildCancelled) between chunks. num_threads 0 means all cores.

        With `calibrate`, a random sample of the rows (CALIBRATION_QUERIES at most) goes into the
        graph last: before it does, those rows serve as queries the graph has never seen — the
        user's own data, held out — and recall@10 at each ef of the ladder is recorded in
        `calibration` (a lower confidence bound, see `calibration_point`), and the recall of
        filtered searches under random filters in `filter_calibration` (calibration.py).
        """
        data = np.asarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] < 1:
            raise ValueError(f"vectors must be a non-empty (n, d) matrix, got shape {data.shape}")
        n, dim = data.shape
        if valid is None:
            mask = np.ones(n, dtype=np.bool_)
        else:
            mask = np.asarray(valid, dtype=np.bool_)
            if mask.shape != (n,):
                raise ValueError(f"valid must have shape ({n},), got {mask.shape}")
        if params.metric is Metric.COSINE:
            # float64 like pgvector's norm, so tiny-but-nonzero vectors are still indexed.
            mask = mask & (np.einsum("ij,ij->i", data, data, dtype=np.float64) > 0.0)
        positions = np.flatnonzero(mask)
        total = int(positions.size)
        held = _held_out(positions) if calibrate else positions[:0]
        main = positions if held.size == 0 else np.setdiff1d(positions, held, assume_unique=True)

        index = hnswlib.Index(space=SPACES[params.metric], dim=dim)
        index.init_index(
            max_elements=max(total, 1),
            M=params.m,
            ef_construction=params.ef_construction,
            random_seed=100,
        )
        threads = -1 if num_threads <= 0 else num_threads

        def add(ids: np.ndarray, done: int) -> None:
            for start in range(0, ids.size, BUILD_CHUNK_ROWS):
                if should_stop is not None and should_stop():
                    raise IndexBuildCancelled("HNSW index build cancelled")
                chunk = ids[start : start + BUILD_CHUNK_ROWS]
                first = int(chunk[0])
                rows = (data[first : first + chunk.size] if int(chunk[-1]) - first + 1 == chunk.size
                        else data[chunk])  # a contiguous run is a slice, no gathering copy
                index.add_items(np.ascontiguousarray(rows), chunk, num_threads=threads)
                if progress is not None:
                    progress(done + start + int(chunk.size), total)

        add(main, 0)
        curve: list[tuple[int, float]] = []
        table: FilterTable = []
        started = time.perf_counter()
        if held.size:
            curve, table = _held_out_curve(index, params.metric, data, main, held, threads)
            add(held, int(main.size))
        seconds = time.perf_counter() - started
        if total == 0 and progress is not None:
            progress(0, 0)
        label_bound = int(positions[-1]) + 1 if total else 0
        settle_graph_memory(index, dim, params.m)
        built = cls(index, params, dim, label_bound)
        built.calibration = curve
        built.filter_calibration = table
        built.calibration_seconds = seconds if held.size else 0.0
        return built

    # Persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index atomically (temp file, fsync, rename, fsync dir); return its CRC-32."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self._index.save_index(str(tmp))
            with open(tmp, "rb") as f:
                crc = _crc_of(f)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return crc

    def reload_saved(self, path: str | os.PathLike[str], crc: int) -> None:
        """Swap the graph just built for the file `save` wrote to `path`, loaded as `load`
        loads it (without hnswlib's label map: about 40 bytes a row less until the next
        restart). The built graph is freed first, so the two are never in memory together:
        only for an index no other thread can reach yet."""
        self._index, self._ef = None, 0  # (the loaded graph's ef is hnswlib's default)
        loaded = HnswIndex.load(path, self._params, self._dim, expected_crc=crc)
        self._index, self._records, self._internal = (loaded._index, loaded._records,
                                                      loaded._internal)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        params: HnswParams,
        dim: int,
        *,
        expected_crc: int | None = None,
    ) -> HnswIndex:
        """Load a file written by `save`, checking its CRC first when the manifest has one."""
        path = Path(path)
        try:
            if expected_crc is not None:
                with open(path, "rb") as f:
                    crc = _crc_of(f)
                if crc != expected_crc:
                    raise _corrupt(
                        path,
                        f"checksum {crc:#010x} does not match the expected {expected_crc:#010x}",
                    )
            with open(path, "rb") as f:
                header = f.read(_HEADER.size)
                size = os.fstat(f.fileno()).st_size
            count = _check_header(path, header, size, params, dim)
            lean = _load_without_label_map(path, header, params, dim) if count else None
            if lean is None:
                index = hnswlib.Index(space=SPACES[params.metric], dim=dim)
                # Capacity = stored rows: a damaged max_elements field cannot make hnswlib
                # allocate.
                index.load_index(str(path), max_elements=max(count, 1))
                labels = index.get_ids_list()
                label_bound = max(labels) + 1 if labels else 0
                settle_graph_memory(index, dim, params.m)
        except OSError as e:
            raise _corrupt(path, f"could not read it: {e.strerror or e}") from e
        except (RuntimeError, MemoryError, ValueError) as e:
            raise _corrupt(path, str(e) or type(e).__name__) from e
        if lean is None:
            return cls(index, params, dim, label_bound)
        index, records, internal = lean
        loaded = cls(index, params, dim, internal.size)
        loaded._records, loaded._internal = records, internal
        return loaded

    # Search ---------------------------------------------------------------------------------

    def stored_rows(self, positions: np.ndarray) -> np.ndarray | None:
        """The indexed rows at these positions as the graph holds them: for l2 and ip, the
        float32 rows it was built from, unchanged, so the few winners of a search are rescored
        without touching the segment's mapped vectors (their pages would count in the
        process's memory); None under cosine, whose graph holds the rows normalised."""
        if self._params.metric is Metric.COSINE:
            return None
        if self._records is not None:
            internal = self._internal[np.asarray(positions, dtype=np.int64)]
            if (internal < 0).any():
                raise KeyError("a position that is not in the graph")
            start = (2 * self._params.m + 1) * 4
            return self._records[internal, start : start + 4 * self._dim].view(np.float32)
        rows = self._index.get_items(positions, return_type="numpy")
        return rows.reshape(len(positions), self._dim)  # (0, dim) for no winner, not (0,)

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        ef: int,
        allowed: np.ndarray | None = None,
        squared: bool = False,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Approximate k nearest indexed rows: (positions int64, pgvector distances float64;
        with `squared`, for l2, hnswlib's own float32 squared distances instead, which is all
        a caller settling the order reads: `float32_l2`).

        Nearest first, at most min(k, indexed_count, allowed rows) of them. `allowed` (a bool
        mask over row positions) is how deletes and scalar filters reach the graph; it goes in as
        a per-query filter callable, never as mark_deleted, because readers with different masks
        share the index. Returns None when the graph cannot produce that many: hnswlib gives up
        with RuntimeError when the filter leaves it short of k labels (very selective masks,
        allowed rows that were never indexed), and under cosine for a zero query, whose distance
        to every row is NaN. The caller then answers with an exact scan, which is always right.
        ef is raised to at least k.
        """
        q = np.ascontiguousarray(query, dtype=np.float32)
        if q.ndim != 1:
            raise ValueError(f"query must be a 1-D vector, got shape {q.shape}")
        if q.shape[0] != self._dim:
            check_same_dims(self._dim, q.shape[0])
        limit = min(int(k), self._count)
        filter_fn = None
        if allowed is not None:
            mask = np.ascontiguousarray(allowed, dtype=np.bool_)
            if mask.ndim != 1 or mask.shape[0] < self._label_bound:
                raise ValueError(
                    f"allowed must be a 1-D mask of at least {self._label_bound} rows, "
                    f"got shape {mask.shape}"
                )
            limit = min(limit, int(np.count_nonzero(mask)))
            # memoryview indexing is the cheapest Python callable hnswlib can call per node.
            filter_fn = memoryview(mask).__getitem__
        if limit <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        if self._params.metric is Metric.COSINE and not q.any():
            return None
        self._enter(max(int(ef), limit))
        try:
            # (data, k, num_threads, filter) by position: pybind11 matches keywords by name
            # at every call.
            labels, raw = self._index.knn_query(q, limit, 1, filter_fn)
        except RuntimeError:
            # "Cannot return the results in a contiguous 2D array": fewer than k found.
            return None
        finally:
            self._leave()
        # (labels are row positions, far below 2**63: read as int64 in place, not copied)
        metric = self._params.metric
        return labels[0].view(np.int64), raw[0] if squared and metric is Metric.L2 \
            else pgvector_distances(metric, raw[0])

    def _enter(self, ef: int) -> None:
        """Start a search at `ef`: at once when it is the ef set and no search waits to set
        another (two connections of a worker at the same ef_search do not queue for the
        graph), else once every search running has ended, setting it."""
        with self._lock:
            if ef != self._ef or self._changing:
                self._changing += 1
                try:
                    while self._searching:
                        self._gate.wait()
                finally:
                    self._changing -= 1
                if ef != self._ef:
                    self._index.set_ef(ef)
                    self._ef = ef
            self._searching += 1

    def _leave(self) -> None:
        """A search started by `_enter` ended: the last one lets waiting searches go."""
        with self._lock:
            self._searching -= 1
            if not self._searching and self._changing:
                self._gate.notify_all()

    def search_filtered(self, query: np.ndarray, k: int, *, knob: int, allowed: np.ndarray,
                        settings: Mapping[str, str] | None, squared: bool = False
                        ) -> tuple[np.ndarray, int] | tuple[np.ndarray, int, np.ndarray] | None:
        """A filtered search (`FilteringIndex`): the graph over-queried for k / selectivity × 2
        labels and widened (× 4) until k allowed rows survive, asking for at most
        `hnsw.max_scan_tuples` labels; None when that is not enough. With `squared` (l2), the
        winners' float32 squared distances come third, as `search(..., squared=True)` gives
        them: they may settle the order without a re-score (search.py `_order_settled`)."""
        selectivity = np.count_nonzero(allowed) / max(allowed.shape[0], 1)
        found = overquery(self, query, k, knob, allowed, selectivity,
                          max_labels=MAX_SCAN_TUPLES.read(settings),
                          squared=squared and self.float32_l2)
        return found if found is None or squared else found[:2]

    def calibrate(self, vectors: np.ndarray, valid: np.ndarray | None) -> list[tuple[int, float]]:
        """Recall@10 at the ladder of ef values: what `build` measured on held-out rows, or,
        for a segment too small to hold rows out of (or built without calibrating), the
        generic curve on perturbed rows (vector_index.recall_curve)."""
        if self.calibration:
            return self.calibration
        return recall_curve(self, self._params.metric, vectors, valid, CALIBRATION_EFS)

    @classmethod
    def search_knob(cls, settings: Mapping[str, str] | None) -> int:
        """ef for a search: the session's `hnsw.ef_search`."""
        return EF_SEARCH.read(settings)

    def explain(self, knob: int, estimated_recall: float | None) -> str:
        """EXPLAIN's text for this index's part of a segment's line: the ef used and, when
        calibrated, the estimated recall."""
        text = f"ef={knob}"
        if estimated_recall is not None:
            text += f" est_recall={estimated_recall:.3f}"
        return text

    # Introspection --------------------------------------------------------------------------

    @property
    def params(self) -> HnswParams:
        return self._params

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def indexed_count(self) -> int:
        """Rows in the graph: valid rows, minus zero vectors under cosine."""
        return self._count

    @property
    def memory_bytes(self) -> int:
        """Estimated resident size: capacity × average bytes per element.

        Per element hnswlib holds d*4 (vector) + 8 (label) + (2*M + 1)*4 (level-0 links) in one
        block, an 8-byte pointer to its upper-level links, and those links: a node reaches level
        l with probability M^-l, so on average (M + 1)*4 / (M - 1) bytes of upper levels.
        """
        m = self._params.m
        per_element = self._dim * 4 + _LABEL_BYTES + (2 * m + 1) * 4 + 8 + (m + 1) * 4 / (m - 1)
        return int(math.ceil(int(self._index.max_elements) * per_element))

    def __repr__(self) -> str:
        p = self._params
        return (
            f"HnswIndex({p.metric.name}, dim={self._dim}, m={p.m}, "
            f"ef_construction={p.ef_construction}, indexed={self._count})"
        )


def held_out_count(total: int) -> int:
    """How many of `total` rows a calibrating build holds out: at most CALIBRATION_QUERIES and
    a fiftieth of them (the curve is measured on a graph that lacks them, and a smaller graph
    is an easier one), but at least 100 (a tenth of small segments, whose graphs are easy),
    none when that is too few to measure with."""
    count = min(CALIBRATION_QUERIES, max(total // 50, min(total // 10, 100)))
    return count if count >= CALIBRATION_MIN_QUERIES else 0


def _held_out(positions: np.ndarray) -> np.ndarray:
    """The rows a build inserts last and calibrates with: a fixed-seed random sample, sorted."""
    count = held_out_count(int(positions.size))
    if count == 0:
        return positions[:0]
    rng = np.random.default_rng(7)
    return np.sort(rng.choice(positions, size=count, replace=False))


def _held_out_curve(index: hnswlib.Index, metric: Metric, data: np.ndarray, main: np.ndarray,
                    held: np.ndarray, threads: int) -> tuple[list[tuple[int, float]], FilterTable]:
    """Recall@10 of the graph (holding the `main` rows) for the `held` rows as queries: at each
    ef of the ladder, stopping once mean recall reaches 0.999; and under random filters
    (`measure_filtered`), searched as a filtered search is."""
    k = CALIBRATION_K
    allowed = np.zeros(data.shape[0], dtype=np.bool_)
    allowed[main] = True
    # Random order, so every prefix (what the large efs measure) is a random sample too.
    held = np.random.default_rng(11).permutation(held)
    queries = np.ascontiguousarray(data[held])
    rng = np.random.default_rng(FILTER_SEED)
    masks = {s: allowed & (rng.random(data.shape[0]) < s) for s in FILTER_SELECTIVITIES
             if worth_measuring(int(main.size), s, 1, k)}
    truth, *truths = _nearest(metric, data, [(allowed, len(held))] + [
        (mask, filter_queries(len(held), s, k)) for s, mask in masks.items()], queries, k)
    sizes = np.maximum((truth >= 0).sum(axis=1), 1)
    curve: list[tuple[int, float]] = []
    previous = 0.0
    for ef in CALIBRATION_EFS:
        count = min(len(held), max(100, CALIBRATION_BUDGET // ef))
        index.set_ef(max(ef, k))
        labels, _ = index.knn_query(queries[:count], k=k, num_threads=threads)
        hits = (labels.astype(np.int64)[:, :, None] == truth[:count, None, :]).any(axis=2)
        recalls = hits.sum(axis=1) / sizes[:count]
        # A larger ef finds at least what a smaller one does, so a bound measured at a smaller
        # ef holds here too (the large efs, measured on fewer queries, have wider bounds).
        bound = max(calibration_point(recalls), curve[-1][1] if curve else 0.0)
        curve.append((int(ef), bound))
        mean = float(recalls.mean())
        # Done at (nearly) full recall, or on a plateau above 0.995 where more ef buys nothing
        # measurable (the largest efs are the calibration's most expensive points).
        if mean >= 0.999 or (mean >= 0.995 and mean - previous < 0.001):
            break
        previous = mean

    def search(batch: np.ndarray, labels: int, ef: int) -> np.ndarray:
        index.set_ef(ef)
        try:
            return index.knn_query(batch, k=labels, num_threads=threads)[0]
        except RuntimeError:  # fewer labels than asked: counted as nothing found
            return np.full((len(batch), labels), -1, dtype=np.int64)

    table = measure_filtered(search, queries, dict(zip(masks, truths)), masks,
                             int(main.size), k, calibration_point, CALIBRATION_EFS[-1])
    return curve, table


def _nearest(metric: Metric, data: np.ndarray, masks: list[tuple[np.ndarray, int]],
             queries: np.ndarray, k: int) -> list[np.ndarray]:
    """For each (allowed, count) of `masks`, the k allowed rows nearest each of the first
    `count` queries (as a set: unordered; -1 where fewer are allowed), by one matrix product
    per block of queries for all of them. Unlike vectors.top_k_batch it neither copies the
    allowed rows nor re-scores near ties: a calibration needs which rows are nearest, and rows
    within float32 rounding of the k-th distance are rare enough not to move a recall figure."""
    if metric is Metric.L2:
        offset = np.einsum("ij,ij->i", data, data)
    elif metric is Metric.COSINE:
        norms = np.sqrt(np.einsum("ij,ij->i", data, data))
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)  # zero rows
    else:
        offset = None
    block = max(1, min(len(queries), (64 << 20) // max(1, 4 * data.shape[0])))  # ≤ 64 MiB
    out = [np.full((min(count, len(queries)), k), -1, dtype=np.int64) for _, count in masks]
    densities = [np.count_nonzero(allowed) / max(1, data.shape[0]) for allowed, _ in masks]
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ data.T  # (b, n), turned into scores in place
        if metric is Metric.L2:
            scores *= -2.0
            scores += offset
        elif metric is Metric.COSINE:
            scores *= -scale
        else:
            np.negative(scores, out=scores)
        counts = [max(0, min(count - start, scores.shape[0])) for _, count in masks]
        nearest = _nearest_allowed([a for a, _ in masks], densities, counts, scores, k)
        for found, rows, best in zip(out, counts, nearest):
            found[start : start + rows] = best
    return out


def _nearest_allowed(alloweds: list[np.ndarray], densities: list[float], counts: list[int],
                     scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Per allowed mask, the k best allowed columns of the first `counts` rows of `scores`:
    the rows go in runs that the same masks need (the unfiltered curve measures more queries
    than the sparse filters), each run searched for all of its masks at once
    (`_nearest_in_rows`), so a sparse mask's deep search is not paid by the rows only the
    unfiltered truth needs."""
    found = [np.full((count, k), -1, dtype=np.int64) for count in counts]
    edges = sorted({0, *counts})
    for low, high in zip(edges, edges[1:]):
        needing = [i for i, count in enumerate(counts) if count >= high]
        best = _nearest_in_rows([alloweds[i] for i in needing], [densities[i] for i in needing],
                                scores[low:high], k)
        for i, rows in zip(needing, best):
            found[i][low:high] = rows
    return found


def _nearest_in_rows(alloweds: list[np.ndarray], densities: list[float], scores: np.ndarray,
                     k: int) -> list[np.ndarray]:
    """Per allowed mask, the k best allowed columns of every row of `scores`: from one partial
    sort per row, deep enough that the sparsest mask almost surely has k allowed columns in it
    (its expected share three times k), shared by every mask; the rows where it has not are
    searched again over the whole row (`_best_allowed`)."""
    deep = [d for d in densities if d > 0]
    width = scores.shape[1]
    depth = min(width, int(3 * k / min(deep)) + k) if deep else 0
    if depth == 0 or depth >= width:
        return [_best_allowed(scores, a, k) for a in alloweds]
    part = _smallest_columns(scores, depth)
    order = np.argsort(np.take_along_axis(scores, part, axis=1), axis=1)
    ranked = np.take_along_axis(part, order, axis=1)  # nearest first
    return [_first_allowed(ranked, scores, a, k) for a in alloweds]


def _smallest_columns(scores: np.ndarray, depth: int) -> np.ndarray:
    """The columns of the `depth` lowest scores of each row, unordered.

    An argpartition of a whole row costs most of a calibration's exact truth; instead the row
    is cut into runs of columns and only the `depth` runs with the lowest minima are
    partitioned (with the columns after the last whole run): the depth lowest scores lie there,
    as at least `depth` scores (those minima) are no higher than the depth-th lowest minimum."""
    rows, width = scores.shape
    run = min(64, width // (16 * depth))
    if run < 8:  # (short runs cost more to gather than the argpartition they save)
        return np.argpartition(scores, depth - 1, axis=1)[:, :depth]
    runs = width // run
    minima = scores[:, : runs * run].reshape(rows, runs, run).min(axis=2)
    lowest = np.argpartition(minima, depth - 1, axis=1)[:, :depth]
    columns = (lowest[:, :, None] * run + np.arange(run)).reshape(rows, depth * run)
    tail = np.arange(runs * run, width)
    columns = np.concatenate([columns, np.broadcast_to(tail, (rows, tail.size))], axis=1)
    picked = np.argpartition(np.take_along_axis(scores, columns, axis=1), depth - 1, axis=1)
    return np.take_along_axis(columns, picked[:, :depth], axis=1)


def _first_allowed(ranked: np.ndarray, scores: np.ndarray, allowed: np.ndarray,
                   k: int) -> np.ndarray:
    """The first k allowed columns of each row of `ranked` (columns nearest first), -1 padded;
    rows with fewer than k allowed there (while the mask allows more) from the whole row."""
    passing = allowed[ranked]
    first = np.argsort(~passing, axis=1, kind="stable")[:, :k]
    found = np.where(np.take_along_axis(passing, first, axis=1),
                     np.take_along_axis(ranked, first, axis=1), -1)
    short = np.flatnonzero(passing.sum(axis=1) < min(k, int(np.count_nonzero(allowed))))
    if short.size:
        found[short] = _best_allowed(scores[short], allowed, k)
    return found


def _best_allowed(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """The positions of the k lowest scores among allowed columns, per row (-1 padded)."""
    columns = np.flatnonzero(allowed)
    if columns.size == 0:
        return np.full((scores.shape[0], k), -1, dtype=np.int64)
    picked = scores[:, columns] if columns.size < scores.shape[1] else scores
    if picked.shape[1] <= k:
        best = np.broadcast_to(np.arange(picked.shape[1]), (picked.shape[0], picked.shape[1]))
        found = columns[best]
        return np.pad(found, ((0, 0), (0, k - found.shape[1])), constant_values=-1)
    return columns[np.argpartition(picked, k - 1, axis=1)[:, :k]]


def pgvector_distances(metric: Metric, raw: np.ndarray) -> np.ndarray:
    """hnswlib's distances as pgvector's values (float64): sqrt for l2, d - 1 for ip."""
    if metric is Metric.L2:  # (the float32 maximum is exact: the same as in float64)
        wide = raw.astype(np.float64)  # in place from here: a quarter less than two new arrays
        np.maximum(wide, 0.0, out=wide)
        return np.sqrt(wide, out=wide)
    raw = np.asarray(raw, dtype=np.float64)
    if metric is Metric.IP:
        return raw - 1.0
    return raw


def _load_without_label_map(
    path: Path, header: bytes, params: HnswParams, dim: int
) -> tuple[hnswlib.Index, np.ndarray, np.ndarray] | None:
    """The graph of a `save`d file through hnswlib's own pickled state (`__setstate__`)
    rather than `load_index`, handing it no label map: (index, its records in place, each
    label's internal id); None when hnswlib's objects are not laid out as expected (the caller
    then uses `load_index`). Raises ValueError for a file whose parts do not add up.

    `load_index` builds a hash map from label to internal id (about 40 bytes per element, 38.6
    MiB at 1M rows), interleaving its nodes with the upper levels' link lists in the heap;
    here it holds one entry. A search never uses it (labels are read from the records): only
    `get_items` and updates do, and `stored_rows` reads the records itself, through a 4-byte
    array per label. The locks hnswlib allocates are given back and its records moved onto huge
    pages (`settle_graph_memory`)."""
    (_, _, count, per_element, label_offset, data_offset, max_level, entry, max_m, max_m0, m,
     mult, ef_construction) = _HEADER.unpack(header)
    # Mapped, not read: hnswlib copies level 0 straight from the page cache; the mapping
    # goes when this returns.
    file = np.memmap(path, dtype=np.uint8, mode="r")
    level0 = file[_HEADER.size : _HEADER.size + count * per_element]
    tail = file[_HEADER.size + count * per_element :]
    if tail.size % 4:
        raise ValueError("its upper levels are not whole 4-byte words")
    per_level = (max_m + 1) * 4
    levels, links = _upper_levels(tail.view(np.uint32), count, per_level)
    records = level0.reshape(count, per_element)
    labels = np.ascontiguousarray(records[:, label_offset : label_offset + _LABEL_BYTES])
    labels = labels.view(np.uint64).ravel()
    state = {
        "ser_version": 1, "space": SPACES[params.metric], "dim": dim,
        "index_inited": True, "ep_added": True,
        "normalize": params.metric is Metric.COSINE, "num_threads": os.cpu_count() or 1,
        "seed": 100, "offset_level0": 0, "max_elements": count,
        "cur_element_count": count, "size_data_per_element": per_element,
        "label_offset": label_offset, "offset_data": data_offset, "max_level": max_level,
        "enterpoint_node": entry, "max_M": max_m, "max_M0": max_m0, "M": m, "mult": mult,
        "ef_construction": ef_construction, "ef": 10,
        "has_deletions": bool((records[:, 2] & _DELETE_MARK).any()),
        "size_links_per_element": per_level, "allow_replace_deleted": False,
        # hnswlib inserts one (label, internal id) pair per element: the same one, so its
        # map holds a single entry (the first element's, true).
        "label_lookup_external": np.full(count, labels[0], np.uint64),
        "label_lookup_internal": np.zeros(count, np.uint32),
        "element_levels": levels, "data_level0": level0.view(np.int8),
        "link_lists": links.view(np.int8),
    }
    index = hnswlib.Index.__new__(hnswlib.Index)
    index.__setstate__((state,))
    first = bytes(records[0])
    graph = _graph_words(index, dim, params.m)
    if graph is None or graph[_DATA_WORD] == 0:
        return None
    in_place = np.frombuffer((ctypes.c_uint8 * (count * per_element)).from_address(
        graph[_DATA_WORD]), dtype=np.uint8).reshape(count, per_element)
    if bytes(in_place[0]) != first:
        return None
    settle_graph_memory(index, dim, params.m)
    return index, in_place, _internal_ids(labels.astype(np.int64), int(labels.max()) + 1)


def _upper_levels(words: np.ndarray, count: int, per_level: int) -> tuple[np.ndarray, np.ndarray]:
    """Each element's level and all upper-level link lists back to back, from the part of a
    `save`d file after level 0 (as 4-byte words): per element, in internal-id order, a byte
    count and that many bytes. Most elements have none (a zero word), so the walk jumps from
    one non-zero count to the next: the zero words between are elements of level 0."""
    levels = np.zeros(count, dtype=np.int32)
    pieces = []
    nonzero = np.flatnonzero(words)
    word = element = 0
    while (k := int(np.searchsorted(nonzero, word))) < nonzero.size:
        found = int(nonzero[k])
        element += found - word
        size = int(words[found])
        if element >= count or size % per_level:
            raise ValueError("its upper levels do not match its element count")
        levels[element] = size // per_level
        word = found + 1 + size // 4
        pieces.append(words[found + 1 : word])
        element += 1
    if word > words.size or element + words.size - word != count:
        raise ValueError("its upper levels do not match its element count")
    links = np.concatenate(pieces) if pieces else np.empty(0, np.uint32)
    return levels, links


def _internal_ids(labels: np.ndarray, bound: int) -> np.ndarray:
    """Each label's internal id (-1 for labels not in the graph), 4 bytes per label."""
    internal = np.full(bound, -1, dtype=np.int32)
    internal[labels] = np.arange(labels.size, dtype=np.int32)
    return internal


def release_idle_locks(index: hnswlib.Index, dim: int, m: int) -> int:
    """Give back the pages of hnswlib's lock arrays, which a finished graph never takes;
    return the bytes given back (0 when the objects are not laid out as expected).

    hnswlib allocates a mutex per element (40 MB at 1M rows) and 65536 more taken by label,
    and constructing them writes zeros over every page. A search takes none of them (only
    inserts and updates do; `get_items` takes the label ones, so a few of those pages come
    back, zero again once unlocked). Call it only while no other thread can reach `index`:
    between the zero check and the advice a lock taken would be lost."""
    graph = _graph_words(index, dim, m)
    if graph is None:
        return 0
    released = 0
    for word, locks in ((_LABEL_LOCKS_WORD, _LABEL_LOCKS),
                        (_ELEMENT_LOCKS_WORD, int(index.max_elements))):
        begin, end, limit = graph[word : word + 3]
        if begin and end - begin == locks * _MUTEX_BYTES and limit == end:
            released += release_zero_pages(begin, end - begin)
    return released


def settle_graph_memory(index: hnswlib.Index, dim: int, m: int) -> None:
    """A graph just built or loaded, before anything else reaches it: its idle locks given
    back (`release_idle_locks`) and its level-0 records (each element's links and vector,
    what a search reads) moved onto huge pages. A search at ef_search 40 of 100,000 × 128
    reads a few hundred records spread over 65 MB: on 4 KiB pages nearly each one missed the
    TLB, and the search took 15-18 % more CPU (`collapse_to_huge_pages`; about 1 ms per MB
    of records when the graph loads). Done in the process that loaded the graph, so the
    workers forked after it share the huge pages as they shared the small ones."""
    release_idle_locks(index, dim, m)
    graph = _graph_words(index, dim, m)
    if graph is not None and graph[_DATA_WORD]:
        collapse_to_huge_pages(graph[_DATA_WORD], int(index.element_count) * graph[3])


def _graph_words(index: hnswlib.Index, dim: int, m: int) -> list[int] | None:
    """The first words of hnswlib 0.8.0's `HierarchicalNSW` behind `index`, read from its
    objects' memory: the pybind11 instance points at the bindings' `Index` (its value and its
    holder, the same pointer), whose `appr_alg` points at the graph. Every field is checked
    against what the index reports (its space, dimension, capacity, element count, bytes per
    element, m) before the pointer beside it is followed; None at the first mismatch."""
    if struct.calcsize("P") != 8 or type(index).__basicsize__ < 4 * 8:
        return None
    _, _, value, holder = _words(id(index), 4)
    if value == 0 or value != holder:
        return None
    fields = _words(value, _INDEX_WORDS)
    if fields[1] != len(index.space) or fields[4] & 0xFFFFFFFF != dim or fields[9] == 0:
        return None
    graph = _words(fields[9], _GRAPH_WORDS)
    per_element = (2 * m + 1) * 4 + dim * 4 + _LABEL_BYTES
    if graph[1:4] != [int(index.max_elements), int(index.element_count), per_element] \
            or graph[6] != m or graph[8] != 2 * m:
        return None
    return graph


def _words(address: int, count: int) -> list[int]:
    return list((ctypes.c_uint64 * count).from_address(address))


def _crc_of(f: BinaryIO) -> int:
    crc = 0
    while chunk := f.read(_CRC_CHUNK):
        crc = zlib.crc32(chunk, crc)
    return crc


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; platforms that cannot open directories skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_header(path: Path, header: bytes, size: int, params: HnswParams, dim: int) -> int:
    """Validate the fixed header against what the manifest says; return the element count."""
    if len(header) < _HEADER.size:
        raise _corrupt(path, f"file is truncated ({size} bytes)")
    (
        offset0,
        max_elements,
        count,
        per_element,
        label_offset,
        data_offset,
        _maxlevel,
        entry,
        max_m,
        max_m0,
        m,
        _mult,
        _efc,
    ) = _HEADER.unpack(header)
    links0 = (2 * params.m + 1) * 4
    if m != params.m or max_m != params.m or max_m0 != 2 * params.m:
        raise _corrupt(path, f"it was built with m = {m}, expected {params.m}")
    if label_offset - data_offset != dim * 4:
        raise _corrupt(path, f"its vectors are not {dim}-dimensional")
    if (
        offset0 != 0
        or data_offset != links0
        or per_element != links0 + dim * 4 + _LABEL_BYTES
        or count > max_elements
        or (count and entry >= count)
        or _HEADER.size + count * per_element > size
    ):
        raise _corrupt(path, "its header is inconsistent or the file is truncated")
    return int(count)


def _corrupt(path: Path, reason: str) -> DataCorrupted:
    return corrupted_index_file("HNSW", path, reason)
