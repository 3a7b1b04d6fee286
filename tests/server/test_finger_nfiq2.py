"""NFIQ 2 over gRPC: every finger QualityReport carries NIST's score, and a gallery's minimum is enforced.

The expected scores are NIST's own, computed here by nbis-py on the very file the test sends, so
the service is checked against the reference implementation rather than against itself.
"""

from __future__ import annotations

import uuid

import grpc
import nbis
import pytest

from matcher.finger.iso19794 import from_iso
from shanakht.v1 import identity_pb2 as pb
from tests.server.test_api import new_gallery
from tests.server.test_bad_input import assert_nothing_stored, rpc_error
from tests.server.test_finger_api import PRINTS, finger, pytestmark  # noqa: F401  (skip without the prints)

FINGERS = [f"{f}_1" for f in range(101, 109)]


@pytest.fixture(scope="module")
def nist_scores() -> dict[str, int]:
    """NFIQ 2 of each print as NIST's code scores the file (FVC2002 DB1 is 500 dpi: no resampling)."""
    settings = nbis.NbisExtractorSettings(min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=True, ppi=500.0)
    extractor = nbis.new_nbis_extractor(settings)
    return {name: extractor.extract_minutiae((PRINTS / f"{name}.tif").read_bytes()).quality().score for name in FINGERS}


def test_every_finger_quality_report_carries_the_nfiq2_score(stub, nist_scores):
    gallery = new_gallery(stub)
    name = FINGERS[0]
    extracted = stub.ExtractTemplate(pb.ExtractTemplateRequest(sample=finger(name)), timeout=60)
    enrolled = stub.Enroll(pb.EnrollRequest(subject_id="S", gallery=gallery, samples=[finger(name)]), timeout=60)
    found = stub.Identify(pb.IdentifyRequest(samples=[finger(name)], galleries=[gallery]), timeout=60)
    verified = stub.Verify(pb.VerifyRequest(subject_id="S", gallery=gallery, samples=[finger(name)]), timeout=60)
    for report in (extracted.quality, enrolled.quality[0], found.quality[0], verified.quality[0]):
        assert report.measures["nfiq2"] == nist_scores[name]
        assert {"nfiq2_contrast", "nfiq2_minutiae", "nfiq2_foreground_px", "nfiq2_uniform_image"} <= report.measures.keys()
    # The exported ISO/IEC 19794-2 record's finger quality is NFIQ 2 too, for the next system to read.
    assert from_iso(extracted.template.vector).image_quality == nist_scores[name]


def _default_modalities(stub) -> list[pb.ModalitySettings]:
    created = stub.CreateGallery(pb.CreateGalleryRequest(name=unique("d"), threshold_fmr=1e-4))
    return list(created.modalities)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_a_gallery_refuses_prints_below_its_nfiq2_minimum_by_field(stub, nist_scores):
    low, high = min(nist_scores, key=nist_scores.get), max(nist_scores, key=nist_scores.get)
    assert nist_scores[low] < nist_scores[high], "the eight prints should differ in quality"
    minimum = nist_scores[low] + 1
    modalities = _default_modalities(stub)
    for m in modalities:
        if m.modality == pb.MODALITY_FINGER:
            m.min_quality = minimum
    name = unique("q")
    created = stub.CreateGallery(pb.CreateGalleryRequest(name=name, threshold_fmr=1e-4, modalities=modalities))
    assert [m.min_quality for m in created.modalities if m.modality == pb.MODALITY_FINGER] == [minimum]
    listed = [g for g in stub.ListGalleries(pb.ListGalleriesRequest()).galleries if g.name == name][0]
    assert [m.min_quality for m in listed.modalities if m.modality == pb.MODALITY_FINGER] == [minimum]

    error = rpc_error(stub.Enroll, pb.EnrollRequest(subject_id="LOW", gallery=name, samples=[finger(low)]), timeout=60)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("samples[0].finger.image:"), error.details()
    assert f"NFIQ 2 score {nist_scores[low]} is below this gallery's minimum of {minimum}" in error.details()
    assert_nothing_stored(stub, name)
    # Searching with the poor print is still allowed: the minimum guards what the gallery holds.
    stub.Identify(pb.IdentifyRequest(samples=[finger(low)], galleries=[name]), timeout=60)
    ack = stub.Enroll(pb.EnrollRequest(subject_id="HIGH", gallery=name, samples=[finger(high)]), timeout=60)
    assert ack.quality[0].measures["nfiq2"] >= minimum


@pytest.mark.parametrize("modality, value, words", [(pb.MODALITY_FACE, 30, "no single quality score"), (pb.MODALITY_FINGER, 101, "0–100")])
def test_a_minimum_the_modality_cannot_honour_is_refused(stub, modality, value, words):
    modalities = _default_modalities(stub)
    index = next(i for i, m in enumerate(modalities) if m.modality == modality)
    modalities[index].min_quality = value
    error = rpc_error(stub.CreateGallery, pb.CreateGalleryRequest(name=unique("x"), modalities=modalities))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"modalities[{index}].min_quality:") and words in error.details(), error.details()
