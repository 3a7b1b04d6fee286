"""1:1 minutiae matching: ``match(probe, candidate) -> raw score`` through the Cython kernel.

Templates are prepared once (cylinders built) and then compared many times; ``match`` accepts
either ``FingerTemplate`` or ``PreparedTemplate`` for convenience.  The score is raw (0 for
nothing in common, typically 20–200 for mates); ``calibration`` turns it into ``-log10(FMR)``.
"""

from __future__ import annotations

from matcher.finger.template import FingerTemplate
from matcher.finger.descriptors import PreparedTemplate, prepare
from matcher.finger import parameters as spec
from native import minutiae as _kernel

_PARAMS = (
    spec.SEEDS,
    spec.DIST_TOL,
    spec.DIST_GROWTH,
    spec.ANGLE_TOL,
    spec.MAX_DIRECTION_DIFF,
    spec.MIN_COMMON_FRACTION * spec.CELLS_IN_RADIUS_BITS,
    spec.MIN_COUNT,
    spec.GEOMETRY_WEIGHT,
    spec.OVERLAP_RADIUS,
    spec.OVERLAP_BLEND,
)


def as_prepared(template: FingerTemplate | PreparedTemplate) -> PreparedTemplate:
    return template if isinstance(template, PreparedTemplate) else prepare(template)


def match(probe: FingerTemplate | PreparedTemplate, candidate: FingerTemplate | PreparedTemplate) -> float:
    """Raw similarity of two prints (symmetric up to seed ties; higher = more alike)."""
    a, b = as_prepared(probe), as_prepared(candidate)
    return float(_kernel.match(a.x, a.y, a.theta, a.bits, a.valid, b.x, b.y, b.theta, b.bits, b.valid, *_PARAMS))
