"""End-to-end behaviour of the gRPC API against a real server process on loopback."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from shanakht.v1 import identity_pb2 as pb
from tests.conftest import noisy, template_sample, unit_vectors


def new_gallery(stub, threshold_fmr: float = 1e-4) -> str:
    name = "g-" + uuid.uuid4().hex[:10]
    stub.CreateGallery(pb.CreateGalleryRequest(name=name, threshold_fmr=threshold_fmr))
    return name


def enroll_stream(stub, gallery: str, vectors: np.ndarray, prefix: str = "S") -> list[pb.EnrollResponse]:
    requests = (
        pb.EnrollRequest(subject_id=f"{prefix}{i}", gallery=gallery, samples=[template_sample(v)]) for i, v in enumerate(vectors)
    )
    return list(stub.EnrollStream(requests, timeout=300))


def identify(stub, gallery, vector, top=5, **kw) -> list[pb.Candidate]:
    return list(
        stub.Identify(pb.IdentifyRequest(samples=[template_sample(vector)], galleries=[gallery], max_candidates=top, **kw)).candidates
    )


def test_ten_thousand_templates_each_identified_rank1_by_a_noisy_copy(stub):
    gallery = new_gallery(stub)
    gallery_vectors = unit_vectors(10_000, seed=11)
    acks = enroll_stream(stub, gallery, gallery_vectors)
    assert [a.status_code for a in acks] == [0] * 10_000
    assert len({a.template_ids[0] for a in acks}) == 10_000
    probes = noisy(gallery_vectors, sigma=0.8, seed=12)

    def rank1(i: int) -> str:
        candidates = identify(stub, gallery, probes[i], top=1)
        return candidates[0].subject_id if candidates else ""

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(rank1, range(10_000), chunksize=64))
    assert found == [f"S{i}" for i in range(10_000)]
    stats = stub.GalleryStats(pb.GalleryStatsRequest(galleries=[gallery]))
    assert stats.galleries[0].subjects == 10_000 and stats.galleries[0].indexes[0].templates == 10_000


def test_one_candidate_per_subject_with_its_best_template(stub):
    gallery = new_gallery(stub)
    base = unit_vectors(3, seed=21)
    # Subject A has three templates close to the probe; B one.  A must appear once.
    a_templates = noisy(np.repeat(base[:1], 3, axis=0), sigma=0.3, seed=22)
    stub.Enroll(pb.EnrollRequest(subject_id="A", gallery=gallery, samples=[template_sample(v) for v in a_templates]))
    stub.Enroll(pb.EnrollRequest(subject_id="B", gallery=gallery, samples=[template_sample(base[1])]))
    candidates = identify(stub, gallery, base[0], top=5)
    assert [c.subject_id for c in candidates] == ["A", "B"]
    assert candidates[0].hit and not candidates[1].hit
    assert candidates[0].score > candidates[1].score


def test_verify_genuine_and_impostor(stub):
    gallery = new_gallery(stub)
    vectors = unit_vectors(2, seed=31)
    stub.Enroll(pb.EnrollRequest(subject_id="P1", gallery=gallery, samples=[template_sample(vectors[0])]))
    genuine = stub.Verify(pb.VerifyRequest(subject_id="P1", gallery=gallery, samples=[template_sample(noisy(vectors[:1])[0])]))
    impostor = stub.Verify(pb.VerifyRequest(subject_id="P1", gallery=gallery, samples=[template_sample(vectors[1])]))
    assert genuine.match and genuine.score >= genuine.threshold == pytest.approx(4.0)
    assert not impostor.match and impostor.score < impostor.threshold
    with pytest.raises(grpc.RpcError) as error:
        stub.Verify(pb.VerifyRequest(subject_id="nobody", gallery=gallery, samples=[template_sample(vectors[0])]))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_delete_removes_subject_from_results_at_once(stub):
    gallery = new_gallery(stub)
    vectors = unit_vectors(50, seed=41)
    enroll_stream(stub, gallery, vectors)
    assert identify(stub, gallery, vectors[7], top=1)[0].subject_id == "S7"
    stub.DeleteSubject(pb.DeleteSubjectRequest(subject_id="S7", gallery=gallery))
    assert "S7" not in [c.subject_id for c in identify(stub, gallery, vectors[7], top=50)]
    with pytest.raises(grpc.RpcError) as error:
        stub.GetSubject(pb.GetSubjectRequest(subject_id="S7", gallery=gallery))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        stub.DeleteSubject(pb.DeleteSubjectRequest(subject_id="S7", gallery=gallery))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_identify_on_an_empty_gallery_returns_no_candidates(stub):
    gallery = new_gallery(stub)
    assert identify(stub, gallery, unit_vectors(1, seed=51)[0]) == []


def test_galleries_are_isolated(stub):
    first, second = new_gallery(stub), new_gallery(stub)
    vector = unit_vectors(1, seed=61)[0]
    stub.Enroll(pb.EnrollRequest(subject_id="X", gallery=first, samples=[template_sample(vector)]))
    assert identify(stub, second, vector) == []
    assert [c.subject_id for c in identify(stub, first, vector)] == ["X"]
    # The same subject id may live in both galleries independently.
    stub.Enroll(pb.EnrollRequest(subject_id="X", gallery=second, samples=[template_sample(-vector)]))
    both = stub.Identify(pb.IdentifyRequest(samples=[template_sample(vector)], galleries=[first, second], max_candidates=5))
    assert [(c.gallery, c.hit) for c in both.candidates] == [(first, True), (second, False)]


def test_get_subject_returns_metadata_and_templates(stub):
    gallery = new_gallery(stub)
    vectors = unit_vectors(2, seed=71)
    ack = stub.Enroll(
        pb.EnrollRequest(subject_id="CRO-1", gallery=gallery, samples=[template_sample(v) for v in vectors], metadata={"name": "Test"})
    )
    subject = stub.GetSubject(pb.GetSubjectRequest(subject_id="CRO-1", gallery=gallery))
    assert subject.metadata == {"name": "Test"}
    assert [t.template_id for t in subject.templates] == list(ack.template_ids)
    candidates = identify(stub, gallery, vectors[0])
    assert candidates[0].metadata == {"name": "Test"}


def test_replace_overwrites_and_duplicates_are_reported(stub):
    gallery = new_gallery(stub)
    a, b = unit_vectors(2, seed=81)
    stub.Enroll(pb.EnrollRequest(subject_id="R", gallery=gallery, samples=[template_sample(a)]))
    with pytest.raises(grpc.RpcError) as error:
        stub.Enroll(pb.EnrollRequest(subject_id="R", gallery=gallery, samples=[template_sample(b)]))
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS and "replace" in error.value.details()
    stub.Enroll(pb.EnrollRequest(subject_id="R", gallery=gallery, samples=[template_sample(b)], replace=True))
    assert identify(stub, gallery, b, top=1)[0].hit
    assert not identify(stub, gallery, a, top=1)[0].hit
    # Same person under another name (prison intake).
    ack = stub.Enroll(
        pb.EnrollRequest(subject_id="R2", gallery=gallery, samples=[template_sample(noisy(b[None])[0])], check_duplicates=True)
    )
    assert [d.subject_id for d in ack.duplicates] == ["R"]


def test_extract_template_normalises_a_template(stub):
    vector = unit_vectors(1, seed=91)[0] * 3.0
    response = stub.ExtractTemplate(pb.ExtractTemplateRequest(sample=template_sample(vector)))
    out = np.frombuffer(response.template.vector, "<f4")
    assert np.allclose(out, vector / 3.0, atol=1e-6)


def test_list_galleries_includes_defaults(stub):
    names = [g.name for g in stub.ListGalleries(pb.ListGalleriesRequest()).galleries]
    assert {"watchlist", "criminal_records", "inmates"} <= set(names)


def test_every_answer_carries_the_servers_own_time(stub):
    """The `server-timing` trailer lets load tests separate server time from client and network time."""
    _, call = stub.Identify.with_call(
        pb.IdentifyRequest(samples=[template_sample(unit_vectors(1, seed=3)[0])], galleries=["watchlist"], max_candidates=1)
    )
    trailer = dict(call.trailing_metadata())["server-timing"]
    timing = {name: float(ms) / 1e3 for name, ms in (part.strip().split(";dur=") for part in trailer.split(","))}
    assert set(timing) == {"total", "handler"} and 0.0 < timing["handler"] <= timing["total"] < 10.0
