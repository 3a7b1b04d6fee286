"""What was acknowledged survives: graceful restarts, ``kill -9``, snapshots and log replay."""

from __future__ import annotations

import os


from shanakht.v1 import identity_pb2 as pb
from tests.conftest import noisy, template_sample, unit_vectors
from tests.server.test_api import enroll_stream, identify


def top_subjects(stub, gallery, probes, top=3):
    return [[(c.subject_id, round(c.score, 4)) for c in identify(stub, gallery, p, top=top)] for p in probes]


def test_restart_keeps_galleries_subjects_and_deletions(server_factory):
    server = server_factory("data")
    stub = server.stub()
    stub.CreateGallery(pb.CreateGalleryRequest(name="cases", threshold_fmr=1e-3, description="kept"))
    vectors = unit_vectors(300, seed=101)
    enroll_stream(stub, "cases", vectors)
    stub.DeleteSubject(pb.DeleteSubjectRequest(subject_id="S5", gallery="cases"))
    probes = noisy(vectors[:20], seed=102)
    before = top_subjects(stub, "cases", probes)
    assert server.stop() == 0  # SIGTERM: drain + snapshot
    assert (server.data_dir / "snapshots" / "cases" / "face.npz").exists()

    server.start()
    stub = server.stub()
    galleries = {g.name: g for g in stub.ListGalleries(pb.ListGalleriesRequest()).galleries}
    assert galleries["cases"].threshold_fmr == 1e-3 and galleries["cases"].description == "kept"
    assert top_subjects(stub, "cases", probes) == before
    assert "S5" not in {s for row in before for s, _ in row}
    assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=["cases"])).galleries[0].subjects == 299


def test_kill_9_right_after_an_acknowledged_enroll(server_factory):
    server = server_factory("data")
    stub = server.stub()
    vectors = unit_vectors(200, seed=111)
    enroll_stream(stub, "watchlist", vectors[:150])
    stub.GalleryStats(pb.GalleryStatsRequest())
    server.stop()  # snapshot now covers the first 150 ...
    server.start()
    stub = server.stub()
    # ... then more writes the snapshot does not cover, the last one acknowledged just before kill -9.
    enroll_stream(stub, "watchlist", vectors[150:199], prefix="T")
    stub.DeleteSubject(pb.DeleteSubjectRequest(subject_id="S3", gallery="watchlist"))
    ack = stub.Enroll(pb.EnrollRequest(subject_id="LAST", gallery="watchlist", samples=[template_sample(vectors[199])]))
    server.kill()

    server.start()
    stub = server.stub()
    assert identify(stub, "watchlist", vectors[199], top=1)[0].subject_id == "LAST"
    assert stub.GetSubject(pb.GetSubjectRequest(subject_id="LAST", gallery="watchlist")).sequence == ack.sequence
    assert identify(stub, "watchlist", vectors[170], top=1)[0].subject_id == "T20"
    assert "S3" not in [c.subject_id for c in identify(stub, "watchlist", vectors[3], top=20)]
    assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=["watchlist"])).galleries[0].subjects == 199


def test_kill_9_with_no_snapshot_rebuilds_from_the_store(server_factory):
    server = server_factory("data")
    stub = server.stub()
    vectors = unit_vectors(100, seed=121)
    enroll_stream(stub, "inmates", vectors)
    server.kill()
    assert not (server.data_dir / "snapshots").exists()
    server.start()
    stub = server.stub()
    assert [identify(stub, "inmates", v, top=1)[0].subject_id for v in vectors] == [f"S{i}" for i in range(100)]


def test_snapshot_plus_replay_equals_full_rebuild(server_factory):
    server = server_factory("data")
    stub = server.stub()
    vectors = unit_vectors(400, seed=131)
    enroll_stream(stub, "watchlist", vectors[:200])
    server.stop()  # snapshot at this point
    server.start()
    stub = server.stub()
    enroll_stream(stub, "watchlist", vectors[200:], prefix="U")
    for i in range(0, 200, 7):
        stub.DeleteSubject(pb.DeleteSubjectRequest(subject_id=f"S{i}", gallery="watchlist"))
    for i in range(1, 50, 5):  # replacements move a subject's templates
        stub.Enroll(pb.EnrollRequest(subject_id=f"S{i}", gallery="watchlist", samples=[template_sample(vectors[399 - i])], replace=True))
    probes = noisy(vectors, seed=132)
    live = top_subjects(stub, "watchlist", probes)
    server.kill()

    server.start()  # old snapshot + log tail
    replayed = top_subjects(server.stub(), "watchlist", probes)
    server.kill()
    for snapshot in (server.data_dir / "snapshots").rglob("*.npz"):
        os.remove(snapshot)
    server.start()  # no snapshot: full rebuild from the templates
    rebuilt = top_subjects(server.stub(), "watchlist", probes)
    assert replayed == live
    assert rebuilt == live
