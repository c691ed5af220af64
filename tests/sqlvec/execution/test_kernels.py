"""The executor's shared kernels (sqlvec/execution/kernels.py): a long sort runs in buckets that
give the order of one sort and check for interrupts between them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.errors import QueryCanceled
from sqlvec.execution import kernels
from sqlvec.execution.context import ExecContext
from sqlvec.execution.values import FLOAT8, INT8, TEXT


def test_a_bucketed_sort_gives_the_order_of_a_single_sort(monkeypatch):
    monkeypatch.setattr(kernels, "SORT_RUN_ROWS", 500)
    rng = np.random.default_rng(8)
    for trial in range(20):
        n = int(rng.integers(501, 4000))
        ints = pa.array(rng.integers(0, 6, n), mask=rng.random(n) < 0.1)
        floats = pa.array(rng.choice([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf], n),
                          mask=rng.random(n) < 0.1)
        texts = pa.array([f"s{x}" for x in rng.integers(0, 40, n)], mask=rng.random(n) < 0.1)
        keys = [(ints, INT8), (floats, FLOAT8), (texts, TEXT)]
        chosen = [keys[i] for i in rng.permutation(3)[:int(rng.integers(1, 4))]]
        spec = [(v, t, bool(rng.integers(2)), bool(rng.integers(2))) for v, t in chosen]
        whole = kernels.sort_indices(spec, n).to_numpy()
        bucketed = kernels.sort_indices(spec, n, ExecContext()).to_numpy()
        assert (whole == bucketed).all(), trial


def test_a_bucketed_sort_checks_for_interrupts(monkeypatch):
    monkeypatch.setattr(kernels, "SORT_RUN_ROWS", 100)
    ctx = ExecContext()
    ctx.cancel.set()
    values = pa.array(np.arange(1000))
    with pytest.raises(QueryCanceled, match="user request"):
        kernels.sort_indices([(values, INT8, False, False)], 1000, ctx)
