"""Galleries as a plain library (no gRPC): enrol, identify, verify, remove, restart."""

from __future__ import annotations

import time

import pytest

from matcher.errors import DeadlineExceeded, InvalidArgument
from matcher.galleries import EnrollItem, Galleries
from matcher.gallery import Gallery
from matcher.store.base import GalleryRecord, ModalitySpec
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Modality, Template
from tests.conftest import noisy, unit_vectors

DIM = 32
SPEC = ModalitySpec(Modality.FACE, "m", DIM)


def face(v):
    return Template(Modality.FACE, "m", v)


def open_galleries(path):
    return Galleries(SQLiteStore(path / "s.sqlite3"), path / "snapshots")


def test_library_round_trip_and_restart(tmp_path):
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    vectors = unit_vectors(100, DIM, 1)
    outcomes = galleries.enroll([EnrollItem("g", f"s{i}", (face(v),)) for i, v in enumerate(vectors)])
    assert all(o.result.sequence for o in outcomes)
    probe = noisy(vectors[:1], sigma=0.3, seed=2)[0]
    assert galleries.identify([face(probe)], ["g"], top=1)[0].subject_id == "s0"
    assert galleries.verify("g", "s0", [face(probe)]).match
    galleries.remove("g", "s0")
    assert galleries.identify([face(probe)], ["g"], top=1)[0].subject_id != "s0"
    galleries.snapshot()
    galleries.store.close()
    reopened = open_galleries(tmp_path)
    assert reopened.identify([face(vectors[5])], ["g"], top=1)[0].subject_id == "s5"
    assert reopened.statistics(["g"])[0].subjects == 99


def test_expired_deadline_stops_a_search(tmp_path):
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    with pytest.raises(DeadlineExceeded):
        galleries.identify([face(unit_vectors(1, DIM)[0])], ["g"], deadline=time.monotonic() - 1)


def test_templates_of_another_size_are_refused(tmp_path):
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    (outcome,) = galleries.enroll([EnrollItem("g", "s", (face(unit_vectors(1, DIM + 1)[0]),))])
    assert isinstance(outcome, InvalidArgument) and outcome.field == "samples[0].template.vector"
    assert galleries.statistics(["g"])[0].subjects == 0


def test_an_approximate_gallery_restarts_from_snapshot_and_log_tail_as_it_was(tmp_path):
    """Past the threshold the gallery is IVF-PQ; snapshot + replayed tail (as after kill -9) == live == rebuild."""
    from matcher.policy import IndexPolicy

    policy = IndexPolicy(approximate_from=500, background_build=False, probe_fraction=0.25)

    def reopen(snapshots=True):
        return Galleries(SQLiteStore(tmp_path / "s.sqlite3"), (tmp_path / "snapshots") if snapshots else None, policy=policy)

    galleries = reopen()
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    vectors = unit_vectors(1200, DIM, 3)
    galleries.enroll([EnrollItem("g", f"s{i}", (face(v),)) for i, v in enumerate(vectors[:1000])])
    assert galleries.statistics(["g"])[0].indexes[0].index_type.startswith("IVF")
    galleries.snapshot()
    for i in range(100):  # the tail: deletions free slots that the next enrolments reuse
        galleries.remove("g", f"s{i}")
    galleries.enroll([EnrollItem("g", f"s{i}", (face(v),)) for i, v in enumerate(vectors[1000:], start=1000)])
    probes = noisy(vectors, sigma=0.3, seed=4)

    def answers(g):
        return [[c.subject_id for c in g.identify([face(p)], ["g"], top=3)] for p in probes]

    live = answers(galleries)
    galleries.store.close()
    restarted = reopen()
    assert restarted.statistics(["g"])[0].indexes[0].index_type.startswith("IVF")
    assert answers(restarted) == live
    restarted.store.close()
    # A rebuild from the store trains on other data: same rank-1 for every enrolled subject's probe.
    rebuilt = answers(reopen(snapshots=False))
    assert all(r[0] == a[0] == f"s{i}" for i, (r, a) in enumerate(zip(rebuilt, live)) if i >= 100)


def test_a_restart_from_snapshots_replays_nothing_for_idle_galleries(tmp_path, monkeypatch):
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("idle", 1e-4, (SPEC,)))
    galleries.create(GalleryRecord("busy", 1e-4, (SPEC,)))
    galleries.enroll([EnrollItem("busy", f"s{i}", (face(v),)) for i, v in enumerate(unit_vectors(50, DIM, 3))])
    galleries.snapshot()
    galleries.store.close()
    applied = []
    monkeypatch.setattr(Gallery, "apply", lambda self, change, store: applied.append(change.sequence))
    reopened = open_galleries(tmp_path)
    assert applied == [] and reopened.statistics(["busy"])[0].subjects == 50


def test_candidate_metadata_follows_a_re_enrolment_and_a_deletion(tmp_path):
    """Metadata is served from memory after the first search: a write must replace it at once."""
    galleries = open_galleries(tmp_path)
    galleries.create(GalleryRecord("g", 1e-4, (SPEC,)))
    vector = unit_vectors(1, DIM, 3)[0]
    galleries.enroll([EnrollItem("g", "s", (face(vector),), {"alert_level": "red"})])

    def shown():
        found = galleries.identify([face(vector)], ["g"], top=1)
        return galleries.candidate_metadata(found).get(("g", "s"))

    assert shown() == shown() == {"alert_level": "red"}
    galleries.enroll([EnrollItem("g", "s", (face(vector),), {"alert_level": "amber"}, replace=True)])
    assert shown() == {"alert_level": "amber"}
    candidate = galleries.identify([face(vector)], ["g"], top=1)
    galleries.remove("g", "s")
    assert galleries.candidate_metadata(candidate) == {}
