"""IVFFlat, the second vector access method: inverted lists over k-means centers, per segment.

`IvfflatIndex` implements the `VectorIndex` protocol (vector_index.py) for `CREATE INDEX …
USING ivfflat (col vector_l2_ops|vector_ip_ops|vector_cosine_ops) WITH (lists = n)` as pgvector
has it (lists 1..32768, 100 by default; halfvec_* operator classes too), searched with
`ivfflat.probes` (1 by default) over the nearest lists. Labels are row positions (0..n-1).

Build, as pgvector's: k-means is trained on a sample of the segment's rows (50 per list, at
least 10,000; fixed seed, so a rebuild gives the same index), k-means++ seeding, then every row
goes to its nearest center's list. A segment with fewer rows than `lists` gets one list per
row. Under cosine the rows are normalized first and the centers are kept unit length
(spherical k-means); under inner product the centers are unit length too and a row goes to the
center of largest inner product (pgvector's `vector_ip_ops` does the same). Zero vectors under
cosine are not indexed (their distance is NaN), as pgvector skips them.

Search: the query is scored against every center (one matrix product), the `probes` nearest
lists are gathered and scored at once (one more), and the nearest rows returned; the search
re-scores the winners exactly (storage/search.py). A filtered search (`search_filtered`) masks
the lists' rows before scoring; when fewer than k allowed rows are in the probed lists, with
`ivfflat.iterative_scan = relaxed_order` it probes further lists (doubling) up to
`ivfflat.max_probes`, as pgvector's iterative scan does; if still short (or with iterative
scans off) the segment is finished exactly, so a query returns k rows whenever k match.

Calibration: recall@10 against the probes, measured on 300 of the segment's rows as queries
(their own row left out of the truth): a true neighbour is found at p probes exactly when its
list is among the query's p nearest centers, so the whole curve is one vectorized pass.

On-disk file (little-endian)
============================

| offset | type        | field                                              |
|--------|-------------|----------------------------------------------------|
| 0      | 8 bytes     | magic `SQVIVF01`                                   |
| 8      | uint32      | metric code (1 l2, 2 cosine, 3 ip)                 |
| 12     | uint32      | dimensions d                                       |
| 16     | uint32      | lists L (as built: at most the option's `lists`)   |
| 20     | uint32      | the `lists` option the index was defined with      |
| 24     | uint64      | indexed rows n                                     |
| 32     | float32[L×d]| centers                                            |
|        | int64[L+1]  | list offsets: list i holds entries offsets[i]..[i+1] |
|        | int64[n]    | row position of each entry, list by list           |
|        | float32[n×d]| each entry's vector (unit length under cosine)     |

`save` returns the CRC-32 of the file, which the manifest keeps; `load` checks it before
parsing, then the header against the file's size. Any failure is DataCorrupted: the index is
rebuilt from its segment.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sqlvec.errors import DataCorrupted, FeatureNotSupported, InvalidParameterValue
from sqlvec.storage.fsutil import atomic_write
from sqlvec.storage.vector_index import (
    IndexBuildCancelled,
    IndexOption,
    IndexSetting,
    OpClass,
    calibration_point,
    corrupted_index_file,
    read_index_file,
)
from sqlvec.vectors import Metric, check_same_dims

# pgvector's reloption and settings for ivfflat, with its defaults and bounds.
MAX_LISTS = 32_768
LISTS_OPTION = IndexOption("lists", 100, 1, MAX_LISTS)
PROBES = IndexSetting("ivfflat.probes", 1, 1, MAX_LISTS, "Sets the number of probes")
ITERATIVE_SCAN = IndexSetting("ivfflat.iterative_scan", "off", description="Sets the mode for "
                              "iterative scans", vartype="enum", enumvals=("off", "relaxed_order"))
MAX_PROBES = IndexSetting("ivfflat.max_probes", MAX_LISTS, 1, MAX_LISTS,
                          "Sets the max number of probes for iterative scans")

# OIDs fixed below the first user OID, clear of HNSW's (objects.py).
OPCLASSES = (
    OpClass("vector_l2_ops", Metric.L2, 16321, 16327, default=True),
    OpClass("vector_ip_ops", Metric.IP, 16322, 16328),
    OpClass("vector_cosine_ops", Metric.COSINE, 16323, 16329),
    OpClass("halfvec_l2_ops", Metric.L2, 16324, 16330, input_type="halfvec"),
    OpClass("halfvec_ip_ops", Metric.IP, 16325, 16331, input_type="halfvec"),
    OpClass("halfvec_cosine_ops", Metric.COSINE, 16326, 16332, input_type="halfvec"),
    # Bits: packed per segment and scanned exactly by popcount (bit_index.py).
    OpClass("bit_hamming_ops", Metric.HAMMING, 16374, 16375, input_type="bit"),
)
_METRIC_CODES = {Metric.L2: 1, Metric.COSINE: 2, Metric.IP: 3}

# k-means: pgvector's sample size (50 rows per list, at least 10,000), Lloyd iterations until
# no sample changes list or this many.
SAMPLES_PER_LIST = 50
MIN_SAMPLES = 10_000
KMEANS_ITERATIONS = 25
KMEANS_SEED = 42
SEED_PLUS_PLUS_LISTS = 1_000
# Rows assigned per matrix product (the unit of progress reporting and cancellation).
ASSIGN_CHUNK = 8_192
# Calibration: this many of the segment's rows as queries, recall@10 at a ladder of probes.
CALIBRATION_QUERIES = 300
CALIBRATION_K = 10
CALIBRATION_PROBES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 50, 64, 80, 100, 128,
                      160, 200, 256, 320, 400, 512, 640, 800, 1000)

_MAGIC = b"SQVIVF01"
_HEADER = struct.Struct("<8sIIIIQ")


@dataclass(frozen=True)
class IvfflatParams:
    """What `CREATE INDEX … USING ivfflat (col <opclass>) WITH (lists)` fixes."""

    metric: Metric
    lists: int = LISTS_OPTION.default

    def __post_init__(self) -> None:
        if self.metric not in _METRIC_CODES:
            raise FeatureNotSupported(
                f"ivfflat indexes do not support {self.metric.name} distance "
                f"({self.metric.operator})",
                hint="Use vector_l2_ops, vector_ip_ops or vector_cosine_ops.")
        if isinstance(self.lists, bool) or not isinstance(self.lists, (int, np.integer)):
            raise InvalidParameterValue(f'invalid value for integer option "lists": {self.lists}')
        LISTS_OPTION.parse(self.lists)


class IvfflatIndex:
    """Inverted lists of one sealed segment, immutable after build and safe to search from many
    threads at once (NumPy releases the GIL in its matrix products): the `ivfflat` method."""

    access_method = "ivfflat"
    am_oid = 16320
    opclasses = OPCLASSES
    options = (LISTS_OPTION,)
    settings = (PROBES, ITERATIVE_SCAN, MAX_PROBES)  # the knob first

    def __init__(self, params: IvfflatParams, centers: np.ndarray, offsets: np.ndarray,
                 positions: np.ndarray, vectors: np.ndarray) -> None:
        self._params = params
        self._centers = centers
        self._offsets = offsets
        self._positions = positions
        self._vectors = vectors
        self._dim = int(centers.shape[1])
        self._center_norms = np.einsum("ij,ij->i", centers, centers)
        self._norms = (np.einsum("ij,ij->i", vectors, vectors) if params.metric is Metric.L2
                       else None)
        self._lists_of = None  # the list of each entry, for calibration (built on demand)
        self.calibration: list[tuple[int, float]] = []

    # Build ----------------------------------------------------------------------------------

    @classmethod
    def make_params(cls, metric: Metric, options: Mapping[str, int]) -> IvfflatParams:
        """The parameters of an index with these options (pgvector's default for the rest)."""
        return IvfflatParams(metric, lists=int(options.get("lists", LISTS_OPTION.default)))

    @classmethod
    def build(cls, vectors: np.ndarray, params: IvfflatParams, *,
              valid: np.ndarray | None = None, num_threads: int = 0,
              progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> IvfflatIndex:
        """Train the centers on a sample of the valid rows and file every row in a list.
        `progress(done, total)` counts rows assigned; IndexBuildCancelled between chunks."""
        data = np.asarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] < 1:
            raise ValueError(f"vectors must be a non-empty (n, d) matrix, got shape {data.shape}")
        n, dim = data.shape
        mask = np.ones(n, np.bool_) if valid is None else np.asarray(valid, dtype=np.bool_)
        if params.metric is Metric.COSINE:
            mask = mask & (np.einsum("ij,ij->i", data, data, dtype=np.float64) > 0.0)
        positions = np.flatnonzero(mask).astype(np.int64)
        total = int(positions.size)
        rows = data[positions] if total < n else data
        if params.metric is Metric.COSINE:
            rows = _normalized(rows)
        lists = max(1, min(params.lists, total))
        rng = np.random.default_rng(KMEANS_SEED)
        samples = max(SAMPLES_PER_LIST * params.lists, MIN_SAMPLES)
        sample = rows if total <= samples else rows[np.sort(rng.choice(total, samples,
                                                                       replace=False))]
        spherical = params.metric is not Metric.L2
        if total == 0:
            centers = np.zeros((1, dim), np.float32)
        else:
            train = _normalized(sample) if params.metric is Metric.IP else sample
            centers = _kmeans(train, lists, spherical, rng, should_stop)
        assigned = np.empty(total, np.int64)
        for start in range(0, total, ASSIGN_CHUNK):
            if should_stop is not None and should_stop():
                raise IndexBuildCancelled("IVFFlat index build cancelled")
            chunk = rows[start:start + ASSIGN_CHUNK]
            assigned[start:start + chunk.shape[0]] = _nearest_centers(chunk, centers, spherical)
            if progress is not None:
                progress(start + chunk.shape[0], total)
        if total == 0 and progress is not None:
            progress(0, 0)
        order = np.argsort(assigned, kind="stable")
        offsets = np.zeros(centers.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(assigned, minlength=centers.shape[0]), out=offsets[1:])
        return cls(params, np.ascontiguousarray(centers, np.float32), offsets,
                   positions[order], np.ascontiguousarray(rows[order], np.float32))

    # Persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index atomically (temp file, fsync, rename); return its CRC-32."""
        header = _HEADER.pack(_MAGIC, _METRIC_CODES[self._params.metric], self._dim,
                              self._centers.shape[0], self._params.lists, self.indexed_count)
        body = b"".join((header, self._centers.astype("<f4").tobytes(),
                         self._offsets.astype("<i8").tobytes(),
                         self._positions.astype("<i8").tobytes(),
                         self._vectors.astype("<f4").tobytes()))
        atomic_write(path, body)
        return zlib.crc32(body)

    @classmethod
    def load(cls, path: str | os.PathLike[str], params: IvfflatParams, dim: int, *,
             expected_crc: int | None = None) -> IvfflatIndex:
        """Read a file written by `save`, checking its CRC first when the manifest has one."""
        path = Path(path)
        data = read_index_file(path, "IVFFlat", _HEADER.size, expected_crc)
        magic, code, file_dim, lists, option, count = _HEADER.unpack_from(data)
        if magic != _MAGIC or code != _METRIC_CODES[params.metric] or option != params.lists:
            raise _corrupt(path, "it was built for another index definition")
        if file_dim != dim:
            raise _corrupt(path, f"its vectors are not {dim}-dimensional")
        sizes = (lists * dim * 4, (lists + 1) * 8, count * 8, count * dim * 4)
        if not 1 <= lists <= MAX_LISTS or _HEADER.size + sum(sizes) != len(data):
            raise _corrupt(path, "its header is inconsistent or the file is truncated")
        parts, at = [], _HEADER.size
        for size, dtype in zip(sizes, ("<f4", "<i8", "<i8", "<f4")):
            parts.append(np.frombuffer(data, dtype=dtype, count=size // np.dtype(dtype).itemsize,
                                       offset=at).astype(dtype[1:]))
            at += size
        centers, offsets, positions, vectors = parts
        if offsets[0] != 0 or offsets[-1] != count or np.any(np.diff(offsets) < 0):
            raise _corrupt(path, "its list offsets are inconsistent")
        return cls(params, centers.reshape(lists, dim), offsets, positions,
                   vectors.reshape(count, dim))

    # Search ---------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int, *, ef: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Approximate k nearest indexed rows: (positions int64, pgvector distances float64),
        nearest first. `ef` is the number of lists probed; more are probed when those hold
        fewer than k (allowed) rows. None for a zero query under cosine."""
        return self._scan(query, k, int(ef), self._centers.shape[0], allowed)[0]

    def search_filtered(self, query: np.ndarray, k: int, *, knob: int, allowed: np.ndarray,
                        settings: Mapping[str, str] | None) -> tuple[np.ndarray, int] | None:
        """A filtered search (`FilteringIndex`): the probed lists' allowed rows; when fewer than
        k, further lists up to `ivfflat.max_probes` under `ivfflat.iterative_scan =
        relaxed_order`, else None (the segment is then finished exactly)."""
        iterative = ITERATIVE_SCAN.read(settings) != "off"
        limit = max(knob, MAX_PROBES.read(settings)) if iterative else knob
        found, widened = self._scan(query, k, int(knob), int(limit), allowed)
        if found is None:
            return None
        return found[0], widened

    def _scan(self, query: np.ndarray, k: int, probes: int, max_probes: int,
              allowed: np.ndarray | None) -> tuple[tuple[np.ndarray, np.ndarray] | None, int]:
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        check_same_dims(self._dim, q.shape[0])
        want = min(int(k), self.indexed_count)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.bool_)
        if want <= 0:
            return (np.empty(0, np.int64), np.empty(0)), 0
        metric = self._params.metric
        if metric is Metric.COSINE and not q.any():
            return None, 0
        lists = self._centers.shape[0]
        dots = np.einsum("ij,j->i", self._centers, q)  # einsum: see below
        scores = self._center_norms - 2.0 * dots if metric is Metric.L2 else -dots
        order = np.argsort(scores, kind="stable")
        probes = max(1, min(probes, lists))
        max_probes = max(probes, min(max_probes, lists))
        widened, done = 0, 0
        entries: list[np.ndarray] = []
        raws: list[np.ndarray] = []
        found = 0
        while True:
            for list_id in order[done:probes]:
                # Each list is a contiguous block: scored in place (no gathering copy), with
                # einsum, not `@`: a multi-threaded BLAS costs more in thread hand-offs than in
                # arithmetic at these sizes, and far more on a busy machine.
                a, b = int(self._offsets[list_id]), int(self._offsets[list_id + 1])
                if a == b:
                    continue
                entry = np.arange(a, b)
                block = self._vectors[a:b]
                if allowed is not None:
                    keep = allowed[self._positions[a:b]]
                    if not keep.all():
                        entry, block = entry[keep], block[keep]
                    if entry.size == 0:
                        continue
                dots = np.einsum("ij,j->i", block, q)
                raws.append(self._norms[entry] - 2.0 * dots if self._norms is not None
                            else -dots)
                entries.append(entry)
                found += entry.size
            done = probes
            if found >= want or probes >= max_probes:
                break
            probes = min(max_probes, probes * 2)
            widened += 1
        if found < want:
            return None, widened
        idx = np.concatenate(entries) if len(entries) > 1 else entries[0]
        raw = np.concatenate(raws) if len(raws) > 1 else raws[0]
        best = np.argpartition(raw, want - 1)[:want] if want < raw.size else np.arange(raw.size)
        best = best[np.argsort(raw[best], kind="stable")]
        raw = raw[best].astype(np.float64)
        if metric is Metric.L2:
            distances = np.sqrt(np.maximum(raw + float(q @ q), 0.0))
        elif metric is Metric.COSINE:
            distances = 1.0 + raw / float(np.sqrt(q.astype(np.float64) @ q))
        else:
            distances = raw
        return (self._positions[idx[best]], distances), widened

    def calibrate(self, vectors: np.ndarray, valid: np.ndarray | None) -> list[tuple[int, float]]:
        """Recall@10 at a ladder of probes (lower confidence bounds), on up to 300 of the
        indexed rows as queries, each left out of its own truth."""
        count = self.indexed_count
        lists = self._centers.shape[0]
        if count <= CALIBRATION_K:
            return []
        rng = np.random.default_rng(7)
        picks = np.sort(rng.choice(count, size=min(CALIBRATION_QUERIES, count), replace=False))
        queries = self._vectors[picks]
        k = CALIBRATION_K
        truth = np.empty((picks.size, k), np.int64)
        block = max(1, (8 << 20) // max(1, 4 * count))  # ≤ 8 MiB of scores at a time
        for start in range(0, picks.size, block):
            scores = queries[start:start + block] @ self._vectors.T
            scores *= -2.0 if self._norms is not None else -1.0  # in place: no second matrix
            if self._norms is not None:
                scores += self._norms
            scores[np.arange(scores.shape[0]), picks[start:start + block]] = np.inf
            truth[start:start + block] = np.argpartition(scores, k - 1, axis=1)[:, :k]
        if self._lists_of is None:
            self._lists_of = np.repeat(np.arange(lists), np.diff(self._offsets))
        dots = queries @ self._centers.T
        center_scores = self._center_norms - 2.0 * dots if self._norms is not None else -dots
        rank = np.empty_like(center_scores, dtype=np.int64)
        rank[np.arange(picks.size)[:, None], np.argsort(center_scores, axis=1)] = \
            np.arange(lists)
        truth_rank = rank[np.arange(picks.size)[:, None], self._lists_of[truth]]
        curve: list[tuple[int, float]] = []
        for probes in CALIBRATION_PROBES:
            probes = min(probes, lists)
            recalls = (truth_rank < probes).mean(axis=1)
            curve.append((probes, calibration_point(recalls)))
            if recalls.mean() >= 0.999 or probes >= lists:
                break
        return curve

    @classmethod
    def search_knob(cls, settings: Mapping[str, str] | None) -> int:
        """Lists a search probes: the session's `ivfflat.probes`."""
        return int(PROBES.read(settings))

    def explain(self, knob: int, estimated_recall: float | None) -> str:
        """EXPLAIN's text: probes of lists, and, when calibrated, the estimated recall."""
        text = f"probes={min(knob, self._centers.shape[0])}/{self._centers.shape[0]}"
        if estimated_recall is not None:
            text += f" est_recall={estimated_recall:.3f}"
        return text

    # Introspection --------------------------------------------------------------------------

    @property
    def params(self) -> IvfflatParams:
        return self._params

    @property
    def lists(self) -> int:
        """Lists as built (at most the option's `lists`: one per row in small segments)."""
        return int(self._centers.shape[0])

    @property
    def indexed_count(self) -> int:
        """Rows in the lists: valid rows, minus zero vectors under cosine."""
        return int(self._positions.size)

    @property
    def memory_bytes(self) -> int:
        """Centers, entries' vectors, positions and offsets."""
        norms = 0 if self._norms is None else self._norms.nbytes
        return int(self._centers.nbytes + self._vectors.nbytes + self._positions.nbytes
                   + self._offsets.nbytes + norms)

    def __repr__(self) -> str:
        return (f"IvfflatIndex({self._params.metric.name}, dim={self._dim}, "
                f"lists={self.lists}, indexed={self.indexed_count})")


def _normalized(rows: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return (rows / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)


def _nearest_centers(rows: np.ndarray, centers: np.ndarray, spherical: bool) -> np.ndarray:
    """The list of each row: nearest center by L2, or largest inner product (unit centers)."""
    dots = rows @ centers.T
    if spherical:
        return np.argmax(dots, axis=1)
    return np.argmin(np.einsum("ij,ij->i", centers, centers) - 2.0 * dots, axis=1)


def _kmeans(sample: np.ndarray, lists: int, spherical: bool, rng: np.random.Generator,
            should_stop: Callable[[], bool] | None) -> np.ndarray:
    """Centers of `lists` clusters of the sample: k-means++ seeding, then Lloyd iterations
    (unit-length centers when spherical). An emptied cluster takes the sample row farthest
    from its center."""
    n = sample.shape[0]
    if lists >= n:
        return sample.copy()
    centers = _seed(sample, lists, rng)
    assigned = np.full(n, -1, np.int64)
    for _ in range(KMEANS_ITERATIONS):
        if should_stop is not None and should_stop():
            raise IndexBuildCancelled("IVFFlat index build cancelled")
        new = np.empty(n, np.int64)
        best = np.empty(n, np.float32)
        for start in range(0, n, ASSIGN_CHUNK):
            dots = sample[start:start + ASSIGN_CHUNK] @ centers.T
            scores = -dots if spherical else np.einsum("ij,ij->i", centers, centers) - 2 * dots
            new[start:start + dots.shape[0]] = np.argmin(scores, axis=1)
            best[start:start + dots.shape[0]] = scores[np.arange(dots.shape[0]),
                                                       new[start:start + dots.shape[0]]]
        if np.array_equal(new, assigned):
            break
        assigned = new
        counts = np.bincount(assigned, minlength=lists)
        order = np.argsort(assigned, kind="stable")
        filled = counts > 0
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[filled]
        sums = np.add.reduceat(sample[order], starts, axis=0)
        empty = np.flatnonzero(~filled)
        centers[filled] = (sums / counts[filled][:, None]).astype(np.float32)
        if empty.size:  # refill from the rows worst served by their centers
            far = np.argsort(best)[::-1][:empty.size]
            centers[empty] = sample[far]
        if spherical:
            centers = _normalized(centers)
    return centers


def _seed(sample: np.ndarray, lists: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (each next center drawn in proportion to the squared distance to the
    nearest chosen one); beyond SEED_PLUS_PLUS_LISTS lists (where its one pass per center
    would dominate the build), distinct random rows."""
    n = sample.shape[0]
    if lists > SEED_PLUS_PLUS_LISTS:
        return sample[np.sort(rng.choice(n, lists, replace=False))].astype(np.float32)
    norms = np.einsum("ij,ij->i", sample, sample)
    chosen = [int(rng.integers(n))]
    # einsum, not `@`: one matrix-vector product per center, where BLAS threads only cost.
    nearest = np.maximum(norms - 2 * np.einsum("ij,j->i", sample, sample[chosen[0]])
                         + norms[chosen[0]], 0)
    for _ in range(1, lists):
        total = float(nearest.sum())
        pick = int(rng.integers(n)) if total <= 0 else int(
            np.searchsorted(np.cumsum(nearest), rng.random() * total))
        pick = min(pick, n - 1)
        chosen.append(pick)
        d = np.maximum(norms - 2 * np.einsum("ij,j->i", sample, sample[pick]) + norms[pick], 0)
        np.minimum(nearest, d, out=nearest)
    return sample[chosen].astype(np.float32)


def _corrupt(path: Path, reason: str) -> DataCorrupted:
    return corrupted_index_file("IVFFlat", path, reason)
