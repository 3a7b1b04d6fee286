"""Calibration: raw similarity → ``-log10(FMR)``.

Every score that leaves Shanakht means "one false match in 10^score impostor comparisons",
estimated from the model's impostor distribution.  Raw cosines never leave the library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """A monotone map from similarity to ``-log10(FMR)``.

    ``similarities`` ascending, ``scores`` non-decreasing, interpolated linearly and clamped
    at both ends: beyond the table we know nothing finer than its last point.
    """

    source: str
    similarities: tuple[float, ...]
    scores: tuple[float, ...]
    # Measured corrections of fused scores, by how many probes were fused: the fused score (as
    # ``matcher.fusion`` computes it, assuming independence) → ``-log10`` of the rate at which
    # impostor probes of that many parts actually reached it.  Two fingers of one pair of people
    # are not independent, so their fused score needs one; see ``fusion_for``.
    fusion: tuple[tuple[int, "Calibration"], ...] = ()

    def __post_init__(self) -> None:
        sims = np.asarray(self.similarities, dtype=np.float64)
        scores = np.asarray(self.scores, dtype=np.float64)
        if sims.ndim != 1 or sims.shape != scores.shape or sims.size < 2:
            raise ValueError("calibration needs two equal-length tables of at least two points")
        if np.any(np.diff(sims) <= 0) or np.any(np.diff(scores) < 0):
            raise ValueError("calibration tables must be increasing")

    def score(self, similarity: np.ndarray | float) -> np.ndarray:
        """Calibrated score(s) for raw similarity value(s)."""
        return np.interp(similarity, self.similarities, self.scores).astype(np.float32)

    def fusion_for(self, parts: int) -> "Calibration | None":
        """The measured fusion correction for ``parts`` probes: the table of the most parts measured up to ``parts``.

        Beyond the largest measured count the largest table is used; dependence grows with the
        number of parts, so that under-corrects, but less than no table.
        """
        fitted = [(k, table) for k, table in self.fusion if k <= parts]
        return max(fitted, key=lambda item: item[0])[1] if fitted else None

    def similarity_for_score(self, score: float) -> float:
        """The raw similarity at which the calibrated score reaches ``score`` (threshold search)."""
        return float(np.interp(score, self.scores, self.similarities))

    @classmethod
    def null_model(cls, dimension: int, max_score: float = 12.0, points: int = 256) -> "Calibration":
        """Calibration for a model without a measured table: independent random unit vectors.

        Their cosine is ≈ N(0, 1/d), so FMR(s) = erfc(s·sqrt(d/2)) / 2.  Right for synthetic
        templates; optimistic for real embedders, which is why real models ship a measured table.
        """
        sims, scores = [], []
        scale = math.sqrt(dimension / 2.0)
        for s in np.linspace(-1.0, 1.0, points):
            fmr = 0.5 * math.erfc(s * scale)
            value = max(0.0, min(max_score, -math.log10(fmr) if fmr > 0 else max_score))
            if scores and value <= scores[-1]:
                value = scores[-1]
            sims.append(float(s))
            scores.append(value)
        return cls(source=f"null-model(d={dimension})", similarities=tuple(sims), scores=tuple(scores))
