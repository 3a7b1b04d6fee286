"""Cython kernels vs their NumPy references on identify-path shapes."""

from __future__ import annotations

import numpy as np
import pytest

import native
from benchmarks.conftest import record
from native import reference


def hits(rows, k, subjects, seed=0):
    rng = np.random.default_rng(seed)
    sims = -np.sort(-rng.random((rows, k), dtype=np.float32), axis=1)
    return sims, rng.integers(0, subjects, (rows, k)).astype(np.int64)


@pytest.mark.parametrize("impl", ["native", "numpy"])
@pytest.mark.parametrize("name, rows, k", [("collapse_1x40", 1, 40), ("collapse_32x100", 32, 100)])
def test_best_per_subject(benchmark, figures, impl, name, rows, k):
    sims, codes = hits(rows, k, subjects=k // 2)
    fn = native.best_per_subject if impl == "native" else reference.best_per_subject
    out = benchmark(fn, sims, codes, 10)
    record(figures, f"{name}_{impl}", benchmark)
    np.testing.assert_array_equal(out[1], reference.best_per_subject(sims, codes, 10)[1])


@pytest.mark.parametrize("impl", ["native", "numpy"])
def test_top_k(benchmark, figures, impl):
    scores = np.random.default_rng(1).random(3000, dtype=np.float32)
    fn = native.top_k if impl == "native" else reference.top_k
    out = benchmark(fn, scores, 10)
    record(figures, f"topk_3000_{impl}", benchmark)
    np.testing.assert_array_equal(out, reference.top_k(scores, 10))
