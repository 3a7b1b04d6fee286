"""The minutiae matcher separates mates from non-mates; FingerIndex enrols, searches, removes, persists."""

from __future__ import annotations

import pytest

from matcher.finger.iso19794 import from_iso, to_iso
from matcher.finger.index import FingerIndex
from matcher.finger.matching import match


def test_genuine_pairs_beat_impostor_pairs(db1_templates):
    t = db1_templates
    genuine = [match(t[(f, a)], t[(f, b)]) for f in (101, 102) for a, b in ((1, 2), (1, 3), (2, 3))]
    impostor = [match(t[(101, a)], t[(102, b)]) for a in (1, 2, 3) for b in (1, 2, 3)]
    assert min(genuine) > max(impostor)


def test_iso_round_trip_matches_at_the_same_score(db1_templates):
    a, b = db1_templates[(101, 1)], db1_templates[(101, 2)]
    assert match(from_iso(to_iso(a)), from_iso(to_iso(b))) == match(a, b)


def test_index_enrol_search_remove_save_load(db1_templates, tmp_path):
    t = db1_templates
    index = FingerIndex(shortlist=5)
    index.set_subject("alice", [(1, t[(101, 1)])], sequence=1)
    index.set_subject("bob", [(2, t[(102, 1)]), (3, t[(102, 2)])], sequence=2)
    assert index.size == 3 and index.subjects == 2
    hits = index.search(t[(101, 3)], top=2)
    assert hits[0][0] == "alice" and hits[0][2] == 1
    assert index.search(t[(102, 3)], top=1)[0][0] == "bob"

    path = tmp_path / "finger.idx"
    index.save(path)
    loaded = FingerIndex.load(path, shortlist=5)
    assert loaded.size == 3 and loaded.applied_sequence == 2
    assert loaded.search(t[(101, 3)], top=1)[0][:1] == ("alice",)
    assert loaded.search(t[(101, 3)], top=1)[0][1] == pytest.approx(hits[0][1])

    assert index.remove_subject("alice", sequence=3) == 1
    assert all(h[0] != "alice" for h in index.search(t[(101, 3)], top=5))
    index.set_subject("bob", [(2, t[(102, 1)])])  # replace: idempotent, template 3 gone
    assert index.size == 1


def test_a_retrieval_rebuild_blocks_no_search_and_loses_no_write(db1_templates, monkeypatch):
    """The IVF rebuild runs off the lock; writes made meanwhile are redone in the new index."""
    import threading

    from matcher.finger import index as finger_index

    t = db1_templates
    release, started = threading.Event(), threading.Event()
    build = finger_index._trained_ivf

    def slow_build(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return build(*args, **kwargs)

    monkeypatch.setattr(finger_index, "_trained_ivf", slow_build)
    # Shortlist ≥ the 13 subjects left: twelve identical copies of 101 would otherwise crowd
    # "late" out of the vote, and this test is about writes, not retrieval.
    index = FingerIndex(shortlist=16, ivf_threshold=600)
    tid = 0
    for copy in range(12):  # ≈ 40 cylinders per template: the threshold is crossed halfway
        for finger in (101, 102):
            index.set_subject(f"{finger}-{copy}", [(tid, t[(finger, 1)])])
            tid += 1
    assert started.wait(10) and index.rebuilding and index.retrieval_type == "BinaryFlat"
    # While the build waits: searches answer, enrolments and deletions go through.
    assert index.search(t[(101, 3)], top=1)[0][0].startswith("101-")
    index.set_subject("late", [(1000, t[(102, 2)])])
    for copy in range(12):
        index.remove_subject(f"102-{copy}")
    release.set()
    index.wait_for_build(30)
    assert not index.rebuilding and index.retrieval_type == "BinaryIVF"
    assert index.minutiae_count() == index.stored_minutiae()
    assert index.search(t[(102, 3)], top=1)[0][0] == "late"
    assert not any(h[0].startswith("102-") for h in index.search(t[(102, 3)], top=20))


def test_deletions_from_the_ivf_retrieval_index_keep_every_other_hit_labelled(db1_templates):
    """Removing from the binary IVF must not shift the ids of what stays (FAISS's IndexIDMap did)."""
    t = db1_templates
    index = FingerIndex(shortlist=16, ivf_threshold=600, background_build=False)
    tid = 0
    for copy in range(12):
        for finger in (101, 102):
            index.set_subject(f"{finger}-{copy}", [(tid, t[(finger, 1)])])
            tid += 1
    assert index.retrieval_type == "BinaryIVF"
    index.set_subject("late", [(1000, t[(102, 2)])])
    for copy in range(12):
        index.remove_subject(f"102-{copy}")
    assert index.minutiae_count() == index.stored_minutiae()
    hits = index.search(t[(102, 3)], top=20)
    assert hits[0][0] == "late" and hits[0][2] == 1000
    assert not any(h[0].startswith("102-") for h in hits)
    assert index.search(t[(101, 3)], top=1)[0][0].startswith("101-")
