"""Cython kernels vs their NumPy references on identify-path shapes."""

from __future__ import annotations

import itertools

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


@pytest.mark.parametrize("impl", ["native", "numpy"])
def test_rescore(benchmark, figures, impl):
    """Re-scoring 40 IVF candidates of one query (d = 512) against float32 vectors in 100,000 slots.

    Each round re-scores other candidates, as each query does: their rows (200 MB in all) come
    from memory, not from the cache a repeated call would warm.
    """
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((100_000, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    slot_of = rng.permutation(100_000).astype(np.int64)
    query = vectors[:1].copy()
    rounds = [rng.choice(100_000, (1, 40), replace=False).astype(np.int64) for _ in range(4096)]
    fn = native.rescore if impl == "native" else reference.rescore
    turns = itertools.cycle(rounds)
    out = benchmark(lambda: fn(query, next(turns), slot_of, vectors, 20))
    record(figures, f"rescore_1x40_{impl}", benchmark)
    assert out[0].shape == (1, 20)
    for candidates in rounds[:50]:
        np.testing.assert_allclose(fn(query, candidates, slot_of, vectors, 20)[0],
                                   reference.rescore(query, candidates, slot_of, vectors, 20)[0], atol=1e-5)
