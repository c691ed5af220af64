"""The vector index protocol: what an access method implements for the engine to use it.

An access method (`CREATE INDEX … USING <name>`) is one class implementing `VectorIndex`,
registered by name in `access_methods.py`. Everything else is derived from the class, so no
other module names a method:

- DDL: the operator classes (`vector_l2_ops` → a metric), the `WITH (...)` options with their
  bounds, checked with PostgreSQL's reloption messages (`check_options`);
- storage: one index per sealed segment, built from the segment's vectors (`build`, with
  progress and cancellation), saved beside it with a CRC-32 the manifest keeps (`save`,
  `load`), rebuilt by compaction, its file checked by `sqlvec check`;
- search: `search(query, k, ef=…, allowed=…)` with an ef-like knob the method reads from the
  session's settings (`search_knob`), and a recall curve over that knob (`calibrate`) that
  a recall target (`sqlvec.target_recall`, 0.95 unless the session sets the knob) uses to pick
  the knob per segment; a method that filters by itself implements `FilteringIndex` too
  (IVFFlat masks its lists, HNSW bounds its over-query by `hnsw.max_scan_tuples`);
- settings (`settings`: `hnsw.ef_search` first, the knob, then the others, with types and
  bounds checked as PostgreSQL's GUCs), EXPLAIN's
  text per segment (`explain`), memory (`memory_bytes`), and the catalogs: pg_am (`am_oid`),
  pg_opclass and pg_opfamily (`opclasses`), `\\d` and pg_get_indexdef.

Labels are row positions within the segment (0..n-1); distances are pgvector's values. An
index never holds anything its segment does not, so a damaged or missing one is rebuilt.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from sqlvec.errors import DataCorrupted, InvalidParameterValue
from sqlvec.storage.calibration import overquery_labels
from sqlvec.vectors import Metric, top_k_batch

# The generic curve (`recall_curve`, for methods that cannot hold rows out of their build and
# for segments too small to): queries are indexed rows moved by this share of the data's
# per-dimension spread. Being in the index they can flatter it on hard data; HNSW's own
# calibration measures rows held out of the graph instead (hnsw.py).
CALIBRATION_NOISE = 0.3
# Each point of the curve is mean recall minus this many standard errors (about 99.9% one-sided),
# so a target is met by real queries, not only on average over runs of the calibration.
CALIBRATION_SIGMAS = 3.0


class DefaultSetting(str):
    """A setting's value as the server starts a session with it, not one the session chose.

    SHOW prints the plain text, but a search can tell `SET hnsw.ef_search = 40` (an explicit
    choice, honoured exactly as pgvector does) from never having set it (the search then aims
    at a calibrated recall instead). SET stores plain strings; RESET and RESET ALL restore the
    session's starting value, so it is "not set" again — which is why a default never equals
    the same text SET: RESET ALL restores only values that differ from the starting ones."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str) and not isinstance(other, DefaultSetting):
            return False
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


def is_set(settings: Mapping[str, str] | None, name: str) -> bool:
    """Whether the session (or the connection's options) chose a value of `name`."""
    value = settings.get(name) if settings else None
    return value is not None and not isinstance(value, DefaultSetting)


class IndexBuildCancelled(Exception):
    """`should_stop` asked a build to stop; nothing was written."""


@dataclass(frozen=True)
class OpClass:
    """An operator class of a method: the metric `CREATE INDEX … (col <name>)` indexes for, the
    column type it accepts, and its pg_opclass / pg_opfamily identity. `supported` False lists
    it in the catalogs (as pgvector has it) while CREATE INDEX refuses it with 0A000."""

    name: str
    metric: Metric
    oid: int
    family_oid: int
    default: bool = False
    supported: bool = True
    input_type: str = "vector"  # pg_type name of the indexed column


@dataclass(frozen=True)
class IndexOption:
    """An integer `WITH (name = value)` storage parameter with PostgreSQL's reloption rules."""

    name: str
    default: int
    min: int
    max: int

    def parse(self, value: object) -> int:
        """The value as an integer within bounds; 22023 with PostgreSQL's messages otherwise
        (fractions round half to even, as its parse_int does)."""
        number = _parse_int(value)
        if number is None:
            shown = "true" if value is None or value is True else value
            raise InvalidParameterValue(f'invalid value for integer option "{self.name}": {shown}')
        if not self.min <= number <= self.max:
            raise InvalidParameterValue(
                f'value {str(value).strip()} out of bounds for option "{self.name}"',
                detail=f'Valid values are between "{self.min}" and "{self.max}".')
        return number


@dataclass(frozen=True)
class IndexSetting:
    """A session setting a method reads at search time (`SET hnsw.ef_search = 100`): an
    integer or real within bounds, or an enum (`SET ivfflat.iterative_scan = relaxed_order`),
    declared as pgvector declares its GUCs."""

    name: str
    default: int | float | str
    min: int | float | None = None
    max: int | float | None = None
    description: str = ""
    vartype: str = "integer"  # integer | real | enum, as pg_settings.vartype
    enumvals: tuple[str, ...] = ()

    @property
    def default_text(self) -> str:
        """The default as SHOW prints it."""
        return f"{self.default:g}" if self.vartype == "real" else str(self.default)

    def parse(self, value: object) -> int | float | str:
        """The value within bounds (or one of the enum's); 22023 with PostgreSQL's GUC
        messages."""
        text = str(value).strip()
        if len(text) >= 2 and text[0] == text[-1] == "'":
            text = text[1:-1]
        if self.vartype == "enum":
            for option in self.enumvals:
                if option.lower() == text.lower():
                    return option
            raise InvalidParameterValue(f'invalid value for parameter "{self.name}": "{text}"',
                                        hint=f"Available values: {', '.join(self.enumvals)}.")
        number: int | float | None
        if self.vartype == "real":
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is not None and not math.isfinite(number):
                number = None
        else:
            number = _parse_int(text)
        if number is None:
            raise InvalidParameterValue(f'invalid value for parameter "{self.name}": "{text}"')
        low = -math.inf if self.min is None else self.min
        high = math.inf if self.max is None else self.max
        if not low <= number <= high:
            shown = f"{number:g}" if self.vartype == "real" else str(number)
            raise InvalidParameterValue(f'{shown} is outside the valid range for parameter '
                                        f'"{self.name}" ({self.min} .. {self.max})')
        return number

    def read(self, settings: Mapping[str, str] | None) -> Any:
        """The session's value (already checked when it was set), or the default."""
        if not settings or self.name not in settings:
            return self.default
        raw = settings[self.name]
        if self.vartype == "enum":
            text = str(raw).lower()
            return text if text in self.enumvals else self.default
        try:
            number = float(raw) if self.vartype == "real" else int(raw)
        except (TypeError, ValueError):
            return self.default
        return number if self.min is None else max(self.min, number)


@runtime_checkable
class VectorIndex(Protocol):
    """One access method's index over the vectors of one sealed segment.

    Class attributes and class methods describe the access method; an instance is the index
    of one segment, immutable once built and safe to search from many threads at once."""

    access_method: ClassVar[str]  # CREATE INDEX … USING <this>; pg_am.amname; file suffix
    am_oid: ClassVar[int]  # pg_am.oid (fixed, below the first user OID)
    opclasses: ClassVar[tuple[OpClass, ...]]  # exactly one is the default
    options: ClassVar[tuple[IndexOption, ...]]  # WITH (...) parameters
    settings: ClassVar[tuple[IndexSetting, ...]]  # session settings it reads; the knob first
    calibration: list[tuple[int, float]]  # (knob, recall@10) after `calibrate`; [] = unknown
    # Optionally `float32_l2` (True): `search`'s distances are float32 sums of the squared
    # differences of the segment's own float32 rows, so they can settle the winners' order
    # without re-scoring (search.py `_order_settled`). Absent means they are not trusted.

    @classmethod
    def make_params(cls, metric: Metric, options: Mapping[str, int]) -> Any:
        """What `build` and `load` take: the metric and every option (defaults filled in,
        each within its bounds). Checks that span options raise 22023 here."""
        ...

    @classmethod
    def build(cls, vectors: np.ndarray, params: Any, *, valid: np.ndarray | None = None,
              num_threads: int = 0, progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> VectorIndex:
        """Index the rows of `vectors` (n, d) whose `valid` flag is set, reporting
        `progress(done, total)` and raising IndexBuildCancelled when `should_stop()`."""
        ...

    @classmethod
    def load(cls, path: str | os.PathLike[str], params: Any, dim: int, *,
             expected_crc: int | None = None) -> VectorIndex:
        """Read a file written by `save`, checking the CRC-32 the manifest recorded before
        parsing anything; DataCorrupted when it does not match."""
        ...

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index durably (temp file, fsync, rename); return the file's CRC-32."""
        ...

    def search(self, query: np.ndarray, k: int, *, ef: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """At most min(k, indexed, allowed) nearest rows: (positions int64, distances
        float64), nearest first. `allowed` masks row positions; None means the index cannot
        answer (the segment is then searched exactly)."""
        ...

    def calibrate(self, vectors: np.ndarray, valid: np.ndarray | None) -> list[tuple[int, float]]:
        """Recall@10 at a ladder of knob values (lower confidence bounds), on queries like the
        segment's rows that the index has not seen where the method can (HNSW holds a sample
        of rows out of the graph until it has measured them)."""
        ...

    @classmethod
    def search_knob(cls, settings: Mapping[str, str] | None) -> int:
        """The ef-like knob a search uses, read from the session's settings."""
        ...

    def explain(self, knob: int, estimated_recall: float | None) -> str:
        """EXPLAIN's text for this index's part of a segment's line ("ef=40 est_recall=…")."""
        ...

    @property
    def indexed_count(self) -> int:
        """Rows in the index."""
        ...

    @property
    def memory_bytes(self) -> int:
        """Estimated resident size."""
        ...


@runtime_checkable
class FilteringIndex(Protocol):
    """An index that takes a filtered search in hand itself (optional, beside `VectorIndex`):
    it applies the eligibility mask while it scans and widens its own scan, bounded by its
    method's settings (IVFFlat: more lists up to `ivfflat.max_probes`; HNSW: more labels up to
    `hnsw.max_scan_tuples`). Indexes without it are over-queried by the search (`overquery`)."""

    def search_filtered(self, query: np.ndarray, k: int, *, knob: int, allowed: np.ndarray,
                        settings: Mapping[str, str] | None) -> tuple[np.ndarray, int] | None:
        """(the k nearest allowed positions, nearest first; how many times the scan widened),
        or None when the scan stopped short of k (the segment is then finished exactly)."""
        ...


def overquery(index: VectorIndex, query: np.ndarray, want: int, knob: int, allowed: np.ndarray,
              selectivity: float, max_labels: int | None = None, squared: bool = False
              ) -> tuple[np.ndarray, int, np.ndarray] | None:
    """A filtered search through an unfiltered one: ask the index for want / selectivity × 2
    nearest rows, keep the allowed ones in NumPy and widen (× 4) until `want` survive, asking
    for at most `max_labels` (all indexed rows by default). (positions, times widened, the
    index's distances to them: with `squared`, an l2 index's own float32 squares, as
    `search(..., squared=True)` gives them), or None when the index came back short."""
    total = index.indexed_count
    cap = total if max_labels is None else max(want, min(total, max_labels))
    ask = min(cap, overquery_labels(want, selectivity))
    widened = 0
    while True:
        found = index.search(query, ask, ef=max(knob, ask), squared=True) if squared \
            else index.search(query, ask, ef=max(knob, ask))
        if found is None:
            return None
        labels, distances = found
        kept = allowed[labels]
        positions = labels[kept]
        if positions.size >= want:
            return positions[:want], widened, distances[kept][:want]
        if ask >= cap:
            return None
        ask = min(cap, ask * 4)
        widened += 1


def check_options(method: type[VectorIndex], given: Iterable[tuple[str, object]]) -> dict[str, int]:
    """`WITH (...)` parameters as given (name, value) pairs, parsed and checked against the
    method's declared options as PostgreSQL checks reloptions (22023): unknown names, repeats,
    values that are not integers or out of bounds. Returns only the given ones."""
    declared = {o.name: o for o in method.options}
    out: dict[str, int] = {}
    for name, value in given:
        key = str(name).lower()
        option = declared.get(key)
        if option is None:
            raise InvalidParameterValue(f'unrecognized parameter "{key}"')
        if key in out:
            raise InvalidParameterValue(f'parameter "{key}" specified more than once')
        out[key] = option.parse(value)
    return out


def all_options(method: type[VectorIndex], given: Mapping[str, object]) -> dict[str, int]:
    """Every option of the method: the given ones (checked) over the defaults."""
    values = {o.name: o.default for o in method.options}
    values.update(check_options(method, given.items()))
    return values


def recall_curve(index: VectorIndex, metric: Metric, vectors: np.ndarray,
                 valid: np.ndarray | None, knobs: Iterable[int], *, samples: int = 400,
                 k: int = 10, seed: int = 7) -> list[tuple[int, float]]:
    """Lower confidence bound of recall@k of `index` at each knob value (stopping once mean
    recall reaches 0.999), on queries sampled from its own rows and moved by
    CALIBRATION_NOISE of their spread, so they are near the data without being rows of it.
    Empty when the segment has too few usable rows to measure."""
    usable = np.flatnonzero(valid) if valid is not None else np.arange(vectors.shape[0])
    if metric is Metric.COSINE:
        norms = np.einsum("ij,ij->i", vectors[usable], vectors[usable])
        usable = usable[norms > 0]
    if usable.size < 2 * k:
        return []
    rng = np.random.default_rng(seed)
    picks = rng.choice(usable, size=min(samples, usable.size), replace=False)
    spread = vectors[usable[: min(usable.size, 20_000)]].std(axis=0)
    noise = rng.standard_normal((picks.size, vectors.shape[1])).astype(np.float32)
    queries = vectors[picks] + CALIBRATION_NOISE * spread * noise
    truth = [set(row[row >= 0].tolist()) for row in top_k_batch(metric, vectors, queries, k, valid)]
    curve = []
    for knob in knobs:
        recalls = np.zeros(len(truth))
        for i, (q, t) in enumerate(zip(queries, truth)):
            found = index.search(q, k, ef=knob)
            if found is not None:
                recalls[i] = len(t.intersection(found[0].tolist())) / max(len(t), 1)
        curve.append((int(knob), calibration_point(recalls)))
        if recalls.mean() >= 0.999:
            break
    return curve


def calibration_point(recalls: np.ndarray) -> float:
    """One point of a recall curve from per-query recalls: their mean minus CALIBRATION_SIGMAS
    standard errors (a lower confidence bound), so an estimate errs low, not high. One
    pseudo-query that found nothing is counted in: without it a small sample in which every
    query happened to be perfect would claim recall 1.000 with no error at all."""
    sample = np.append(np.asarray(recalls, dtype=np.float64), 0.0)
    bound = sample.mean() - CALIBRATION_SIGMAS * sample.std() / math.sqrt(sample.size)
    return round(float(max(bound, 0.0)), 4)


def _parse_int(value: object) -> int | None:
    """PostgreSQL's parse_int: an integer, or a number rounded half to even; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    text = str(value).strip()
    try:
        return int(text, 0) if text.lower().startswith(("0x", "-0x", "+0x")) else int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or abs(number) > 2**31 - 1:
        return None
    return round(number)


def corrupted_index_file(kind: str, path: Path, reason: str) -> DataCorrupted:
    """The error for a damaged index file: the index, unlike the data, can be rebuilt."""
    return DataCorrupted(
        f'{kind} index file "{path}" is corrupted: {reason}; '
        "the index can be rebuilt from its segment",
        hint="REINDEX rebuilds the index from the segment data.")


def read_index_file(path: Path, kind: str, header_size: int,
                    expected_crc: int | None) -> bytes:
    """An index file's bytes, checked before any of them is parsed: readable, the CRC the
    manifest recorded (when it has one), at least a header long."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise corrupted_index_file(kind, path, f"could not read it: {exc.strerror or exc}") \
            from exc
    if expected_crc is not None and zlib.crc32(data) != expected_crc:
        raise corrupted_index_file(kind, path, f"checksum {zlib.crc32(data):#010x} does not "
                                               f"match the expected {expected_crc:#010x}")
    if len(data) < header_size:
        raise corrupted_index_file(kind, path, f"file is truncated ({len(data)} bytes)")
    return data


class ExactScanIndex:
    """The part of `VectorIndex` an exact structure shares (packed bits, inverted lists):
    its answers are exact, so there is nothing to calibrate and no search knob."""

    def calibrate(self, vectors: Any, valid: np.ndarray | None) -> list[tuple[int, float]]:
        """Nothing to calibrate: the scan is exact."""
        return []

    @classmethod
    def search_knob(cls, settings: Mapping[str, str] | None) -> int:
        """No knob: the scan is exact."""
        return 0
