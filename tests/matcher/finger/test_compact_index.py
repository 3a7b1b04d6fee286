"""The compact FingerIndex (rows + cylinders once, in FAISS) answers exactly as the one it replaced.

``legacy_index.py`` is the previous FingerIndex verbatim (PreparedTemplate objects, cylinders in
FAISS and again in Python).  Both get the same writes on real FVC2002 templates (enrolments,
removals, replacements, flat and trained IVF, rebuilds at doublings) and must return the same
ranked (subject, score, template) lists for every probe, and hold the same inverted lists in the
same order.  Snapshots read the trained IVF back without training.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from matcher.finger.descriptors import prepare
from matcher.finger.index import FingerIndex
from tests.matcher.finger.legacy_index import FingerIndex as LegacyIndex


@pytest.fixture(scope="module")
def real_prints(leader_dir, finger_data):
    """(label, impression, PreparedTemplate) of FVC2002 DB1_B and DB2_B, extracted once (cached under /tmp)."""
    from benchmarks.evaluation.growth import real_set
    from matcher.finger.iso19794 import from_iso

    prints = []
    for name in ("fvc2002_db1_b", "fvc2002_db2_b"):
        found = real_set(name, finger_data.parent)
        prints += [(label, imp, prepare(from_iso(r))) for label, imp, r in zip(found.labels, found.impressions, found.records)]
    return prints


def _pair(threshold: int):
    return FingerIndex(ivf_threshold=threshold, background_build=False), LegacyIndex(ivf_threshold=threshold, background_build=False)


def _same_answers(new: FingerIndex, old: LegacyIndex, probes) -> None:
    for p in probes:
        assert new.search(p, 10) == old.search(p, 10)
    assert new.minutiae_count() == old.minutiae_count() == new.stored_minutiae()


def _same_lists(new: FingerIndex, old: LegacyIndex) -> None:
    a, b = new._retrieval.index, old._faiss
    if not new._retrieval.ivf:
        return
    assert a.nlist == b.nlist
    for list_no in range(a.nlist):
        size = a.invlists.list_size(list_no)
        assert size == b.invlists.list_size(list_no)
        if size:
            ids_a = faiss.rev_swig_ptr(a.invlists.get_ids(list_no), size)
            ids_b = faiss.rev_swig_ptr(b.invlists.get_ids(list_no), size)
            assert np.array_equal(ids_a, ids_b)


@pytest.mark.parametrize("threshold", [10**9, 1000])
def test_same_ranked_candidates_and_scores_as_before(real_prints, threshold):
    new, old = _pair(threshold)
    enrolled = [(k, label, p) for k, (label, imp, p) in enumerate(real_prints) if imp <= 2]
    probes = [p for label, imp, p in real_prints if imp > 2]
    for k, label, p in enrolled:
        for index in (new, old):
            index.set_subject(f"{label}-{k % 3}", [(k, p)])
    assert new.retrieval_type == old.retrieval_type == ("BinaryFlat" if threshold > 10**6 else "BinaryIVF")
    _same_answers(new, old, probes)
    _same_lists(new, old)
    for k, label, p in enrolled[::5]:  # removals: FAISS's swap-with-last replayed on the lists touched
        for index in (new, old):
            index.remove_subject(f"{label}-{k % 3}")
    _same_answers(new, old, probes)
    _same_lists(new, old)
    for k, label, p in enrolled[1::7]:  # replacements, two templates each, and the retrains they bring
        for index in (new, old):
            index.set_subject(f"{label}-{k % 3}", [(k, p), (k + 1000, p)])
    _same_answers(new, old, probes)
    _same_lists(new, old)
    for k, label, p in enrolled[2:5]:  # not removed, not replaced
        assert np.array_equal(new.prepared(k).bits, p.bits) and np.array_equal(new.prepared(k).valid, p.valid)
        assert np.array_equal(new.prepared(k).x, p.x) and np.array_equal(new.prepared(k).theta, p.theta)


def test_bulk_add_equals_one_by_one(real_prints):
    one, bulk = FingerIndex(ivf_threshold=1000, background_build=False), FingerIndex(ivf_threshold=1000, background_build=False)
    items = [(f"{label}-{k}", k, p) for k, (label, imp, p) in enumerate(real_prints) if imp <= 3]
    for subject, k, p in items:
        one.add(subject, [(k, p)])
    with bulk.bulk_loading():
        for start in range(0, len(items), 17):
            bulk.add_many(items[start : start + 17])
        assert bulk.retrieval_type == "BinaryFlat"  # deferred: no training inside the block
    assert bulk.retrieval_type == one.retrieval_type == "BinaryIVF"
    probes = [p for label, imp, p in real_prints if imp > 3]
    # One IVF trained on everything, against one retrained at each doubling: same candidates for mates.
    assert bulk.minutiae_count() == one.minutiae_count() and bulk.size == one.size
    flat_one, flat_bulk = FingerIndex(background_build=False), FingerIndex(background_build=False)
    for subject, k, p in items:
        flat_one.add(subject, [(k, p)])
    flat_bulk.add_many(items)
    for p in probes:
        assert flat_bulk.search(p, 10) == flat_one.search(p, 10)


def test_a_reloaded_ivf_answers_identically_without_training(real_prints, tmp_path, monkeypatch):
    index = FingerIndex(ivf_threshold=1000, background_build=False)
    for k, (label, imp, p) in enumerate(real_prints):
        if imp <= 3:
            index.set_subject(f"{label}-{k}", [(k, p)], sequence=k + 1)
    index.remove_subject(f"{real_prints[0][0]}-0")
    assert index.retrieval_type == "BinaryIVF"
    probes = [p for label, imp, p in real_prints if imp > 3]
    before = [index.search(p, 10) for p in probes]
    index.save(tmp_path / "finger.npz")
    assert len(list(tmp_path.glob("finger.npz.*.ivf"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("a snapshot load must not train")

    monkeypatch.setattr(faiss.IndexBinaryIVF, "train", no_training)
    loaded = FingerIndex.load(tmp_path / "finger.npz", ivf_threshold=1000, background_build=False)
    assert loaded.retrieval_type == "BinaryIVF" and loaded.size == index.size and loaded.applied_sequence == index.applied_sequence
    assert [loaded.search(p, 10) for p in probes] == before
    # It stays writable: a removal and an addition after the load answer as on the original.
    for target in (index, loaded):
        target.remove_subject(f"{real_prints[8][0]}-8")
        target.set_subject("late", [(5000, probes[0])])
    assert [loaded.search(p, 10) for p in probes] == [index.search(p, 10) for p in probes]
    monkeypatch.undo()
    loaded.save(tmp_path / "finger.npz")  # a second save replaces the IVF file
    assert len(list(tmp_path.glob("finger.npz.*.ivf"))) == 1


def test_flat_snapshot_round_trip_and_compaction(real_prints, tmp_path):
    index = FingerIndex(background_build=False)
    for k, (label, imp, p) in enumerate(real_prints):
        if imp <= 3:
            index.set_subject(f"{label}-{k}", [(k, p)])
    for k, (label, imp, p) in list(enumerate(real_prints))[::4]:
        index.remove_subject(f"{label}-{k}")
    probes = [p for label, imp, p in real_prints if imp > 3]
    before = [index.search(p, 10) for p in probes]
    index.save(tmp_path / "flat.npz")
    loaded = FingerIndex.load(tmp_path / "flat.npz", background_build=False)
    assert [loaded.search(p, 10) for p in probes] == before
    index.compact()
    assert index._dead_rows == 0 and index._x.n == index.stored_minutiae()
    assert [index.search(p, 10) for p in probes] == before


@pytest.mark.parametrize("threshold", [10**9, 800])
def test_churn_with_automatic_compaction_answers_as_before(real_prints, threshold, monkeypatch):
    from matcher.finger import index as finger_index

    monkeypatch.setattr(finger_index, "COMPACT_AFTER_ROWS", 500)
    new, old = _pair(threshold)
    prepared = [p for _, _, p in real_prints[:80]]
    rng = np.random.default_rng(0)
    compactions = 0
    for step in range(300):
        k = int(rng.integers(60))
        subject = f"s{k % 25}"
        dead_before = new._dead_rows
        for index in (new, old):
            if step % 3 == 0:
                index.remove_subject(subject)
            else:
                index.set_subject(subject, [(step, prepared[k])])
        compactions += new._dead_rows < dead_before
    assert compactions > 0
    _same_answers(new, old, prepared[60:])
    _same_lists(new, old)


def test_a_snapshot_without_its_ivf_file_is_refused_not_fatal(real_prints, tmp_path):
    from matcher.finger.gallery_index import FingerGalleryIndex

    index = FingerIndex(ivf_threshold=1000, background_build=False)
    for k, (label, imp, p) in enumerate(real_prints[:40]):
        index.set_subject(f"{label}-{k}", [(k, p)])
    index.save(tmp_path / "finger.npz")
    (ivf,) = tmp_path.glob("finger.npz.*.ivf")
    ivf.write_bytes(ivf.read_bytes()[:100])
    with pytest.raises(ValueError):
        FingerIndex.load(tmp_path / "finger.npz")
    ivf.unlink()
    assert FingerGalleryIndex.load(tmp_path / "finger.npz", "iso19794-2:2005") is None  # the gallery rebuilds from the store
