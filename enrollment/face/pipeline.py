"""Photo bytes → one template per face, with its box and quality report.

Composes the model classes: decode → detect (padded) → landmarks → align 112×112 → embed (fr_feature
and MobileFaceNet, fused into one template: ``enrollment.face.fused``), plus pose, eye state,
liveness and sharpness for the quality report.  The only public class is
:class:`FaceExtractor`; ``server.py`` builds one per process and calls :meth:`FaceExtractor.extract`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from enrollment import models
from enrollment.calibration import load_calibration
from enrollment.errors import ImageDecodeError, LowQuality, MultipleFaces, NoFaceFound
from enrollment.face.align import ALIGNED_SIZE, Box, five_points, warp_to_template
from enrollment.face.detector import Detection, FaceDetector
from enrollment.face.embedder import FaceEmbedder
from enrollment.face.fused import DIMENSION, FusedEmbedder, template_model_id
from enrollment.face.mobilefacenet import MobileFaceNetEmbedder
from enrollment.face.eyes import EyeStateModel
from enrollment.face.landmarks import LandmarkModel
from enrollment.face.liveness import LivenessModel
from enrollment.face.pose import PoseModel
from enrollment.extractor import Extraction, Purpose, SampleImage, SampleQuality
from enrollment.face.quality import POLICIES, QualityAction, QualityPolicy, QualityReport, assess, sharpness
from enrollment.image import DEFAULT_LIMITS, DecodeLimits, decode_image
from matcher.calibration import Calibration
from matcher.templates import Modality, Template

log = logging.getLogger(__name__)

Mode = Literal["enroll", "identify"]
STAGES = ("decode", "detect", "landmarks", "align", "embed", "quality", "liveness")

# A tight crop (mugshot, legacy record) is portrait or square; a landscape frame is not.
_CROP_ASPECT = (0.75, 1.7)  # height / width
# In enroll mode, a detection smaller than this fraction of the main face's height, or less sure
# than SECONDARY_FACE_SCORE, is a background face (a poster, a passer-by) or a false positive:
# reported as a warning, not MultipleFaces.  Policy, not fitted (benchmarks/constants.toml): no
# data labels second persons to trade refusals against; benchmarks/tune_face.py counts the tune
# photos these bounds refuse.
SECONDARY_FACE_RATIO = 0.4
SECONDARY_FACE_SCORE = 0.9


@dataclass(frozen=True)
class FaceResult:
    """One face: its template (unit vector, model id), where it is, and how good it is."""

    template: Template
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the upright original
    quality: QualityReport
    landmarks: np.ndarray | None = field(default=None, compare=False)  # [68, 2], same pixels; None if pre-aligned


class FaceExtractor:
    """Loads the face models once (hash-verified) and turns images into templates.

    Thread-safety: ONNX Runtime sessions may be run from several threads; the extractor keeps no
    per-call state, so one instance can serve a thread pool.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        threads: int = 1,
        policy: QualityPolicy | None = None,
        limits: DecodeLimits = DEFAULT_LIMITS,
        with_quality_models: bool = True,
    ) -> None:
        manifest = models.load_manifest()

        def path(name: str) -> Path:
            return models.load_verified(name, model_dir, manifest)

        self.model_id = template_model_id(manifest)
        self.policy = policy or QualityPolicy()
        self.limits = limits
        self.detector = FaceDetector(path("fr_detect"), threads)
        self.landmarks = LandmarkModel(path("fr_landmark"), threads)
        self.embedder = FusedEmbedder(
            FaceEmbedder(path("fr_feature"), threads), MobileFaceNetEmbedder(path("mfn_feature"), threads)
        )
        # Pose, eyes and liveness only feed the quality report; a bulk re-enrolment may skip them.
        self.pose = PoseModel(path("fr_pose"), threads) if with_quality_models else None
        self.eyes = EyeStateModel(path("fr_eye"), threads) if with_quality_models else None
        self.liveness = LivenessModel(path("fr_liveness"), threads) if with_quality_models else None

    modality = Modality.FACE
    dimension = DIMENSION

    # ------------------------------------------------------------------ public API

    def calibration(self) -> Calibration:
        """The face template's shipped table, refused (``ModelUnavailable``) once ``enrollment.face.provenance`` changed."""
        return load_calibration()

    def extract_sample(
        self, image: SampleImage, purpose: Purpose, main_only: bool, policy: str, minimum: int = 0
    ) -> list[Extraction]:
        """``Extractor`` for the transport: every face of a checkpoint frame when identifying, the main one otherwise.

        ``minimum`` is always 0: faces have no single quality score, so galleries cannot set one.
        """
        results = self.extract(
            image.data,
            mode="identify" if purpose == "identify" else "enroll",
            largest_face=main_only or purpose in ("verify", "extract"),
            policy=POLICIES.get(policy, POLICIES["warn"]),
        )
        return [Extraction(r.template, SampleQuality(True, r.quality.warnings, r.quality.measures()), r.box) for r in results]


    def extract(
        self,
        image_bytes: bytes,
        *,
        mode: Mode = "enroll",
        largest_face: bool = False,
        policy: QualityPolicy | None = None,
        timings: MutableMapping[str, float] | None = None,
    ) -> list[FaceResult]:
        """Templates for the faces in a photo.

        ``enroll``: exactly one face is expected; several comparable faces raise
        ``MultipleFaces`` unless ``largest_face`` (then the main face, by detector score and size,
        is used).  ``identify``: every face is returned, best first (a checkpoint frame).
        Raises ``ImageDecodeError``, ``NoFaceFound``, ``MultipleFaces`` or ``LowQuality``
        (when the policy rejects; in identify mode only if *every* face fails).
        ``timings``, if given, accumulates seconds per stage (see ``STAGES``).
        """
        if mode not in ("enroll", "identify"):
            raise ValueError(f"mode must be 'enroll' or 'identify', got {mode!r}")
        policy = policy or self.policy
        with _timed(timings, "decode"):
            image = decode_image(image_bytes, self.limits)
        rgb = image.rgb
        with _timed(timings, "detect"):
            detections = self.detector.detect(rgb)

        warnings: list[str] = []
        fallback = False
        if not detections:
            detections = self._whole_image_fallback(rgb, policy, timings)
            if not detections:
                raise NoFaceFound()
            fallback = True
            warnings.append("no face detected; the whole image was used as the face (tight crop)")
        elif mode == "enroll":
            detections, ignored = split_main_face(detections)
            if ignored:
                warnings.append(f"{ignored} much smaller or doubtful face(s) in the background ignored")
            if len(detections) > 1 and not largest_face:
                raise MultipleFaces(len(detections))
            if len(detections) > 1:
                warnings.append(f"{len(detections)} faces found; the main one (score and size) was used")
            detections = detections[:1]

        results = self._describe(rgb, detections, fallback, image.grayscale, warnings, timings)
        return self._apply_policy(results, policy, mode)

    def extract_aligned(self, image_bytes: bytes, *, policy: QualityPolicy | None = None) -> FaceResult:
        """Template for an image that is already a 112×112 crop aligned to the ArcFace template.

        For galleries migrated from systems that stored aligned crops (and for glint24_aligned):
        no detection or alignment is run, and pose, eyes and liveness are not measured.
        """
        image = decode_image(image_bytes, self.limits)
        if image.rgb.shape[:2] != (ALIGNED_SIZE, ALIGNED_SIZE):
            raise ImageDecodeError(
                f"an aligned face must be {ALIGNED_SIZE}×{ALIGNED_SIZE} pixels, got {image.width}×{image.height}"
            )
        (vector,) = self.embedder.embed([image.rgb])
        report = QualityReport(
            face_width_px=float(ALIGNED_SIZE),
            face_height_px=float(ALIGNED_SIZE),
            inter_eye_px=None,
            sharpness=sharpness(image.rgb),
            pre_aligned=True,
            grayscale=image.grayscale,
        )
        result = FaceResult(
            template=self._template(vector, report),
            box=(0.0, 0.0, float(ALIGNED_SIZE), float(ALIGNED_SIZE)),
            quality=report,
        )
        (result,) = self._apply_policy([result], policy or self.policy, "enroll")
        return result

    def embed_aligned(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, 704]`` unit templates for aligned 112×112 RGB uint8 crops (no decoding, no checks beyond shape)."""
        return self.embedder.embed(crops)

    # ------------------------------------------------------------------ steps

    def _whole_image_fallback(
        self, rgb: np.ndarray, policy: QualityPolicy, timings: MutableMapping[str, float] | None
    ) -> list[Detection]:
        """The whole image as the face box, if it is a plausible tight face crop.

        Legacy records hold mugshots cropped so tightly that the detector sees no face.  We
        accept the whole image only when (1) it has a portrait/square shape, (2) the landmarks
        found in it have a face's geometry, and (3) the detector does find a face in the crop
        aligned from those landmarks, so a wall, a gradient or noise is still "no face".
        """
        if not policy.allow_whole_image_fallback:
            return []
        h, w = rgb.shape[:2]
        if not _CROP_ASPECT[0] <= h / w <= _CROP_ASPECT[1]:
            return []
        # The landmark model expects a square of side = box height centred on the face; for a
        # portrait crop that square is the full height.
        box = Box(0.0, 0.0, float(w), float(h))
        with _timed(timings, "landmarks"):
            points = self.landmarks.predict(rgb, [box])[0]
        if not _face_geometry(points, box):
            return []
        with _timed(timings, "align"):
            aligned = warp_to_template(rgb, five_points(points))
        with _timed(timings, "detect"):
            confirmed = self.detector.detect(aligned)
        if not confirmed:
            log.debug("whole-image fallback refused: no face in the aligned crop")
            return []
        return [Detection(box=box, score=float("nan"))]

    def _describe(
        self,
        rgb: np.ndarray,
        detections: Sequence[Detection],
        fallback: bool,
        grayscale: bool,
        warnings: list[str],
        timings: MutableMapping[str, float] | None,
    ) -> list[FaceResult]:
        boxes = [d.box for d in detections]
        with _timed(timings, "landmarks"):
            landmarks = self.landmarks.predict(rgb, boxes)
        with _timed(timings, "align"):
            points = [five_points(p) for p in landmarks]
            aligned = [warp_to_template(rgb, p) for p in points]
        with _timed(timings, "embed"):
            vectors = self.embedder.embed(aligned)
        with _timed(timings, "quality"):
            poses = self.pose.predict(rgb, boxes) if self.pose else None
            eyes = self.eyes.predict(rgb, landmarks) if self.eyes else None
            sharp = [sharpness(a) for a in aligned]
        with _timed(timings, "liveness"):
            live = self.liveness.score(rgb, boxes) if self.liveness else None

        results = []
        for i, detection in enumerate(detections):
            report = QualityReport(
                face_width_px=detection.box.width,
                face_height_px=detection.box.height,
                inter_eye_px=float(np.linalg.norm(points[i][1] - points[i][0])),
                sharpness=sharp[i],
                yaw_deg=None if poses is None else float(poses[i, 0]),
                pitch_deg=None if poses is None else float(poses[i, 1]),
                roll_deg=None if poses is None else float(poses[i, 2]),
                eyes_open=None if eyes is None else (float(eyes[i, 0]), float(eyes[i, 1])),
                liveness=None if live is None else float(live[i]),
                detector_score=None if fallback else detection.score,
                fallback_whole_image=fallback,
                grayscale=grayscale,
                warnings=tuple(warnings),
            )
            results.append(
                FaceResult(
                    template=self._template(vectors[i], report),
                    box=detection.box.as_tuple(),
                    quality=report,
                    landmarks=landmarks[i],
                )
            )
        return results

    def _apply_policy(self, results: list[FaceResult], policy: QualityPolicy, mode: Mode) -> list[FaceResult]:
        """Attach failed checks as warnings, or refuse: the whole sample in enroll mode, the failing
        faces in identify mode (a poor face in the corner of a frame must not hide a good one)."""
        kept, all_reasons = [], []
        for result in results:
            reasons = assess(result.quality, policy)
            if not reasons:
                kept.append(result)
            elif policy.action is QualityAction.REJECT:
                all_reasons.extend(reasons)
            else:
                report = replace(result.quality, warnings=result.quality.warnings + tuple(reasons))
                kept.append(replace(result, quality=report, template=self._template(result.template.vector, report)))
        if not kept:
            raise LowQuality(list(dict.fromkeys(all_reasons)))
        if mode == "enroll" and len(kept) != len(results):
            raise LowQuality(list(dict.fromkeys(all_reasons)))
        return kept

    def _template(self, vector: np.ndarray, report: QualityReport) -> Template:
        return Template(modality=Modality.FACE, model_id=self.model_id, vector=vector, quality=report.to_dict())


def split_main_face(detections: Sequence[Detection]) -> tuple[list[Detection], int]:
    """Faces comparable to the main one, and the count of much smaller ones set aside."""
    main = detections[0]
    comparable = [main] + [
        d
        for d in detections[1:]
        if d.box.height >= SECONDARY_FACE_RATIO * main.box.height and d.score >= SECONDARY_FACE_SCORE
    ]
    return comparable, len(detections) - len(comparable)


def _face_geometry(points: np.ndarray, box: Box) -> bool:
    """Do 68 landmarks look like an upright face filling a tight crop? (A cheap check against noise.)"""
    p5 = five_points(points)
    left_eye, right_eye, nose, mouth_l, mouth_r = p5
    eye_dist = float(np.linalg.norm(right_eye - left_eye))
    if not 0.2 * box.width <= eye_dist <= 0.8 * box.width:
        return False
    if not left_eye[0] < nose[0] < right_eye[0]:
        return False
    eye_y = (left_eye[1] + right_eye[1]) / 2
    mouth_y = (mouth_l[1] + mouth_r[1]) / 2
    if not eye_y < nose[1] < mouth_y:
        return False
    inside = (points[:, 0] > box.x1 - 0.1 * box.width) & (points[:, 0] < box.x2 + 0.1 * box.width)
    inside &= (points[:, 1] > box.y1 - 0.1 * box.height) & (points[:, 1] < box.y2 + 0.1 * box.height)
    return bool(inside.mean() > 0.9)


@contextmanager
def _timed(timings: MutableMapping[str, float] | None, stage: str) -> Iterator[None]:
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def stage_names() -> Mapping[str, str]:
    """Human names of the stages timed by ``extract``, for reports."""
    return {
        "decode": "decode image",
        "detect": "fr_detect (padded)",
        "landmarks": "fr_landmark",
        "align": "5-point similarity warp",
        "embed": "fr_feature + MobileFaceNet",
        "quality": "fr_pose + fr_eye + sharpness",
        "liveness": "fr_liveness",
    }

