"""NFIQ 2 (ISO/IEC 29794-4), NIST's fingerprint quality score, through ``nbis-py==0.1.3``.

Every AFIS operator reads print quality as NFIQ 2: 0–100, higher meaning the print is more useful
to a matcher.  We run NIST's own code (the Rust bindings of nbis-py, which link NIST's NFIQ 2 and
its trained random forest) rather than approximating it, so a score here means what it means in
another agency's system.

The package offers NFIQ 2 only as part of a mindtct extraction, so each assessment also pays for
mindtct (≈ 100 ms of a ≈ 230 ms call on an FVC print here); the pipeline runs it on its own thread,
beside the minutiae network.  The image given is the 500-dpi grayscale the pipeline already made
(NFIQ 2 is defined at 500 ppi).  Prints too small or blank for NFIQ 2 get score 0 and the reason,
because the quality report must always carry a score and 0 is NFIQ 2's "no utility".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

import nbis

#: NFIQ 2's actionable quality feedback, under the names the quality report uses.
ACTIONABLE = {
    "UniformImage": "nfiq2_uniform_image",
    "EmptyImageOrContrastTooLow": "nfiq2_contrast",
    "FingerprintImageWithMinutiae": "nfiq2_minutiae",
    "SufficientFingerprintForeground": "nfiq2_foreground_px",
}
NFIQ2_PPI = 500.0


@dataclass(frozen=True)
class Nfiq2Score:
    """An NFIQ 2 score (0–100) with NIST's actionable feedback; ``failure`` says why it is 0 when NFIQ 2 could not run."""

    score: int
    actionable: dict[str, float] = field(default_factory=dict)
    failure: str = ""

    def as_dict(self) -> dict[str, float]:
        return {"nfiq2": float(self.score), **self.actionable}


class Nfiq2Assessor:
    """One NIST NFIQ 2 model, shared by every thread (its calls are re-entrant; loading it takes ≈ 0.6 s)."""

    def __init__(self) -> None:
        self._extractor: nbis.NbisExtractor | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> nbis.NbisExtractor:
        with self._lock:
            if self._extractor is None:
                settings = nbis.NbisExtractorSettings(
                    min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=True, ppi=NFIQ2_PPI
                )
                self._extractor = nbis.new_nbis_extractor(settings)
            return self._extractor

    def assess(self, gray_500dpi: np.ndarray) -> Nfiq2Score:
        """NFIQ 2 of an 8-bit grayscale print at 500 dpi."""
        ok, encoded = cv2.imencode(".bmp", np.ascontiguousarray(gray_500dpi, dtype=np.uint8))
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 2-D array
            return Nfiq2Score(0, failure="the image could not be encoded for NFIQ 2")
        try:
            result = self._loaded().extract_minutiae(encoded.tobytes()).quality()
        except nbis.NbisError as error:
            return Nfiq2Score(0, failure=f"NFIQ 2 could not assess this print ({type(error).__name__}); scored 0")
        actionable = {ACTIONABLE[v.name]: round(float(v.value), 4) for v in result.actionable if v.name in ACTIONABLE}
        return Nfiq2Score(int(result.score), actionable)
