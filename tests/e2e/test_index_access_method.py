"""A second vector access method, defined here and nowhere else, works everywhere HNSW does.

`FlatIndex` is the smallest `VectorIndex` there is: a copy of a segment's vectors, scanned
exactly per search. Registered under the name "flat" (this module run as `python -m
tests.e2e.test_index_access_method serve …` registers it, then runs the real server), it gets
without a change to any other file: CREATE INDEX … USING flat with its operator classes and
WITH option checked, searches through it (EXPLAIN naming it and its `flat.probes` setting),
pg_am / pg_opclass / pg_class rows, psql's `\\d`, persistence across a restart, `sqlvec check`
of its files and their rebuild when damaged, and compaction rebuilding it. This is the proof
that a new index type is one module plus a registration.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest

from sqlvec.errors import DataCorrupted, InvalidParameterValue
from sqlvec.storage import access_methods
from sqlvec.storage.fsutil import atomic_write
from sqlvec.storage.vector_index import (
    IndexBuildCancelled,
    IndexOption,
    IndexSetting,
    OpClass,
)
from sqlvec.vectors import Metric, top_k
from tests.e2e.conftest import start_server

MODULE = "tests.e2e.test_index_access_method"
ROOT = Path(__file__).resolve().parents[2]
PSQL = shutil.which("psql")
DIM, ROWS, FRESH = 8, 2_000, 100

PROBES = IndexSetting("flat.probes", 1, 1, 64, "Shown by EXPLAIN; a flat index needs no knob.")


@dataclass(frozen=True)
class FlatParams:
    metric: Metric
    lists: int


class FlatIndex:
    """Brute force over a copy of the segment's indexed rows: the `flat` access method."""

    access_method = "flat"
    am_oid = 9700
    opclasses = (
        OpClass("vector_l2_ops", Metric.L2, 9701, 9702, default=True),
        OpClass("vector_cosine_ops", Metric.COSINE, 9703, 9704),
    )
    options = (IndexOption("lists", 1, 1, 64),)
    settings = (PROBES,)

    def __init__(self, metric: Metric, positions: np.ndarray, vectors: np.ndarray) -> None:
        self.metric = metric
        self.positions = positions
        self.vectors = vectors
        self.calibration: list[tuple[int, float]] = []

    @classmethod
    def make_params(cls, metric: Metric, options: Mapping[str, int]) -> FlatParams:
        if metric is Metric.COSINE and options["lists"] > 32:
            raise InvalidParameterValue("lists must be at most 32 for vector_cosine_ops")
        return FlatParams(metric, options["lists"])

    @classmethod
    def build(cls, vectors: np.ndarray, params: FlatParams, *, valid: np.ndarray | None = None,
              num_threads: int = 0, progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> FlatIndex:
        positions = np.flatnonzero(np.ones(len(vectors), bool) if valid is None else valid)
        for done in range(0, positions.size, 500):
            if should_stop is not None and should_stop():
                raise IndexBuildCancelled("flat index build cancelled")
            if progress is not None:
                progress(min(done + 500, positions.size), positions.size)
        return cls(params.metric, positions.astype(np.int64),
                   np.ascontiguousarray(vectors[positions], dtype=np.float32))

    def save(self, path) -> int:
        buffer = io.BytesIO()
        np.savez(buffer, positions=self.positions, vectors=self.vectors)
        atomic_write(path, buffer.getvalue())
        return zlib.crc32(buffer.getvalue())

    @classmethod
    def load(cls, path, params: FlatParams, dim: int, *,
             expected_crc: int | None = None) -> FlatIndex:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise DataCorrupted(f'flat index file "{path}" is unreadable: {exc}') from exc
        if expected_crc is not None and zlib.crc32(data) != expected_crc:
            raise DataCorrupted(f'flat index file "{path}" is corrupted: checksum mismatch')
        arrays = np.load(io.BytesIO(data))
        return cls(params.metric, arrays["positions"], arrays["vectors"])

    def search(self, query: np.ndarray, k: int, *, ef: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        keep = None if allowed is None else allowed[self.positions]
        found, dists = top_k(self.metric, self.vectors, query, k, keep)
        return self.positions[found], dists

    def calibrate(self, vectors: np.ndarray, valid: np.ndarray | None) -> list[tuple[int, float]]:
        return [(1, 1.0)]  # exact at any knob

    @classmethod
    def search_knob(cls, settings: Mapping[str, str] | None) -> int:
        return PROBES.read(settings)

    def explain(self, knob: int, estimated_recall: float | None) -> str:
        return f"probes={knob}"

    @property
    def indexed_count(self) -> int:
        return int(self.positions.size)

    @property
    def memory_bytes(self) -> int:
        return int(self.vectors.nbytes + self.positions.nbytes)


# The data: ROWS rows indexed in one sealed segment, FRESH more in the growing segment ---------

def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    vectors = rng.normal(size=(ROWS + FRESH, DIM)).astype(np.float32)
    return vectors, np.arange(ROWS + FRESH) % 10


def text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def truth(metric: Metric, q: np.ndarray, where: np.ndarray | None = None, k: int = 5) -> list:
    vectors, _ = dataset()
    found, _ = top_k(metric, vectors, q, k, where)
    return found.tolist()


def load_rows(conn: psycopg.Connection, lo: int, hi: int) -> None:
    vectors, cats = dataset()
    with conn.cursor().copy("COPY items (id, cat, emb) FROM STDIN") as copy:
        for i in range(lo, hi):
            copy.write_row((i, int(cats[i]), text(vectors[i])))


def query(conn: psycopg.Connection, sql: str, *params) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


def explain(conn: psycopg.Connection, sql: str, *params) -> str:
    return "\n".join(r[0] for r in query(conn, "EXPLAIN " + sql, *params))


def psql(port: int, command: str) -> str:
    out = subprocess.run([PSQL, "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                          "-d", "postgres", "-P", "pager=off", "-c", command],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    return out.stdout + out.stderr


def sqlvec_check(data_dir: Path) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-m", "wire", "check", "--data-dir", str(data_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with the flat method, holding `items` indexed USING flat; restarted by the
    last tests (so `state["server"]` is always the running one)."""
    work = tmp_path_factory.mktemp("flat")
    state = {"server": start_server(work / "s0", module=MODULE), "work": work}
    with psycopg.connect(state["server"].conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int8 PRIMARY KEY, cat int, emb vector(8))")
        load_rows(conn, 0, ROWS)
        conn.execute("CREATE INDEX items_emb_flat ON items USING flat (emb vector_cosine_ops) "
                     "WITH (lists = 4)")
        load_rows(conn, ROWS, ROWS + FRESH)  # stays in the growing segment, searched exactly
    yield state
    assert state["server"].stop() == 0, state["server"].log()
    assert "Traceback" not in state["server"].log(), state["server"].log()


@pytest.fixture
def conn(server):
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        yield c


SEARCH = "SELECT id FROM items ORDER BY emb <=> %s LIMIT 5"
FILTERED = "SELECT id FROM items WHERE cat < 5 ORDER BY emb <=> %s LIMIT 5"


def test_create_index_using_flat_checks_what_flat_declares(conn):
    cases = [
        ("CREATE INDEX ON items USING flat (emb vector_ip_ops)", "42704",
         'operator class "vector_ip_ops" does not exist for access method "flat"'),
        ("CREATE INDEX ON items USING flat (cat)", "42704",
         'data type integer has no default operator class for access method "flat"'),
        ("CREATE INDEX ON items USING flat (emb) WITH (lists = 0)", "22023",
         'value 0 out of bounds for option "lists"'),
        ("CREATE INDEX ON items USING flat (emb) WITH (m = 16)", "22023",
         'unrecognized parameter "m"'),
        ("CREATE INDEX ON items USING flat (emb vector_cosine_ops) WITH (lists = 40)", "22023",
         "lists must be at most 32 for vector_cosine_ops"),
        ("CREATE INDEX ON items USING diskann (emb)", "0A000",
         'access method "diskann" is not supported'),
    ]
    for sql, sqlstate, message in cases:
        with pytest.raises(psycopg.Error) as exc:
            conn.execute(sql)
        assert (exc.value.sqlstate, exc.value.diag.message_primary) == (sqlstate, message), sql
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("CREATE INDEX ON items USING flat (emb) WITH (lists = 0)")
    assert exc.value.diag.message_detail == 'Valid values are between "1" and "64".'
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("CREATE INDEX ON items USING diskann (emb)")
    assert exc.value.diag.message_hint == \
        "sqlvec supports USING hnsw, ivfflat, flat for vectors and btree."


def test_search_goes_through_the_flat_index(conn):
    vectors, cats = dataset()
    for q in vectors[[3, 1500, 2050]] + 0.01:
        assert [r[0] for r in query(conn, SEARCH, text(q))] == truth(Metric.COSINE, q)
        assert [r[0] for r in query(conn, FILTERED, text(q))] == \
            truth(Metric.COSINE, q, cats < 5)
    plan = explain(conn, SEARCH, text(vectors[0]))
    assert f"flat candidates={ROWS}/{ROWS} k=5 probes=1" in plan, plan
    assert f"growing: exact candidates={FRESH}/{FRESH}" in plan, plan
    assert f"flat-postfilter candidates={ROWS // 2}/{ROWS}" in \
        explain(conn, FILTERED, text(vectors[0]))
    analyzed = explain(conn, "ANALYZE " + SEARCH, text(vectors[0]))
    assert "probes=1 rows=5" in analyzed and "fallback" not in analyzed, analyzed
    # The L2 search has no flat index for its metric: exact everywhere.
    assert "flat" not in explain(conn, "SELECT id FROM items ORDER BY emb <-> %s LIMIT 5",
                                 text(vectors[0]))


def test_flat_setting_is_a_setting_like_hnsw_ef_search(conn):
    vectors, _ = dataset()
    assert query(conn, "SHOW flat.probes") == [("1",)]
    conn.execute("SET flat.probes = 7")
    assert "probes=7" in explain(conn, SEARCH, text(vectors[0]))
    assert query(conn, "SELECT setting, min_val, max_val, source FROM pg_settings "
                       "WHERE name = 'flat.probes'") == [("7", "1", "64", "session")]
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("SET flat.probes = 0")
    assert (exc.value.sqlstate, exc.value.diag.message_primary) == (
        "22023", '0 is outside the valid range for parameter "flat.probes" (1 .. 64)')
    conn.execute("RESET flat.probes")
    assert query(conn, "SHOW flat.probes") == [("1",)]


def test_catalogs_describe_the_flat_method(conn, server):
    assert query(conn, "SELECT oid, amtype FROM pg_am WHERE amname = 'flat'") == [(9700, "i")]
    assert query(conn, "SELECT o.opcname, o.opcdefault, t.typname FROM pg_opclass o "
                       "JOIN pg_am a ON a.oid = o.opcmethod JOIN pg_type t ON t.oid = o.opcintype "
                       "WHERE a.amname = 'flat' ORDER BY 1") == [
        ("vector_cosine_ops", False, "vector"), ("vector_l2_ops", True, "vector")]
    assert query(conn, "SELECT a.amname, pg_get_indexdef(c.oid) FROM pg_class c "
                       "JOIN pg_am a ON a.oid = c.relam WHERE c.relname = 'items_emb_flat'") == [
        ("flat", "CREATE INDEX items_emb_flat ON public.items USING flat "
                 "(emb vector_cosine_ops) WITH (lists='4')")]
    (indclass,) = query(conn, "SELECT i.indclass::text FROM pg_index i JOIN pg_class c "
                              "ON c.oid = i.indexrelid WHERE c.relname = 'items_emb_flat'")
    assert indclass == ("9703",)  # flat's vector_cosine_ops
    rows = query(conn, "SELECT indexname FROM sqlvec_indexes WHERE tablename = 'items'")
    assert rows and {r[0] for r in rows} == {"items_emb_flat"}
    if PSQL is None:
        return
    port = server["server"].port
    described = psql(port, r"\d items")
    assert """    "items_emb_flat" flat (emb vector_cosine_ops) WITH (lists='4')""" in described, \
        described
    listed = psql(port, r"\di")
    assert any("items_emb_flat" in line and "items" in line for line in listed.splitlines()), \
        listed


def index_files(data_dir: Path) -> list[str]:
    return sorted(glob.glob(str(data_dir / "postgres" / "tables" / "*" / "seg-*.flat")))


def restart(server) -> None:
    old = server["server"]
    assert old.stop() == 0, old.log()
    assert "Traceback" not in old.log(), old.log()
    work = server["work"] / f"s{len(list(server['work'].iterdir()))}"
    server["server"] = start_server(work, module=MODULE, data_dir=old.data_dir)


def test_a_restart_loads_the_saved_index(server):
    vectors, _ = dataset()
    files = index_files(server["server"].data_dir)
    assert len(files) == 1
    saved = os.stat(files[0]).st_mtime_ns
    restart(server)
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        q = vectors[77] + 0.01
        assert [r[0] for r in query(c, SEARCH, text(q))] == truth(Metric.COSINE, q)
        assert "flat candidates=" in explain(c, SEARCH, text(q))
    assert index_files(server["server"].data_dir) == files
    assert os.stat(files[0]).st_mtime_ns == saved  # loaded, not rebuilt
    assert "rebuilding" not in server["server"].log()


def test_sqlvec_check_covers_flat_files_and_a_damaged_one_is_rebuilt(server):
    vectors, _ = dataset()
    data_dir = server["server"].data_dir
    assert server["server"].stop() == 0
    code, out = sqlvec_check(data_dir)
    assert code == 0 and "1 index file" in out, out
    (path,) = index_files(data_dir)
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    code, out = sqlvec_check(data_dir)
    assert code == 1, out
    assert 'FLAT index file of index "items_emb_flat" of table "items" is damaged (CRC ' \
           "mismatch" in out, out
    server["server"] = start_server(server["work"] / "after-damage", module=MODULE,
                                    data_dir=data_dir)
    with psycopg.connect(server["server"].conninfo(), autocommit=True) as c:
        q = vectors[5] + 0.01
        assert [r[0] for r in query(c, SEARCH, text(q))] == truth(Metric.COSINE, q)
        deadline = time.monotonic() + 60
        while query(c, "SELECT state FROM sqlvec_indexes") != [("ready",)]:
            assert time.monotonic() < deadline, "the damaged index was not rebuilt"
            time.sleep(0.1)
        assert "flat candidates=" in explain(c, SEARCH, text(q))
    assert "rebuilding it from the segment" in server["server"].log()
    assert sqlvec_check(data_dir)[0] == 0


# In process: compaction rebuilds the index of the merged segment ------------------------------

@pytest.fixture
def flat_registered():
    access_methods.register(FlatIndex)
    try:
        yield
    finally:
        access_methods.unregister("flat")


def test_compaction_builds_the_flat_index_of_the_merged_segment(tmp_path, flat_registered):
    from sqlvec.database import Database
    from sqlvec.storage.store import StoreOptions

    vectors, _ = dataset()
    with Database.open(str(tmp_path), options=StoreOptions(seal_rows=250,
                                                           background=False)) as db:
        s = db.connect()
        s.execute_one("CREATE TABLE items (id int8 PRIMARY KEY, cat int, emb vector(8))")
        s.execute_one("CREATE INDEX items_emb_flat ON items USING flat (emb)")
        t = db.table("items")
        for lo in range(0, 1_000, 250):  # four small sealed segments, each indexed as it seals
            t.insert({"id": np.arange(lo, lo + 250), "cat": np.zeros(250, np.int32),
                      "emb": vectors[lo:lo + 250]})
        assert len(t.snapshot().sealed) == 4
        assert t.compact() == 1
        (view,) = t.snapshot().sealed
        assert isinstance(view.data.index("items_emb_flat"), FlatIndex)
        merged = f"seg-{view.data.id:08d}.*.flat"  # the old segments' files go with old manifests
        assert len(glob.glob(str(tmp_path / "postgres" / "tables" / "*" / merged))) == 1
        q = vectors[10] + 0.01
        plan = "\n".join(r[0] for r in s.execute_one(
            f"EXPLAIN SELECT id FROM items ORDER BY emb <-> '{text(q)}' LIMIT 5").rows())
        assert f"segment {view.data.id}: flat candidates=1000/1000" in plan, plan
        got = s.execute_one(f"SELECT id FROM items ORDER BY emb <-> '{text(q)}' LIMIT 5").rows()
        assert [r[0] for r in got] == top_k(Metric.L2, vectors[:1_000], q, 5)[0].tolist()


if __name__ == "__main__":  # the server the tests above start: the engine plus `flat`
    from wire.cli import main

    access_methods.register(FlatIndex)
    sys.exit(main())
