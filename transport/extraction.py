"""Samples → templates for the transport: decode a ``pb.Sample`` with the right extractor.

Keeps ``server.py`` thin: template samples are decoded here, image samples go to the
modality's extractor from ``enrollment/``, and the results come back with their quality report
(as protobuf) and, for faces, where in the photo they were found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from enrollment.face.pipeline import FaceExtractor, FaceResult
from enrollment.face.quality import QualityAction, QualityPolicy
from enrollment.finger.errors import LowFingerQuality
from enrollment.finger.pipeline import FingerExtractor
from matcher.errors import InvalidArgument, ModalityUnavailable
from matcher.finger.iso19794 import FORMAT_ID as FINGER_FORMAT_ID
from matcher.finger.iso19794 import to_iso
from matcher.templates import Modality, Template, record_from_bytes, vector_from_bytes
from shanakht.v1 import identity_pb2 as pb

#: Gallery quality policies by name: accept with warnings, or refuse what fails the checks.
QUALITY_POLICIES = {"warn": QualityPolicy(action=QualityAction.WARN), "reject": QualityPolicy(action=QualityAction.REJECT)}


@dataclass(frozen=True)
class Extracted:
    """One template taken from one sample, with its quality and (faces) its box."""

    sample: int
    template: Template
    quality: pb.QualityReport
    box: tuple[float, float, float, float] | None = None


class ImageExtractor(Protocol):
    def __call__(self, sample: pb.Sample, mode: str, largest_face: bool, policy: str) -> list[tuple[Template, pb.QualityReport, tuple | None]]: ...


def face_quality(result: FaceResult) -> pb.QualityReport:
    q = result.quality
    measures = {
        "face_width_px": q.face_width_px,
        "face_height_px": q.face_height_px,
        "inter_eye_px": q.inter_eye_px,
        "sharpness": q.sharpness,
        "yaw_deg": q.yaw_deg,
        "pitch_deg": q.pitch_deg,
        "roll_deg": q.roll_deg,
        "liveness": q.liveness,
        "detector_score": q.detector_score,
        "eye_open_left": q.eyes_open[0] if q.eyes_open else None,
        "eye_open_right": q.eyes_open[1] if q.eyes_open else None,
        "fallback_whole_image": 1.0 if q.fallback_whole_image else 0.0,
    }
    return pb.QualityReport(accepted=True, warnings=list(q.warnings), measures={k: float(v) for k, v in measures.items() if v is not None})


class FaceImages:
    """Adapter: face photo samples through ``FaceExtractor``."""

    def __init__(self, extractor: FaceExtractor) -> None:
        self.extractor = extractor

    def __call__(self, sample: pb.Sample, mode: str, largest_face: bool, policy: str):
        if not sample.face.image:
            raise InvalidArgument("face.image", "is empty")
        try:
            results = self.extractor.extract(
                sample.face.image,
                mode="identify" if mode == "identify" else "enroll",
                largest_face=largest_face or mode in ("verify", "extract"),
                policy=QUALITY_POLICIES.get(policy, QUALITY_POLICIES["warn"]),
            )
        except InvalidArgument as error:
            raise error.under("face")
        return [
            (r.template, face_quality(r), r.box) for r in results
        ]


#: Below this finger quality score (0–100) enrolment warns, or refuses under the "reject" policy:
#: such prints carry too few reliable minutiae to be found again.
FINGER_MIN_QUALITY = 20


class FingerImages:
    """Adapter: fingerprint image samples through ``FingerExtractor``, to ISO 19794-2 templates."""

    def __init__(self, extractor: FingerExtractor) -> None:
        self.extractor = extractor

    def __call__(self, sample: pb.Sample, mode: str, largest_face: bool, policy: str):
        finger = sample.finger
        if not finger.image:
            raise InvalidArgument("finger.image", "is empty")
        if finger.position > 10:
            raise InvalidArgument("finger.position", f"must be 0 (unknown) or 1–10, got {finger.position}")
        try:
            result = self.extractor.extract(finger.image, position=finger.position, dpi=finger.dpi)
        except InvalidArgument as error:
            raise error.under("finger")
        q = result.quality
        warnings = []
        if q.score < FINGER_MIN_QUALITY:
            reason = f"quality score {q.score} is below {FINGER_MIN_QUALITY}"
            if mode == "enroll" and policy == "reject":
                raise LowFingerQuality([reason]).under("finger")
            warnings.append(reason)
        record = np.frombuffer(to_iso(result.template), dtype=np.uint8)
        template = Template(Modality.FINGER, FINGER_FORMAT_ID, record, finger.position)
        return [(template, pb.QualityReport(accepted=True, warnings=warnings, measures=q.as_dict()), None)]


class SampleDecoder:
    """Turns request samples into templates; one image extractor per modality."""

    def __init__(self, extractors: dict[Modality, ImageExtractor]) -> None:
        self.extractors = extractors

    def decode(
        self, samples: Iterable[pb.Sample], mode: str, field: str = "samples", largest_face: bool = False, policy: str = "warn"
    ) -> list[Extracted]:
        extracted: list[Extracted] = []
        for i, sample in enumerate(samples):
            try:
                for template, quality, box in self._one(sample, mode, largest_face, policy):
                    extracted.append(Extracted(i, template, quality, box))
            except InvalidArgument as error:
                raise error.under(f"{field}[{i}]")
        return extracted

    def _one(self, sample: pb.Sample, mode: str, largest_face: bool, policy: str):
        kind = sample.WhichOneof("kind")
        if kind is None:
            raise InvalidArgument("", "no face, finger or template set")
        if kind == "template":
            t = sample.template
            if t.modality not in (pb.MODALITY_FACE, pb.MODALITY_FINGER):
                raise InvalidArgument("template.modality", f"must be MODALITY_FACE or MODALITY_FINGER, got {t.modality}")
            if not t.model_id:
                raise InvalidArgument("template.model_id", "must not be empty")
            if t.finger_position > 10:
                raise InvalidArgument("template.finger_position", f"must be 0–10, got {t.finger_position}")
            modality = Modality(t.modality)
            decode = record_from_bytes if modality is Modality.FINGER else vector_from_bytes
            template = Template(modality, t.model_id, decode(t.vector, "template.vector"), t.finger_position)
            return [(template, pb.QualityReport(accepted=True), None)]
        modality = Modality.FACE if kind == "face" else Modality.FINGER
        extractor = self.extractors.get(modality)
        if extractor is None:
            raise ModalityUnavailable(f"{modality.label} images are not supported by this server yet; send a template sample instead")
        return extractor(sample, mode, largest_face, policy)
