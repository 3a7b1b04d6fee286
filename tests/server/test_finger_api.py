"""Fingerprints end to end over gRPC: real LEADER model, real FVC prints, ISO 19794-2 templates."""

from __future__ import annotations

import dataclasses
import io
import struct

import grpc
import numpy as np
import pytest
from PIL import Image

from enrollment.calibration import load_finger_calibration
from matcher.modalities import matcher_for
from matcher.templates import Modality
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DATA
from tests.finger_fixtures import DB1
from tests.server.test_api import new_gallery
from tests.server.test_bad_input import assert_nothing_stored, rpc_error

PRINTS = DATA / "finger" / DB1
FACES = DATA / "face" / "ageitgey"
pytestmark = pytest.mark.skipif(
    not (PRINTS / "101_1.tif").is_file(), reason=f"fingerprint data not found under {PRINTS}; set SHANAKHT_DATA to the shared data folder"
)


def finger(name: str, position: int = 2) -> pb.Sample:
    return pb.Sample(finger=pb.FingerImage(image=(PRINTS / f"{name}.tif").read_bytes(), position=position))


def iso_template(record: bytes) -> pb.Sample:
    return pb.Sample(template=pb.Template(modality=pb.MODALITY_FINGER, model_id="iso19794-2:2005", vector=record))


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def enrolled(shared_server):
    """Impression 1 of fingers 101–106 of FVC2002 DB1_B, one subject each, in a fresh gallery."""
    stub = shared_server.stub()
    gallery = new_gallery(stub)
    for f in range(101, 107):
        ack = stub.Enroll(pb.EnrollRequest(subject_id=f"F{f}", gallery=gallery, samples=[finger(f"{f}_1")]), timeout=60)
        assert len(ack.template_ids) == 1 and ack.quality[0].measures["minutiae"] >= 12
    return gallery


def test_a_print_is_identified_and_verified_by_its_finger(stub, enrolled):
    for f in (101, 103, 105):
        found = stub.Identify(pb.IdentifyRequest(samples=[finger(f"{f}_2")], galleries=[enrolled], max_candidates=3), timeout=60)
        assert found.candidates[0].subject_id == f"F{f}" and found.candidates[0].hit
        assert "finger" in found.candidates[0].modality_scores
        # Calibrated: the best impostor stays below the 1e-4 threshold (score 4).
        assert all(c.score < 4.0 for c in found.candidates[1:])
    genuine = stub.Verify(pb.VerifyRequest(subject_id="F102", gallery=enrolled, samples=[finger("102_3")]))
    impostor = stub.Verify(pb.VerifyRequest(subject_id="F104", gallery=enrolled, samples=[finger("102_3")]))
    assert genuine.match and genuine.score > 4.0 and not impostor.match and impostor.score < 4.0


def test_prison_intake_finds_the_same_finger_under_another_name(stub, enrolled):
    ack = stub.Enroll(
        pb.EnrollRequest(subject_id="ALIAS-104", gallery=enrolled, samples=[finger("104_4")], check_duplicates=True), timeout=60
    )
    assert [d.subject_id for d in ack.duplicates] == ["F104"]
    stub.DeleteSubject(pb.DeleteSubjectRequest(subject_id="ALIAS-104", gallery=enrolled))


def test_two_fingers_add_their_evidence(stub):
    gallery = new_gallery(stub)
    stub.Enroll(pb.EnrollRequest(subject_id="P", gallery=gallery, samples=[finger("101_1", 2), finger("102_1", 3)]), timeout=60)
    stub.Enroll(pb.EnrollRequest(subject_id="Q", gallery=gallery, samples=[finger("103_1", 2), finger("104_1", 3)]), timeout=60)
    one = stub.Verify(pb.VerifyRequest(subject_id="P", gallery=gallery, samples=[finger("101_2", 2)]))
    other = stub.Verify(pb.VerifyRequest(subject_id="P", gallery=gallery, samples=[finger("102_2", 3)]))
    both = stub.Verify(pb.VerifyRequest(subject_id="P", gallery=gallery, samples=[finger("101_2", 2), finger("102_2", 3)]))
    # Independent evidence: the two scores add, and the sum is worth what such a sum is worth among impostors
    # (the finger modality's fusion, with the correction the shipped table measured for two fingers).
    fused = matcher_for(Modality.FINGER).fuse([one.score, other.score], 2, load_finger_calibration())
    assert both.score == pytest.approx(fused, rel=1e-4)
    top = load_finger_calibration().scores[-1]  # fused scores stop where the measured-and-modelled table stops
    assert max(one.score, other.score) < both.score < one.score + other.score or both.score == top == max(one.score, other.score)
    found = stub.Identify(pb.IdentifyRequest(samples=[finger("101_2", 2), finger("102_2", 3)], galleries=[gallery]), timeout=60)
    assert found.candidates[0].subject_id == "P" and found.candidates[0].score == pytest.approx(both.score, rel=1e-4)


def test_an_exported_iso_template_enrolls_and_matches_like_the_image(stub):
    gallery = new_gallery(stub)
    extracted = stub.ExtractTemplate(pb.ExtractTemplateRequest(sample=finger("105_1")))
    record = extracted.template.vector
    assert extracted.template.modality == pb.MODALITY_FINGER and record[:4] == b"FMR\x00"
    assert struct.unpack(">I", record[8:12])[0] == len(record)
    stub.Enroll(pb.EnrollRequest(subject_id="from-image", gallery=gallery, samples=[finger("105_1")]), timeout=60)
    stub.Enroll(pb.EnrollRequest(subject_id="from-iso", gallery=gallery, samples=[iso_template(record)]), timeout=60)
    found = stub.Identify(pb.IdentifyRequest(samples=[finger("105_2")], galleries=[gallery], max_candidates=2), timeout=60)
    scores = {c.subject_id: c.score for c in found.candidates}
    assert scores.keys() == {"from-image", "from-iso"} and scores["from-image"] == pytest.approx(scores["from-iso"])


def _bad_inputs():
    white = png(np.full((300, 300), 255, np.uint8))
    record = bytearray(b"FMR\x00 20\x00" + struct.pack(">IHHHHHBB", 0, 0, 300, 300, 197, 197, 1, 0) + bytes([2, 0, 60, 0, 0, 0]))
    struct.pack_into(">I", record, 8, len(record) + 7)  # length field disagrees with the record
    face = png(np.random.default_rng(0).integers(0, 255, (400, 300), np.uint8))
    if FACES.is_dir():  # a portrait at a fingerprint's size, so the ridge check (not the size check) refuses it
        with Image.open(sorted(FACES.rglob("*.jpg"))[0]) as photo:
            photo.thumbnail((480, 480))
            face = png(np.asarray(photo.convert("L")))
    return [
        ("not an image", pb.Sample(finger=pb.FingerImage(image=b"%PDF-1.4 not an image at all")), "samples[0].finger.image", "image format"),
        ("blank white", pb.Sample(finger=pb.FingerImage(image=white)), "samples[0].finger.image", "blank"),
        ("face photo", pb.Sample(finger=pb.FingerImage(image=face)), "samples[0].finger.image", "ridges"),
        ("1×1 image", pb.Sample(finger=pb.FingerImage(image=png(np.zeros((1, 1), np.uint8)))), "samples[0].finger.image", "too small"),
        ("ISO wrong length", iso_template(bytes(record)), "samples[0].template.vector", "length field"),
        ("ISO empty", iso_template(b""), "samples[0].template.vector", "empty"),
    ]


@pytest.mark.parametrize("label, sample, field, words", _bad_inputs(), ids=[b[0] for b in _bad_inputs()])
def test_bad_finger_input_is_refused_by_field_and_stores_nothing(stub, label, sample, field, words):
    gallery = new_gallery(stub)
    for call, request in (
        (stub.Enroll, pb.EnrollRequest(subject_id="S", gallery=gallery, samples=[sample])),
        (stub.Identify, pb.IdentifyRequest(samples=[sample], galleries=[gallery])),
        (stub.Verify, pb.VerifyRequest(subject_id="S", gallery=gallery, samples=[sample])),
    ):
        error = rpc_error(call, request, timeout=60)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (label, error.details())
        assert error.details().startswith(field + ":") and words in error.details(), (label, error.details())
    assert_nothing_stored(stub, gallery)


# -- interchange records: ISO 19794-2:2005 / :2011, ANSI INCITS 378-2004, several finger views ------------
def interchange_template(record: bytes, model_id: str) -> pb.Sample:
    return pb.Sample(template=pb.Template(modality=pb.MODALITY_FINGER, model_id=model_id, vector=record))


def extracted_views(stub, prints: dict[str, int]):
    """Our templates of ``prints`` (name → finger position), through ExtractTemplate, as ``FingerTemplate``s."""
    from matcher.finger.iso19794 import from_iso

    views = []
    for name, position in prints.items():
        record = stub.ExtractTemplate(pb.ExtractTemplateRequest(sample=finger(name, position)), timeout=60).template.vector
        views.append(from_iso(record))
    return views


def test_a_three_view_incits_record_enrols_three_fingers_and_each_is_identified(stub):
    from matcher.finger.interchange.detect import to_record

    gallery = new_gallery(stub)
    fingers = {"101_1": 2, "102_1": 3, "103_1": 7}  # right index, right middle, left index
    record = to_record(extracted_views(stub, fingers), "incits378-2004")
    ack = stub.Enroll(pb.EnrollRequest(subject_id="TEN", gallery=gallery, samples=[interchange_template(record, "incits378-2004")]), timeout=60)
    assert len(ack.template_ids) == 3
    stub.Enroll(pb.EnrollRequest(subject_id="OTHER", gallery=gallery, samples=[finger("104_1", 3)]), timeout=60)
    subject = stub.GetSubject(pb.GetSubjectRequest(gallery=gallery, subject_id="TEN"))
    assert sorted(t.finger_position for t in subject.templates) == [2, 3, 7]
    assert {t.modality for t in subject.templates} == {pb.MODALITY_FINGER}
    assert {t.model_id for t in subject.templates} == {"iso19794-2:2005"}  # stored in the canonical format
    # A single-view ISO 2011 record of another impression of the right middle finger finds the subject first.
    (probe,) = extracted_views(stub, {"102_2": 3})
    found = stub.Identify(
        pb.IdentifyRequest(samples=[interchange_template(to_record(probe, "iso19794-2:2011"), "iso19794-2:2011")], galleries=[gallery]),
        timeout=60,
    )
    assert found.candidates[0].subject_id == "TEN" and found.candidates[0].hit


def test_interchange_records_that_lie_are_refused_by_field_and_store_nothing(stub):
    from matcher.finger.interchange.detect import to_record

    gallery = new_gallery(stub)
    views = extracted_views(stub, {"105_1": 2, "106_1": 3, "107_1": 4})
    lying = bytearray(to_record(views, "incits378-2004"))
    struct.pack_into(">H", lying, 8, len(lying) - 6)  # the 2-byte record length
    mislabelled = to_record(views, "iso19794-2:2011")
    for sample, field, words in (
        (interchange_template(bytes(lying), "incits378-2004"), "samples[0].template.vector", "header.record_length"),
        (interchange_template(mislabelled, "incits378-2004"), "samples[0].template.model_id", "iso19794-2:2011"),
    ):
        for call, request in (
            (stub.Enroll, pb.EnrollRequest(subject_id="S", gallery=gallery, samples=[sample])),
            (stub.Identify, pb.IdentifyRequest(samples=[sample], galleries=[gallery])),
        ):
            error = rpc_error(call, request, timeout=60)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert error.details().startswith(field + ":") and words in error.details(), error.details()
    assert_nothing_stored(stub, gallery)
    # Two views of one finger in one probe record would count that finger twice.
    twice = to_record([views[0], dataclasses.replace(views[1], position=2)], "iso19794-2:2011")
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=[interchange_template(twice, "iso19794-2:2011")], galleries=[gallery]), timeout=60)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "two views of finger 2" in error.details()
