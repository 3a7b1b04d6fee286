"""Scores an investigator can defend, over gRPC: FPIR at gallery size, FPIR thresholds, no evidence counted twice."""

from __future__ import annotations

import math
import uuid

import grpc
import numpy as np
import pytest

from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DATA, unit_vectors
from tests.finger_fixtures import DB1
from tests.server.test_bad_input import rpc_error

MODEL, DIM = "synthetic@1", 64  # a model without a measured table: the null model of random unit vectors calibrates it
PRINTS = DATA / "finger" / DB1
FACES = DATA / "face" / "five_celebrities" / "images" / "Resources" / "Faces"


def gallery_of(stub, vectors: np.ndarray, **thresholds) -> str:
    name = "g-" + uuid.uuid4().hex[:10]
    spec = pb.ModalitySettings(modality=pb.MODALITY_FACE, model_id=MODEL, dimension=DIM)
    stub.CreateGallery(pb.CreateGalleryRequest(name=name, modalities=[spec], **thresholds))
    requests = (pb.EnrollRequest(subject_id=f"S{i}", gallery=name, samples=[sample(v)]) for i, v in enumerate(vectors))
    assert all(ack.status_code == 0 for ack in stub.EnrollStream(requests, timeout=120))
    return name


def sample(vector: np.ndarray) -> pb.Sample:
    return pb.Sample(template=pb.Template(modality=pb.MODALITY_FACE, model_id=MODEL, vector=vector.astype("<f4").tobytes()))


def at_cosine(target: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector whose cosine with ``target`` is exactly ``cosine``."""
    other = np.random.default_rng(seed).standard_normal(target.size)
    other -= (other @ target) * target
    return cosine * target + math.sqrt(1 - cosine**2) * other / np.linalg.norm(other)


@pytest.fixture(scope="module")
def population():
    return unit_vectors(500, DIM, seed=41)


def test_candidates_carry_their_fpir_and_an_fpir_gallery_decides_hits_by_it(stub, population):
    by_fmr = gallery_of(stub, population, threshold_fmr=1e-4)
    by_fpir = gallery_of(stub, population, threshold_fpir=0.01)
    assert {g.name: g.threshold_fpir for g in stub.ListGalleries(pb.ListGalleriesRequest()).galleries}[by_fpir] == 0.01
    # A cosine of 0.49 at 64 dimensions is a score of about 4.3: one false match in 20,000 comparisons,
    # a hit at FMR 1e-4, but among 500 people a stranger scores that high in about 2.5 % of searches.
    probe = at_cosine(population[0], 0.49, seed=42)
    fmr_response = stub.Identify(pb.IdentifyRequest(samples=[sample(probe)], galleries=[by_fmr], max_candidates=5))
    fpir_response = stub.Identify(pb.IdentifyRequest(samples=[sample(probe)], galleries=[by_fpir], max_candidates=5))
    for response in (fmr_response, fpir_response):
        assert response.searched_subjects == 500
        for c in response.candidates:
            assert c.fpir == pytest.approx(1 - (1 - 10 ** -c.score) ** 500, rel=1e-3)
    first_fmr, first_fpir = fmr_response.candidates[0], fpir_response.candidates[0]
    assert first_fmr.subject_id == first_fpir.subject_id == "S0" and 4.0 < first_fmr.score < 4.7
    assert first_fmr.hit and not first_fpir.hit and first_fpir.fpir > 0.01
    # Strangers below both thresholds are hits of neither.
    assert not any(c.hit for c in fpir_response.candidates[1:]) and not any(c.hit for c in fmr_response.candidates[1:])
    # A close mate is a hit under both rules.
    close = at_cosine(population[3], 0.8, seed=43)
    for gallery in (by_fmr, by_fpir):
        (best,) = stub.Identify(pb.IdentifyRequest(samples=[sample(close)], galleries=[gallery], max_candidates=1)).candidates
        assert best.subject_id == "S3" and best.hit and best.fpir < 1e-3


def test_fpir_is_over_every_gallery_searched(stub, population):
    first, second = gallery_of(stub, population[:200]), gallery_of(stub, population[200:])
    probe = at_cosine(population[0], 0.49, seed=44)
    response = stub.Identify(pb.IdentifyRequest(samples=[sample(probe)], galleries=[first, second], max_candidates=2))
    assert response.searched_subjects == 500
    assert response.candidates[0].fpir == pytest.approx(1 - (1 - 10 ** -response.candidates[0].score) ** 500, rel=1e-3)


def test_an_fpir_threshold_outside_0_1_is_refused_by_field(stub):
    error = rpc_error(stub.CreateGallery, pb.CreateGalleryRequest(name="g-" + uuid.uuid4().hex[:10], threshold_fpir=1.5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("threshold_fpir:")


def test_the_same_template_twice_in_one_probe_is_refused(stub, population):
    gallery = gallery_of(stub, population[:10])
    twice = [sample(population[1]), sample(population[1])]
    for call, request in (
        (stub.Identify, pb.IdentifyRequest(samples=twice, galleries=[gallery])),
        (stub.Verify, pb.VerifyRequest(subject_id="S1", gallery=gallery, samples=twice)),
    ):
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("samples[1]: repeats samples[0]")


@pytest.mark.skipif(not (PRINTS / "101_1.tif").is_file(), reason=f"fingerprint data not found under {PRINTS}; set SHANAKHT_DATA")
def test_the_same_finger_twice_in_one_probe_is_refused(stub):
    gallery = "g-" + uuid.uuid4().hex[:10]
    stub.CreateGallery(pb.CreateGalleryRequest(name=gallery))

    def print_of(name: str, position: int) -> pb.Sample:
        return pb.Sample(finger=pb.FingerImage(image=(PRINTS / f"{name}.tif").read_bytes(), position=position))

    stub.Enroll(pb.EnrollRequest(subject_id="F", gallery=gallery, samples=[print_of("101_1", 2)]), timeout=60)
    # Two impressions of one finger would count the finger twice; the same image twice, likewise.
    same_finger = [print_of("101_2", 2), print_of("101_3", 2)]
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=same_finger, galleries=[gallery]), timeout=60)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("samples[1].finger_position:")
    same_image = [print_of("101_2", 0), print_of("101_2", 0)]
    error = rpc_error(stub.Verify, pb.VerifyRequest(subject_id="F", gallery=gallery, samples=same_image), timeout=60)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("samples[1]: repeats samples[0]")
    # Two different fingers are two pieces of evidence: accepted, and fused.
    two = stub.Identify(pb.IdentifyRequest(samples=[print_of("101_2", 2), print_of("102_2", 3)], galleries=[gallery]), timeout=60)
    assert two.candidates[0].subject_id == "F"


@pytest.mark.skipif(not FACES.is_dir(), reason=f"face data not found under {FACES}; set SHANAKHT_DATA")
def test_the_same_photo_twice_is_refused(stub):
    gallery = "g-" + uuid.uuid4().hex[:10]
    stub.CreateGallery(pb.CreateGalleryRequest(name=gallery))
    photo = pb.Sample(face=pb.FaceImage(image=(FACES / "train" / "Madonna" / "1.jpg").read_bytes()))
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=[photo, photo], galleries=[gallery]), timeout=60)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("samples[1]: repeats samples[0]")


@pytest.mark.skipif(not (PRINTS / "101_1.tif").is_file(), reason=f"fingerprint data not found under {PRINTS}; set SHANAKHT_DATA")
def test_the_duplicate_check_counts_several_impressions_of_one_finger_once(stub):
    gallery = "g-" + uuid.uuid4().hex[:10]
    stub.CreateGallery(pb.CreateGalleryRequest(name=gallery))

    def print_of(name: str) -> pb.Sample:
        return pb.Sample(finger=pb.FingerImage(image=(PRINTS / f"{name}.tif").read_bytes(), position=2))

    stub.Enroll(pb.EnrollRequest(subject_id="A", gallery=gallery, samples=[print_of("101_1")]), timeout=60)
    alone = stub.Identify(pb.IdentifyRequest(samples=[print_of("101_2")], galleries=[gallery]), timeout=60).candidates[0]
    # The same person again under another name, with two impressions of the same finger.
    ack = stub.Enroll(
        pb.EnrollRequest(subject_id="B", gallery=gallery, samples=[print_of("101_2"), print_of("101_3")], check_duplicates=True),
        timeout=60,
    )
    assert [d.subject_id for d in ack.duplicates] == ["A"]
    assert ack.duplicates[0].score == pytest.approx(alone.score, abs=1e-5)  # one finger's evidence, not two
