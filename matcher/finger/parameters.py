"""The minutiae matcher's parameters, in one place: the Cython kernel is called with them
(``matcher.finger.matching``) and the NumPy reference (``matcher.finger.reference``) reads them.

What each one does is described with the score in ``matcher.finger.reference``.  They were
chosen by measurement on development prints; a change changes raw scores, so the finger
calibration table must be refitted (``python benchmarks/calibrate.py finger``).
"""

from __future__ import annotations

import math

SEEDS = 16
DIST_TOL = 8.0
DIST_GROWTH = 0.0
ANGLE_TOL = math.pi / 8
MAX_DIRECTION_DIFF = math.pi / 2
MIN_COMMON_FRACTION = 0.60
CELLS_IN_RADIUS_BITS = 208 * 6  # in-radius cells (16×16 grid, R = 70) × direction cells
MIN_COUNT = 12  # templates with fewer minutiae are normalised as if they had this many
GEOMETRY_WEIGHT = 0.0  # evidence of a geometrically consistent pair whose cylinders disagree (measured: 0 is best)
OVERLAP_RADIUS = 50.0  # px: a minutia with one of the other print's this close is in the overlap
OVERLAP_BLEND = 0.5  # 0 = normalise by the totals, 1 = by the overlap counts only
