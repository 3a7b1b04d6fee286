"""How much matching evidence a print carries for *our* matcher, 0–100: the "evidence score".

The field's quality measure is NFIQ 2 (``enrollment.finger.nfiq2``, NIST's own code), and it is
what the quality report, ISO records and gallery minimums use.  This score is a transparent
measure of what our matcher will have to work with, over three feature families, each normalised
to 0–1 and multiplied (a print is only as good as its weakest aspect):

* **area** — ridge-like foreground, saturating at 160×160 px at 500 dpi (a typical plain impression);
* **clarity** — mean orientation certainty × ridge-band spectral dominance on foreground blocks
  (NFIQ 2's OCL and FDA features in spirit);
* **minutiae** — count of minutiae inside the foreground, saturating at 30, weighted by the
  network's mean confidence (NFIQ 2's minutiae-count / quality features).

It gates what cannot be matched at all (too few minutiae, no ridge area) before NFIQ 2 is asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from enrollment.finger.segmentation import BlockMap

FULL_AREA_PX = 160 * 160
FULL_MINUTIAE = 30
# Gates applied by the extractor (the caller's gallery may ask for a higher score).
MIN_RIDGE_AREA_PX = 48 * 48
MIN_RIDGE_FRACTION = 0.35  # of the contrasted blocks; a face photo has contrast but no ridge texture
#: A print whose ridge-like region is this large (px at 500 dpi, ≈ 78×78) passes the ridge-fraction
#: gate whatever else in the frame has contrast: scanner frames, ink blots and written marks lower
#: the fraction on prints an examiner would accept.  Re-derived on tune identities by
#: ``benchmarks/tune_finger_gate.py`` (the smallest region that at most 1 in 200 tune face photos reach).
CONFIDENT_RIDGE_AREA_PX = 24 * 16 * 16
MIN_MINUTIAE = 6


@dataclass(frozen=True)
class FingerQuality:
    """What the quality score is made of; ``score`` is 0–100 (higher is better)."""

    score: int
    area_px: int  # ridge-like foreground at 500 dpi
    ridge_fraction: float  # ridge-like blocks / contrasted blocks
    clarity: float  # 0–1
    minutiae: int
    mean_minutia_quality: float  # 0–1

    def as_dict(self) -> dict[str, float]:
        return {
            "evidence_score": float(self.score),
            "area_px": float(self.area_px),
            "ridge_fraction": round(self.ridge_fraction, 4),
            "clarity": round(self.clarity, 4),
            "minutiae": float(self.minutiae),
            "mean_minutia_quality": round(self.mean_minutia_quality, 4),
        }


def assess(blocks: BlockMap, minutia_quality: np.ndarray) -> FingerQuality:
    """Quality of a print from its block map and the quality of the minutiae kept inside it."""
    ridge = blocks.ridge_like
    area_px = int(blocks.mask.sum())
    contrasted = int(blocks.foreground.sum())
    ridge_fraction = float((ridge & blocks.foreground).sum() / contrasted) if contrasted else 0.0
    clarity = float((blocks.coherence[ridge] * blocks.band_ratio[ridge]).mean()) if ridge.any() else 0.0
    n = int(minutia_quality.size)
    mean_q = float(minutia_quality.mean()) if n else 0.0
    area_term = min(1.0, area_px / FULL_AREA_PX)
    clarity_term = min(1.0, clarity / 0.6)  # 0.6 ≈ clean optical print
    minutiae_term = min(1.0, n / FULL_MINUTIAE) * mean_q
    score = int(round(100 * area_term * clarity_term * minutiae_term))
    return FingerQuality(score, area_px, ridge_fraction, clarity, n, mean_q)


