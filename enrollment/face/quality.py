"""Quality of one face sample: the measurements, and the policy that judges them.

Measurements are reported for every face whatever the policy says, so a client can show the
operator *why* a capture is poor.  The policy is per gallery: prison intake rejects a blurred
mugshot and asks for a retake; a watch-list probe from a camera is searched anyway, with
warnings attached.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

import cv2
import numpy as np


class QualityAction(enum.Enum):
    """What a failed check does: refuse the sample, or accept it and attach the reasons."""

    REJECT = "reject"
    WARN = "warn"


@dataclass(frozen=True)
class QualityReport:
    """What we measured on one face.  ``None`` means the measurement was not possible for this input.

    ``fallback_whole_image`` is set when the detector found nothing and the whole image, being a
    plausible tight face crop, was used as the face box (landmarks and alignment still ran).
    """

    face_width_px: float
    face_height_px: float
    inter_eye_px: float | None
    sharpness: float  # variance of the Laplacian of the 112×112 aligned grey crop
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    roll_deg: float | None = None
    eyes_open: tuple[float, float] | None = None  # probability that the left / right eye is open
    liveness: float | None = None  # probability of a live capture (see enrollment.face.liveness)
    detector_score: float | None = None
    fallback_whole_image: bool = False
    pre_aligned: bool = False
    grayscale: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def both_eyes_open(self) -> bool | None:
        return None if self.eyes_open is None else bool(min(self.eyes_open) >= 0.5)

    def measures(self) -> dict[str, float]:
        """The numeric measurements, by name, as a quality report shows them (``None`` ones left out)."""
        values = {
            "face_width_px": self.face_width_px,
            "face_height_px": self.face_height_px,
            "inter_eye_px": self.inter_eye_px,
            "sharpness": self.sharpness,
            "yaw_deg": self.yaw_deg,
            "pitch_deg": self.pitch_deg,
            "roll_deg": self.roll_deg,
            "liveness": self.liveness,
            "detector_score": self.detector_score,
            "eye_open_left": self.eyes_open[0] if self.eyes_open else None,
            "eye_open_right": self.eyes_open[1] if self.eyes_open else None,
            "fallback_whole_image": 1.0 if self.fallback_whole_image else 0.0,
        }
        return {name: float(value) for name, value in values.items() if value is not None}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        if self.eyes_open is not None:
            data["eyes_open"] = list(self.eyes_open)
        return data


@dataclass(frozen=True)
class QualityPolicy:
    """Thresholds a gallery applies to every face; ``None`` disables a check.

    Defaults are permissive and only warn: they flag captures that measurably lose accuracy
    (tiny faces, strong profile, heavy blur) without refusing the legacy photos a gallery is
    built from.  ``QualityPolicy.strict()`` is a starting point for live enrolment desks.
    """

    min_inter_eye_px: float | None = 20.0
    min_sharpness: float | None = 20.0
    max_abs_yaw_deg: float | None = 45.0
    max_abs_pitch_deg: float | None = 35.0
    require_eyes_open: bool = False
    require_live: bool = False
    min_liveness: float = 0.5
    allow_whole_image_fallback: bool = True
    action: QualityAction = QualityAction.WARN

    @classmethod
    def strict(cls) -> "QualityPolicy":
        """For a live enrolment desk (camera, cooperative subject): refuse poor captures."""
        return cls(
            min_inter_eye_px=40.0,
            min_sharpness=40.0,
            max_abs_yaw_deg=25.0,
            max_abs_pitch_deg=25.0,
            require_eyes_open=True,
            action=QualityAction.REJECT,
        )


#: A gallery's quality policy by name (``enrollment.extractor.QUALITY_POLICIES``): warn, or refuse what fails.
POLICIES = {"warn": QualityPolicy(action=QualityAction.WARN), "reject": QualityPolicy(action=QualityAction.REJECT)}


def assess(report: QualityReport, policy: QualityPolicy) -> list[str]:
    """Reasons ``report`` fails ``policy``, one readable sentence per failed check (empty = passes).

    A measurement that is ``None`` (not computed for this input, e.g. pose on a pre-aligned crop)
    passes its check: we refuse on evidence, not on its absence.
    """
    reasons: list[str] = []
    if report.fallback_whole_image and not policy.allow_whole_image_fallback:
        reasons.append("no face detected; the whole image was used as the face (tight crop)")
    if policy.min_inter_eye_px is not None and report.inter_eye_px is not None:
        if report.inter_eye_px < policy.min_inter_eye_px:
            reasons.append(
                f"face too small: {report.inter_eye_px:.0f} px between the eyes, at least {policy.min_inter_eye_px:.0f} needed"
            )
    if policy.min_sharpness is not None and report.sharpness < policy.min_sharpness:
        reasons.append(f"image too blurred: sharpness {report.sharpness:.0f}, at least {policy.min_sharpness:.0f} needed")
    if policy.max_abs_yaw_deg is not None and report.yaw_deg is not None and abs(report.yaw_deg) > policy.max_abs_yaw_deg:
        reasons.append(f"head turned {report.yaw_deg:+.0f}° (yaw); at most ±{policy.max_abs_yaw_deg:.0f}° allowed")
    if policy.max_abs_pitch_deg is not None and report.pitch_deg is not None and abs(report.pitch_deg) > policy.max_abs_pitch_deg:
        reasons.append(f"head tilted {report.pitch_deg:+.0f}° (pitch); at most ±{policy.max_abs_pitch_deg:.0f}° allowed")
    if policy.require_eyes_open and report.both_eyes_open is False:
        reasons.append("eyes closed")
    if policy.require_live and report.liveness is not None and report.liveness < policy.min_liveness:
        reasons.append(f"possible presentation attack: liveness {report.liveness:.2f} below {policy.min_liveness:.2f}")
    return reasons


def sharpness(aligned: np.ndarray) -> float:
    """Variance of the Laplacian on the aligned crop.

    Measured on the 112×112 crop rather than the photo, so the number does not depend on the
    photo's resolution or on how much background surrounds the face.
    """
    gray = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY) if aligned.ndim == 3 else aligned
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())
