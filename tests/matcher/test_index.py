"""VectorIndex: exact search, per-subject collapse, removal, snapshots."""

from __future__ import annotations

import numpy as np

from matcher.index import VectorIndex
from tests.conftest import noisy, unit_vectors


def filled_index(n_subjects=200, per_subject=3, dim=64, seed=0):
    index = VectorIndex(dim, "m")
    vectors = unit_vectors(n_subjects * per_subject, dim, seed)
    for s in range(n_subjects):
        ids = np.arange(s * per_subject, (s + 1) * per_subject) + 1
        index.set_subject(f"s{s}", ids, vectors[ids - 1], sequence=s + 1)
    return index, vectors


def brute_force(index_vectors, owners, query, top):
    sims = index_vectors @ query
    best = {}
    for sim, owner in zip(sims, owners):
        best[owner] = max(best.get(owner, -2), sim)
    return sorted(best, key=lambda o: -best[o])[:top]


def test_search_returns_each_subjects_best_template_like_brute_force():
    index, vectors = filled_index()
    owners = [f"s{i // 3}" for i in range(len(vectors))]
    for query in noisy(vectors[::37], sigma=0.7, seed=3):
        hits = index.search(query[None], 10)[0]
        assert hits.subject_ids == brute_force(vectors, owners, query, 10)
        assert len(set(hits.subject_ids)) == 10
        assert np.all(np.diff(hits.similarities) <= 0)


def test_widening_finds_enough_subjects_when_one_subject_owns_many_templates():
    index = VectorIndex(16, "m")
    base = unit_vectors(1, 16, 5)
    crowd = noisy(np.repeat(base, 100, axis=0), sigma=0.05, seed=6)
    index.set_subject("crowd", np.arange(1, 101), crowd)
    others = unit_vectors(5, 16, 7)
    for i, v in enumerate(others):
        index.set_subject(f"o{i}", np.array([200 + i]), v[None])
    hits = index.search(base, 6)[0]
    assert hits.subject_ids[0] == "crowd" and sorted(hits.subject_ids[1:]) == [f"o{i}" for i in range(5)]


def test_set_subject_replaces_and_remove_deletes():
    index, vectors = filled_index(10, 2, 32)
    assert index.size == 20
    index.set_subject("s1", np.array([100]), vectors[:1])
    assert index.size == 19 and index.subject_vectors("s1").shape == (1, 32)
    assert index.remove_subject("s1") == 1 and index.size == 18
    assert index.remove_subject("s1") == 0
    assert "s1" not in index.search(vectors[:1], 10)[0].subject_ids


def test_empty_index_search():
    assert VectorIndex(8, "m").search(unit_vectors(2, 8), 5)[0].subject_ids == []


def test_snapshot_round_trip(tmp_path):
    index, vectors = filled_index(50, 2, 32)
    index.remove_subject("s3", sequence=77)
    path = tmp_path / "snap" / "face.npz"
    index.save(path)
    loaded = VectorIndex.load(path, 32, "m")
    assert loaded is not None and loaded.applied_sequence == 77 and loaded.size == index.size
    queries = noisy(vectors[:20], seed=9)
    for a, b in zip(index.search(queries, 5), loaded.search(queries, 5)):
        assert a.subject_ids == b.subject_ids
        np.testing.assert_allclose(a.similarities, b.similarities)
    assert VectorIndex.load(path, 32, "other-model") is None
    assert VectorIndex.load(tmp_path / "missing.npz", 32, "m") is None
    path.write_bytes(b"garbage")
    assert VectorIndex.load(path, 32, "m") is None
