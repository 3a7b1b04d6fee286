"""The face pipeline on real photos: detection, enrolment rules, embeddings, quality, fallback."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enrollment.face import DIMENSION, MODEL_ID
from enrollment.calibration import load_calibration
from enrollment.errors import ImageDecodeError, LowQuality, MultipleFaces, NoFaceFound
from enrollment.face.pipeline import FaceExtractor
from enrollment.face.quality import QualityAction, QualityPolicy
from matcher.errors import InvalidArgument
from matcher.templates import Modality

AGEITGEY = "ageitgey/images/examples"


def _read(face_data: Path, rel: str) -> bytes:
    return (face_data / rel).read_bytes()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_one_face_photo(extractor: FaceExtractor, face_data: Path) -> None:
    (face,) = extractor.extract(_read(face_data, f"{AGEITGEY}/knn_examples/train/obama/obama.jpg"))
    template = face.template
    assert template.modality is Modality.FACE and template.model_id == MODEL_ID
    assert template.vector.shape == (DIMENSION,) and abs(float(np.linalg.norm(template.vector)) - 1.0) < 1e-5
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 and 0 <= y1 < y2
    q = face.quality
    assert q.inter_eye_px is not None and 0.2 * (x2 - x1) < q.inter_eye_px < 0.7 * (x2 - x1)
    assert q.detector_score is not None and q.detector_score > 0.9 and not q.fallback_whole_image
    assert q.yaw_deg is not None and abs(q.yaw_deg) < 30
    assert q.both_eyes_open and q.liveness is not None and q.sharpness > 0
    assert template.quality["inter_eye_px"] == q.inter_eye_px


@pytest.mark.parametrize("rel", ["two_people.jpg", "knn_examples/test/obama_and_biden.jpg"])
def test_identify_returns_every_face(extractor: FaceExtractor, face_data: Path, rel: str) -> None:
    faces = extractor.extract(_read(face_data, f"{AGEITGEY}/{rel}"), mode="identify")
    assert len(faces) == 2
    (a, b) = faces
    assert a.box[2] <= b.box[0] or b.box[2] <= a.box[0], "two people side by side: boxes must not overlap"
    assert float(a.template.vector @ b.template.vector) < load_calibration().similarity_for_score(3.0)


def test_enroll_refuses_a_crowd_photo_unless_largest_face(extractor: FaceExtractor, face_data: Path) -> None:
    data = _read(face_data, "deepface/images/tests/unit/dataset/selfie-many-people.jpg")
    with pytest.raises(MultipleFaces) as info:
        extractor.extract(data, mode="enroll")
    assert info.value.count >= 3 and isinstance(info.value, InvalidArgument) and info.value.field == "image"
    (face,) = extractor.extract(data, mode="enroll", largest_face=True)
    assert any("faces found" in w for w in face.quality.warnings)


@pytest.mark.parametrize("kind", ["gradient", "noise"])
def test_photo_without_a_face(extractor: FaceExtractor, kind: str) -> None:
    rng = np.random.default_rng(3)
    if kind == "gradient":
        ramp = np.linspace(0, 255, 256, dtype=np.float32)
        pixels = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=2).astype(np.uint8)
    else:
        pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    with pytest.raises(NoFaceFound):
        extractor.extract(_png(pixels))


def test_same_person_scores_above_threshold_different_below(extractor: FaceExtractor, face_data: Path) -> None:
    def vector(rel: str) -> np.ndarray:
        (face,) = extractor.extract(_read(face_data, f"{AGEITGEY}/{rel}"), largest_face=True)
        return face.template.vector

    obama_a, obama_b = vector("knn_examples/train/obama/obama.jpg"), vector("knn_examples/train/obama/obama2.jpg")
    biden = vector("knn_examples/train/biden/biden2.jpg")
    threshold = load_calibration().similarity_for_score(3.0)
    assert float(obama_a @ obama_b) > threshold
    assert float(obama_a @ biden) < threshold and float(obama_b @ biden) < threshold


def test_pre_aligned_crops_embed_directly(extractor: FaceExtractor, face_data: Path) -> None:
    folder = face_data / "glint24_aligned/images/datasets/celebrity_images"
    people = sorted(p for p in folder.iterdir() if p.is_dir())[:2]
    a1, a2 = sorted(people[0].iterdir())[:2]
    (b1,) = sorted(people[1].iterdir())[:1]
    va, va2, vb = (extractor.extract_aligned(p.read_bytes()).template.vector for p in (a1, a2, b1))
    assert float(va @ va2) > float(va @ vb)
    result = extractor.extract_aligned(a1.read_bytes())
    assert result.quality.pre_aligned and result.landmarks is None
    crops = [np.asarray(Image.open(p).convert("RGB")) for p in (a1, b1)]
    batch = extractor.embed_aligned(crops)
    assert batch.shape == (2, DIMENSION) and np.allclose(batch[0], va, atol=1e-5)


def test_aligned_input_must_be_112(extractor: FaceExtractor, face_data: Path) -> None:
    with pytest.raises(ImageDecodeError, match="112"):
        extractor.extract_aligned(_read(face_data, f"{AGEITGEY}/knn_examples/train/obama/obama.jpg"))
    with pytest.raises(ImageDecodeError, match="112"):
        extractor.embed_aligned([np.zeros((100, 100, 3), np.uint8)])


def test_policy_rejects_or_warns(extractor: FaceExtractor, face_data: Path) -> None:
    data = _read(face_data, f"{AGEITGEY}/obama-240p.jpg")
    demanding = QualityPolicy(min_inter_eye_px=500.0, action=QualityAction.REJECT)
    with pytest.raises(LowQuality) as info:
        extractor.extract(data, policy=demanding)
    assert any("between the eyes" in r for r in info.value.reasons)
    (face,) = extractor.extract(data, policy=QualityPolicy(min_inter_eye_px=500.0, action=QualityAction.WARN))
    assert any("between the eyes" in w for w in face.quality.warnings)


def test_tight_crop_falls_back_to_the_whole_image(extractor: FaceExtractor, face_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the detector misses a tight crop, the whole image is the face, and the report says so."""
    data = _read(face_data, "att_orl/images/resources/att_faces/s1/1.pgm")
    (normal,) = extractor.extract(data)
    real_detect = extractor.detector.detect
    calls = {"n": 0}

    def miss_first(rgb, score_threshold=None):
        calls["n"] += 1
        return [] if calls["n"] == 1 else real_detect(rgb, score_threshold)

    monkeypatch.setattr(extractor.detector, "detect", miss_first)
    (face,) = extractor.extract(data)
    assert face.quality.fallback_whole_image and face.quality.detector_score is None
    assert any("whole image" in w for w in face.quality.warnings)
    assert face.box == (0.0, 0.0, 92.0, 112.0)
    assert float(face.template.vector @ normal.template.vector) > 0.7

    calls["n"] = 0
    with pytest.raises(NoFaceFound):
        extractor.extract(data, policy=QualityPolicy(allow_whole_image_fallback=False))
