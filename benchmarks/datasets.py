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
