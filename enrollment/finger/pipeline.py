"""``FingerExtractor``: fingerprint image bytes → ``FingerTemplate`` + quality report.

Steps: decode (and resample to 500 dpi) → block analysis and foreground mask → gates (is this
a fingerprint at all?) → LEADER on the print's bounding box only (the network costs time
per pixel; FVC DB1 prints are half background) → keep minutiae inside the print mask → template.
Gates run *before* the network so that a face photo or a blank page costs milliseconds.
NIST's NFIQ 2 runs on another thread while LEADER runs (both are native code that releases the
GIL), so the field's quality score costs the caller little wall time on a machine with a spare core.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from enrollment import models
from enrollment.calibration import load_finger_calibration
from enrollment.extractor import Extraction, Purpose, SampleImage, SampleQuality
from enrollment.errors import LowFingerQuality, NoFingerprint
from enrollment.finger import quality as quality_mod
from enrollment.finger.image import FingerImage, decode_finger, decode_raw
from enrollment.finger.nfiq2 import Nfiq2Assessor, Nfiq2Score
from enrollment.finger.minutiae import MODEL_NAME, QUALITY_THRESHOLD, LeaderMinutiae, RawMinutiae
from enrollment.finger.quality import FingerQuality
from enrollment.finger.segmentation import CROP_MARGIN, BlockMap, analyse
from matcher.calibration import Calibration
from matcher.finger.iso19794 import FORMAT_ID, to_iso
from matcher.finger.template import FingerTemplate
from matcher.templates import Modality, Template, validate_finger_position

MAX_SIDE_500DPI = 2048  # a four-finger slap is ≈ 1600 px wide at 500 dpi
STAGES = ("decode", "segment", "minutiae", "nfiq2_wait", "template")
#: Below this quality score (0–100) enrolment warns, or refuses under a gallery's "reject" policy:
#: such prints carry too few reliable minutiae to be found again.
MIN_ENROL_QUALITY = 20


class MinutiaeDetector(Protocol):
    def detect(self, gray: np.ndarray, quality_threshold: float = QUALITY_THRESHOLD) -> RawMinutiae: ...


class QualityAssessor(Protocol):
    def assess(self, gray_500dpi: np.ndarray) -> Nfiq2Score: ...


@dataclass(frozen=True)
class FingerResult:
    """A template and why it can be trusted (quality), plus per-stage timings in ms."""

    template: FingerTemplate
    quality: FingerQuality
    nfiq2: Nfiq2Score
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)


class FingerExtractor:
    """Composes decoding, segmentation, LEADER and quality; one instance per thread or shared."""

    def __init__(
        self,
        model_dir: Path | str | None = None,
        threads: int = 1,
        detector: MinutiaeDetector | None = None,
        min_quality: int = 0,
        nfiq2: QualityAssessor | None = None,
    ) -> None:
        if detector is None:
            detector = LeaderMinutiae(models.load_verified(MODEL_NAME, model_dir), threads)
        self._detector = detector
        self._nfiq2 = nfiq2 or Nfiq2Assessor()
        self._beside = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="nfiq2")
        self.min_quality = min_quality

    modality = Modality.FINGER
    model_id = FORMAT_ID  # templates are ISO/IEC 19794-2 records, whoever extracted them
    dimension = 0

    def calibration(self) -> Calibration:
        """The matcher's shipped table, refused (``ModelUnavailable``) once ``enrollment.finger.provenance`` changed."""
        return load_finger_calibration()

    def extract_sample(
        self, image: SampleImage, purpose: Purpose, main_only: bool, policy: str, minimum: int = 0
    ) -> list[Extraction]:
        """``Extractor`` for the transport: one ISO/IEC 19794-2 template per finger image.

        ``minimum`` is the gallery's NFIQ 2 minimum: below it enrolment is refused whatever the
        policy, because a gallery that set one promised its users nothing poorer is in it.
        """
        validate_finger_position(image.position, "position")
        result = self.extract(image.data, position=image.position, dpi=image.dpi)
        score, nfiq2, warnings = result.quality.score, result.nfiq2, [result.nfiq2.failure] if result.nfiq2.failure else []
        if purpose == "enroll" and nfiq2.score < minimum:
            raise LowFingerQuality([f"NFIQ 2 score {nfiq2.score} is below this gallery's minimum of {minimum}"])
        if score < MIN_ENROL_QUALITY:
            reason = f"evidence score {score} is below {MIN_ENROL_QUALITY}"
            if purpose == "enroll" and policy == "reject":
                raise LowFingerQuality([reason])
            warnings.append(reason)
        record = np.frombuffer(to_iso(result.template), dtype=np.uint8)
        template = Template(Modality.FINGER, FORMAT_ID, record, image.position)
        measures = result.quality.as_dict() | nfiq2.as_dict()
        return [Extraction(template, SampleQuality(True, tuple(warnings), measures))]

    def extract(self, image_bytes: bytes, position: int = 0, dpi: float = 0) -> FingerResult:
        """Template of an encoded image (TIFF, BMP, PNG, PGM, JPEG, WSQ)."""
        start = time.perf_counter()
        image = decode_finger(image_bytes, dpi)
        return self._from_image(image, position, start)

    def extract_raw(self, pixels: bytes, width: int, height: int, position: int = 0, dpi: float = 0) -> FingerResult:
        """Template of headerless 8-bit grayscale pixels."""
        start = time.perf_counter()
        return self._from_image(decode_raw(pixels, width, height, dpi), position, start)

    def _from_image(self, image: FingerImage, position: int, start: float) -> FingerResult:
        validate_finger_position(position, "finger_position")
        timings = {"decode": (time.perf_counter() - start) * 1e3}
        if max(image.width, image.height) > MAX_SIDE_500DPI:
            raise NoFingerprint(
                f"image is {image.width}×{image.height} px at 500 dpi; larger than any fingerprint capture "
                f"(at most {MAX_SIDE_500DPI} px per side)"
            )
        t = time.perf_counter()
        blocks = analyse(image.gray)
        _gate(blocks)
        timings["segment"] = (time.perf_counter() - t) * 1e3

        nfiq2 = self._beside.submit(self._nfiq2.assess, image.gray)
        t = time.perf_counter()
        try:
            raw = self._detect_in_foreground(image.gray, blocks)
        finally:
            timings["minutiae"] = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            nfiq2_score = nfiq2.result()
            timings["nfiq2_wait"] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        inside = blocks.print_mask[raw.y.astype(np.intp), raw.x.astype(np.intp)]
        q = quality_mod.assess(blocks, raw.quality[inside])
        reasons = []
        if q.minutiae < quality_mod.MIN_MINUTIAE:
            reasons.append(f"{q.minutiae} minutiae found; at least {quality_mod.MIN_MINUTIAE} are needed to match")
        if q.score < self.min_quality:
            reasons.append(f"quality score {q.score} is below the required {self.min_quality}")
        if reasons:
            raise LowFingerQuality(reasons)
        template = FingerTemplate.from_arrays(
            raw.x[inside], raw.y[inside], raw.theta[inside], raw.kind[inside], raw.quality[inside],
            image.width, image.height, position=position, image_quality=nfiq2_score.score,
        )
        timings["template"] = (time.perf_counter() - t) * 1e3
        return FingerResult(template, q, nfiq2_score, timings)

    def _detect_in_foreground(self, gray: np.ndarray, blocks: BlockMap) -> RawMinutiae:
        crop, (y0, x0) = foreground_crop(gray, blocks)
        raw = self._detector.detect(crop)
        return RawMinutiae(raw.x + x0, raw.y + y0, raw.theta, raw.kind, raw.quality)


def foreground_crop(gray: np.ndarray, blocks: BlockMap) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of ``gray`` LEADER runs on: the print mask's bounding box plus ``CROP_MARGIN``, and its top-left corner."""
    ys, xs = np.nonzero(blocks.print_mask)
    y0, y1 = max(0, ys.min() - CROP_MARGIN), min(gray.shape[0], ys.max() + 1 + CROP_MARGIN)
    x0, x1 = max(0, xs.min() - CROP_MARGIN), min(gray.shape[1], xs.max() + 1 + CROP_MARGIN)
    return np.ascontiguousarray(gray[y0:y1, x0:x1]), (int(y0), int(x0))


def _gate(blocks: BlockMap) -> None:
    """Refuse images that are not fingerprints before spending the network on them."""
    contrasted = int(blocks.foreground.sum())
    if contrasted == 0:
        raise NoFingerprint("the image is blank (no contrast anywhere)")
    ridge_fraction = float((blocks.ridge_like & blocks.foreground).sum()) / contrasted
    area = int(blocks.mask.sum())
    if ridge_fraction < quality_mod.MIN_RIDGE_FRACTION and area < quality_mod.CONFIDENT_RIDGE_AREA_PX:
        raise NoFingerprint(
            f"only {ridge_fraction:.0%} of the image's textured area looks like ridges at 500 dpi, and the largest "
            f"ridge region is {area} px (a photo, or a print at the wrong dpi?)"
        )
    if area < quality_mod.MIN_RIDGE_AREA_PX:
        raise NoFingerprint(f"ridge area is {area} px at 500 dpi; at least {quality_mod.MIN_RIDGE_AREA_PX} are needed")
