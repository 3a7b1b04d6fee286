"""The Cython kernels agree with their NumPy references, edge cases included."""

from __future__ import annotations

import numpy as np
import pytest

import native
from native import reference


def ranked_hits(rng, rows, k, subjects):
    sims = -np.sort(-rng.random((rows, k), dtype=np.float32), axis=1)
    codes = rng.integers(-1, subjects, (rows, k)).astype(np.int64)
    return sims, codes


@pytest.mark.parametrize("rows, k, subjects, top", [(1, 1, 1, 1), (3, 50, 5, 10), (64, 200, 40, 10), (8, 1000, 900, 300), (2, 40, 1000, 0)])
def test_best_per_subject_matches_reference(rows, k, subjects, top):
    rng = np.random.default_rng(rows * k + top)
    sims, codes = ranked_hits(rng, rows, k, subjects)
    got, expected = native.best_per_subject(sims, codes, top), reference.best_per_subject(sims, codes, top)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("rows, k, templates", [(1, 20, 50), (8, 100, 300), (3, 10, 0)])
def test_best_per_subject_through_a_template_map_matches_reference(rows, k, templates):
    rng = np.random.default_rng(rows + k)
    sims = -np.sort(-rng.random((rows, k), dtype=np.float32), axis=1)
    ids = rng.integers(-1, templates + 5, (rows, k)).astype(np.int64)  # −1 padding and ids past the map
    code_of = rng.integers(-1, max(templates // 2, 1), templates).astype(np.int64)  # −1: a removed template
    got, expected = native.best_per_subject(sims, ids, 10, code_of), reference.best_per_subject(sims, ids, 10, code_of)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_best_per_subject_edges():
    sims = np.array([[0.9, 0.8, 0.7, 0.6]], dtype=np.float32)
    codes = np.array([[-1, -1, -1, -1]], dtype=np.int64)
    out_sims, out_codes = native.best_per_subject(sims, codes, 3)
    assert out_codes.tolist() == [[-1, -1, -1]] and np.all(np.isneginf(out_sims))
    codes = np.array([[7, 7, 2**40, 7]], dtype=np.int64)
    out_sims, out_codes = native.best_per_subject(sims, codes, 3)
    assert out_codes.tolist() == [[7, 2**40, -1]]
    assert out_sims[0, :2].tolist() == pytest.approx([0.9, 0.7])
    empty = native.best_per_subject(np.empty((0, 5), np.float32), np.empty((0, 5), np.int64), 3)
    assert empty[0].shape == (0, 3)
    with pytest.raises(ValueError):
        native.best_per_subject(sims, codes[:, :2], 3)


@pytest.mark.parametrize("n, k", [(0, 3), (1, 1), (10, 3), (10, 10), (10, 20), (10_000, 50), (500, 499)])
def test_top_k_matches_reference(n, k):
    rng = np.random.default_rng(n + k)
    scores = rng.random(n, dtype=np.float32)
    scores[::3] = 0.5  # ties must keep input order
    np.testing.assert_array_equal(native.top_k(scores, k), reference.top_k(scores, k))


def test_top_k_with_infinities():
    scores = np.array([-np.inf, 1.0, np.inf, 1.0, -np.inf], dtype=np.float32)
    assert native.top_k(scores, 5).tolist() == reference.top_k(scores, 5).tolist() == [2, 1, 3, 0, 4]


@pytest.mark.parametrize("n, width, k", [(1, 40, 20), (8, 80, 20), (3, 10, 30), (2, 5, 0)])
def test_rescore_matches_reference(n, width, k):
    rng = np.random.default_rng(n * width + k)
    vectors = rng.standard_normal((300, 32)).astype(np.float32)
    slot_of = np.full(500, -1, dtype=np.int64)
    live = rng.choice(500, 300, replace=False)
    slot_of[live] = rng.permutation(300)
    queries = rng.standard_normal((n, 32)).astype(np.float32)
    # live ids, removed ids (no slot), −1 padding and ids past the map
    candidates = rng.choice(np.r_[live, [-1, -1, 499, 10_000]], (n, width)).astype(np.int64)
    sims, ids = native.rescore(queries, candidates, slot_of, vectors, k)
    ref_sims, ref_ids = reference.rescore(queries, candidates, slot_of, vectors, k)
    np.testing.assert_allclose(sims, ref_sims, rtol=1e-5, atol=1e-5)
    same_score = np.isclose(sims, ref_sims, atol=1e-5)
    assert np.all((ids == ref_ids) | same_score)  # the order of near-equal floats may differ
    with np.errstate(invalid="ignore"):  # −inf − −inf in the padding
        assert np.all(np.diff(sims, axis=1)[np.isfinite(sims[:, 1:])] <= 0)


def test_rescore_refuses_mismatched_shapes():
    with pytest.raises(ValueError):
        native.rescore(np.zeros((2, 4), np.float32), np.zeros((3, 5), np.int64), np.zeros(5, np.int64), np.zeros((5, 4), np.float32), 3)
    with pytest.raises(ValueError):
        native.rescore(np.zeros((1, 4), np.float32), np.zeros((1, 5), np.int64), np.zeros(5, np.int64), np.zeros((5, 8), np.float32), 3)
