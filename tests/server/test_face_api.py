"""Face photos end to end over gRPC: real ONNX models, real images from the shared data folder."""

from __future__ import annotations

import csv
import io
import struct
import zlib
from collections import defaultdict

import grpc
import numpy as np
import pytest
from PIL import Image

from enrollment.calibration import load_calibration
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DATA, DEFAULT_FACE_DIMENSION, DEFAULT_FACE_MODEL

FACES = DATA / "face"
pytestmark = pytest.mark.skipif(not (FACES / "five_celebrities" / "labels.csv").is_file(),
                                reason=f"face data not found under {FACES}; set SHANAKHT_DATA to the shared data folder")


def rows(name: str) -> list[dict]:
    with open(FACES / name / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def face(path) -> pb.Sample:
    return pb.Sample(face=pb.FaceImage(image=path.read_bytes()))


def new_gallery(stub, **kw) -> str:
    import uuid

    name = "f-" + uuid.uuid4().hex[:8]
    stub.CreateGallery(pb.CreateGalleryRequest(name=name, **kw))
    return name


def test_five_celebrities_identify_val_against_train(stub):
    gallery = new_gallery(stub)
    by_identity = defaultdict(list)
    for row in rows("five_celebrities"):
        by_identity[(row["subset"], row["label"])].append(FACES / "five_celebrities" / row["path"])
    for (subset, label), paths in by_identity.items():
        if subset == "train":
            ack = stub.Enroll(pb.EnrollRequest(subject_id=label, gallery=gallery, samples=[face(p) for p in paths], largest_face=True), timeout=120)
            assert len(ack.template_ids) == len(paths) and all(q.accepted for q in ack.quality)
            assert "inter_eye_px" in ack.quality[0].measures and "liveness" in ack.quality[0].measures
    val = [(label, p) for (subset, label), paths in by_identity.items() if subset == "val" for p in paths]
    correct = 0
    for label, path in val:
        found = stub.Identify(pb.IdentifyRequest(samples=[face(path)], galleries=[gallery], max_candidates=3), timeout=60)
        correct += bool(found.candidates) and found.candidates[0].subject_id == label
    rank1 = correct / len(val)
    print(f"five_celebrities val rank-1 over gRPC: {rank1:.3f} ({correct}/{len(val)})")
    assert len(val) == 25 and rank1 >= 0.95

    # Verify: genuine pairs reach the gallery threshold, impostors do not (calibrated -log10 FMR).
    genuine = [stub.Verify(pb.VerifyRequest(subject_id=label, gallery=gallery, samples=[face(p)])) for label, p in val[:8]]
    labels = sorted({label for label, _ in val})
    impostor = [stub.Verify(pb.VerifyRequest(subject_id=labels[(labels.index(label) + 1) % len(labels)], gallery=gallery,
                                             samples=[face(p)])) for label, p in val[:8]]
    assert sum(v.match for v in genuine) >= 7 and not any(v.match for v in impostor)
    assert all(v.threshold == pytest.approx(4.0) for v in genuine)
    assert max(v.score for v in impostor) < 4.0 <= np.median([v.score for v in genuine])


def test_checkpoint_frame_is_searched_face_by_face(stub):
    gallery = new_gallery(stub)
    people = {r["label"]: FACES / "ageitgey" / r["path"] for r in rows("ageitgey") if r["label"] in ("obama", "biden")}
    for label, path in people.items():
        stub.Enroll(pb.EnrollRequest(subject_id=label, gallery=gallery, samples=[face(path)]))
    crowd = FACES / "ageitgey" / next(r["path"] for r in rows("ageitgey") if "obama_and_biden" in r["path"])
    found = stub.Identify(pb.IdentifyRequest(samples=[face(crowd)], galleries=[gallery], max_candidates=2), timeout=60)
    assert len(found.faces) == 2
    assert sorted(f.candidates[0].subject_id for f in found.faces) == ["biden", "obama"]
    assert all(f.candidates[0].hit and f.box.x2 > f.box.x1 for f in found.faces)
    assert {c.subject_id for c in found.candidates if c.hit} == {"biden", "obama"}


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def bad_images() -> dict[str, bytes]:
    jpeg = (FACES / "five_celebrities" / rows("five_celebrities")[0]["path"]).read_bytes()
    gradient = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    crowd = FACES / "ageitgey" / next(r["path"] for r in rows("ageitgey") if "obama_and_biden" in r["path"])
    return {
        "not an image": b"this is not an image at all",
        "truncated JPEG": jpeg[: len(jpeg) // 3],
        "1x1": encoded(np.zeros((1, 1, 3), np.uint8)),
        "PNG declaring 30000x30000": png_declaring(30000, 30000),
        "no face": encoded(np.stack([gradient] * 3, axis=-1)),
        "crowd": crowd.read_bytes(),
    }


@pytest.mark.parametrize("case", ["not an image", "truncated JPEG", "1x1", "PNG declaring 30000x30000", "no face", "crowd"])
def test_bad_face_images_get_a_clear_status_and_store_nothing(stub, shared_server, case):
    gallery = new_gallery(stub)
    image = bad_images()[case]
    with pytest.raises(grpc.RpcError) as error:
        stub.Enroll(pb.EnrollRequest(subject_id="BAD", gallery=gallery, samples=[pb.Sample(face=pb.FaceImage(image=image))]), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.value.details()
    assert details.startswith("samples[0].face.image:"), details
    expected = {"crowd": "faces found", "no face": "no face"}.get(case)
    if expected:
        assert expected in details.lower()
    assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=[gallery])).galleries[0].subjects == 0
    assert shared_server.healthy()


def test_extract_template_then_enroll_it(stub):
    path = FACES / "five_celebrities" / rows("five_celebrities")[0]["path"]
    extracted = stub.ExtractTemplate(pb.ExtractTemplateRequest(sample=face(path)), timeout=60)
    assert extracted.template.model_id == DEFAULT_FACE_MODEL and len(extracted.template.vector) == DEFAULT_FACE_DIMENSION * 4
    gallery = new_gallery(stub)
    stub.Enroll(pb.EnrollRequest(subject_id="T", gallery=gallery, samples=[pb.Sample(template=extracted.template)]))
    found = stub.Identify(pb.IdentifyRequest(samples=[face(path)], galleries=[gallery]), timeout=60)
    assert found.candidates[0].subject_id == "T" and found.candidates[0].score == pytest.approx(load_calibration().scores[-1])  # the table's clamp


def test_reject_policy_refuses_low_quality_faces(stub):
    gallery = new_gallery(stub, quality_policy="reject")
    small = np.asarray(Image.open(FACES / "five_celebrities" / rows("five_celebrities")[0]["path"]).convert("RGB").resize((40, 40)))
    with pytest.raises(grpc.RpcError) as error:
        stub.Enroll(pb.EnrollRequest(subject_id="SMALL", gallery=gallery, samples=[pb.Sample(face=pb.FaceImage(image=encoded(small)))]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "samples[0].face.image:" in error.value.details()
    assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=[gallery])).galleries[0].subjects == 0
