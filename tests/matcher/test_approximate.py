"""Approximate indexes: IVF-PQ fast scan + exact re-scoring, built past a size threshold without blocking searches."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import matcher.index as index_module
from matcher.backends import ApproximateBackend
from matcher.index import VectorIndex
from matcher.policy import IndexPolicy
from tests.conftest import noisy, unit_vectors

DIM = 64


def policy(**overrides) -> IndexPolicy:
    """Probing half of the lists (at 8,000 templates: 22 of 44, agreement 0.9935), so that the index
    is searched as an approximate one: the production floor of 100 probes would scan every list."""
    return IndexPolicy(**{"probe_fraction": 0.5, "min_probes": 8, **overrides})


def identities(n: int, per: int = 2, seed: int = 0):
    """``n`` identities with ``per`` noisy samples each (sample-to-sample cosine ≈ 0.6) and one held-out probe each."""
    centres = unit_vectors(n, DIM, seed)
    samples = noisy(np.repeat(centres, per + 1, axis=0), sigma=0.8, seed=seed + 1).reshape(n, per + 1, DIM)
    return samples[:, :per].reshape(-1, DIM), samples[:, per]


def fill(index: VectorIndex, vectors: np.ndarray, per: int = 2, first_id: int = 1) -> None:
    with index.bulk_loading():
        ids = np.arange(vectors.shape[0], dtype=np.int64) + first_id
        index.add_many([f"p{i // per}" for i in range(vectors.shape[0])], ids, vectors)


def exact_rank1(vectors: np.ndarray, probes: np.ndarray, per: int = 2) -> list[str]:
    return [f"p{int(np.argmax(vectors @ p)) // per}" for p in probes]


def test_index_turns_approximate_past_the_threshold_and_agrees_with_exact_search():
    vectors, probes = identities(4000)
    index = VectorIndex(DIM, "m", policy(approximate_from=5000, background_build=False))
    fill(index, vectors)
    assert index.index_type.startswith("IVF") and index.size == 8000
    hits = index.search(probes, 5)
    agreement = np.mean([h.subject_ids[0] == e for h, e in zip(hits, exact_rank1(vectors, probes))])
    assert agreement >= 0.99, agreement
    # Re-scored exactly: each similarity is the float32 inner product with one of the subject's
    # templates (the best one the probed lists held), not the 8-bit approximation.
    for probe, hit in zip(probes[:50], hits[:50]):
        for subject, similarity in zip(hit.subject_ids, hit.similarities):
            own = vectors[[2 * int(subject[1:]), 2 * int(subject[1:]) + 1]] @ probe
            assert np.min(np.abs(own - similarity)) < 1e-5


def test_below_the_threshold_or_with_it_off_the_index_stays_exact():
    vectors, _ = identities(1000)
    for chosen in (policy(approximate_from=5000, background_build=False), policy(approximate_from=0)):
        index = VectorIndex(DIM, "m", chosen)
        fill(index, vectors)
        assert index.index_type == "IDMap2,Flat"


def test_deleted_subjects_never_come_back_and_replacements_are_found():
    vectors, probes = identities(3000)
    approximate = VectorIndex(DIM, "m", policy(approximate_from=1000, background_build=False))
    exact = VectorIndex(DIM, "m", policy(approximate_from=0))
    fresh, fresh_probes = identities(200, seed=9)
    deleted = {f"p{i}" for i in range(0, 3000, 3)}
    for index in (approximate, exact):
        fill(index, vectors)
        for subject in deleted:
            index.remove_subject(subject)
        # Freed slots are reused by the new templates.
        for j in range(200):
            index.set_subject(f"new{j}", np.array([100_000 + 2 * j, 100_001 + 2 * j]), fresh[2 * j : 2 * j + 2])
    found = approximate.search(np.vstack([probes, fresh_probes]), 10)
    assert not deleted & {s for h in found for s in h.subject_ids}
    # Agreement with exact search where the probe's own subject is still enrolled (others are near-ties).
    everything = np.vstack([probes[[i % 3 != 0 for i in range(3000)]], fresh_probes])
    found = approximate.search(everything, 1)
    agreement = np.mean([a.subject_ids[0] == e.subject_ids[0] for a, e in zip(found, exact.search(everything, 1))])
    assert agreement >= 0.99, agreement
    assert approximate.subject_vectors("new7") == pytest.approx(fresh[14:16])


def test_a_background_build_blocks_no_search_and_loses_no_write(monkeypatch):
    vectors, probes = identities(3000)
    release, started = threading.Event(), threading.Event()
    train = ApproximateBackend.train

    def slow_train(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return train(*args, **kwargs)

    monkeypatch.setattr(index_module.ApproximateBackend, "train", staticmethod(slow_train))
    index = VectorIndex(DIM, "m", policy(approximate_from=5000))
    fill(index, vectors)
    assert started.wait(10)
    assert index.rebuilding  # GalleryStats shows it: operators and benchmarks wait for it to end
    # While the build waits: searches answer (exactly), enrolments and deletions go through.
    assert index.search(probes[:20], 1)[0].subject_ids[0] == "p0"
    extra, extra_probes = identities(1200, seed=4)  # > 1,000 journaled writes: replayed partly before the swap
    for j in range(1200):
        index.set_subject(f"late{j}", np.array([50_000 + 2 * j, 50_001 + 2 * j]), extra[2 * j : 2 * j + 2])
    for i in range(10):
        index.remove_subject(f"p{i}")
    assert index.index_type == "IDMap2,Flat"
    release.set()
    index.wait_for_build(60)
    assert index.index_type.startswith("IVF") and index.builds == 1 and not index.rebuilding
    assert index.size == 6000 + 2400 - 20
    assert np.mean([h.subject_ids[0] == f"late{j}" for j, h in enumerate(index.search(extra_probes, 1))]) >= 0.95
    assert not {f"p{i}" for i in range(10)} & {s for h in index.search(probes[:10], 10) for s in h.subject_ids}


def test_the_index_is_retrained_once_it_has_doubled():
    vectors, probes = identities(6000)
    index = VectorIndex(DIM, "m", policy(approximate_from=4000, background_build=False))
    fill(index, vectors[:4000])
    assert index.builds == 1
    with index.bulk_loading():
        index.add_many([f"p{i // 2}" for i in range(4000, 12000)], np.arange(4001, 12001), vectors[4000:])
    assert index.builds == 2 and index.size == 12000
    hits = index.search(probes, 1)
    assert np.mean([h.subject_ids[0] == e for h, e in zip(hits, exact_rank1(vectors, probes))]) >= 0.99


@pytest.mark.parametrize("on_disk", [True, False])
def test_snapshot_plus_replay_equals_the_live_index(tmp_path, on_disk):
    """A snapshot refers to the vector file; slots reused after it are rewritten by the replayed tail."""
    vectors, probes = identities(3000)
    chosen = policy(approximate_from=1000, background_build=False)
    vector_dir = tmp_path / "vectors" if on_disk else None
    live = VectorIndex(DIM, "m", chosen, vector_dir)
    fill(live, vectors)
    live.save(tmp_path / "face.npz")
    tail_vectors, tail_probes = identities(100, seed=7)

    def tail(index: VectorIndex) -> None:
        for j in range(100):  # delete then enrol: the new templates take the freed slots
            index.remove_subject(f"p{j}", sequence=10 + 2 * j)
            index.set_subject(f"t{j}", np.array([90_000 + 2 * j, 90_001 + 2 * j]), tail_vectors[2 * j : 2 * j + 2], 11 + 2 * j)

    tail(live)
    restored = VectorIndex.load(tmp_path / "face.npz", DIM, "m", chosen, vector_dir)  # as after kill -9
    assert restored is not None and restored.index_type == live.index_type
    tail(restored)
    everything = np.vstack([probes, tail_probes])
    for a, b in zip(live.search(everything, 5), restored.search(everything, 5)):
        assert a.subject_ids == b.subject_ids
        assert a.similarities == pytest.approx(b.similarities)


def test_a_snapshot_whose_vector_file_is_gone_is_refused(tmp_path):
    vectors, _ = identities(2000)
    chosen = policy(approximate_from=1000, background_build=False)
    index = VectorIndex(DIM, "m", chosen, tmp_path / "vectors")
    fill(index, vectors)
    index.save(tmp_path / "face.npz")
    (vector_file,) = (tmp_path / "vectors").glob("*.vectors")
    vector_file.unlink()
    assert VectorIndex.load(tmp_path / "face.npz", DIM, "m", chosen, tmp_path / "vectors") is None


def test_each_build_writes_its_own_vector_file_and_snapshots_clear_the_old_ones(tmp_path):
    """A rebuilt index must not rewrite the file an older snapshot names; the snapshot after it removes that file."""
    vectors, _ = identities(2000)
    chosen = policy(approximate_from=1000, background_build=False)
    first = VectorIndex(DIM, "m", chosen, tmp_path / "vectors")
    fill(first, vectors)
    first.save(tmp_path / "face.npz")
    (old,) = (tmp_path / "vectors").glob("*.vectors")
    second = VectorIndex(DIM, "m", chosen, tmp_path / "vectors")  # e.g. a rebuild from the store
    fill(second, vectors)
    assert len(list((tmp_path / "vectors").glob("*.vectors"))) == 2
    assert VectorIndex.load(tmp_path / "face.npz", DIM, "m", chosen, tmp_path / "vectors") is not None
    second.save(tmp_path / "face.npz")
    assert list((tmp_path / "vectors").glob("*.vectors")) != [old] and not old.exists()


def test_compressed_storage_holds_a_fraction_of_the_memory(tmp_path):
    vectors, _ = identities(5000)
    exact = VectorIndex(DIM, "m", policy(approximate_from=0))
    approximate = VectorIndex(DIM, "m", policy(approximate_from=1000, background_build=False), tmp_path / "vectors")
    fill(exact, vectors)
    fill(approximate, vectors)
    assert approximate.memory_bytes() < 0.5 * exact.memory_bytes()
