"""``FingerTemplate``: the minutiae of one print, in the units the matcher and ISO 19794-2 share.

Coordinates are integer pixels of the 500-dpi image (y down); angles are quantised to ISO's
256 steps (1.40625°) and measured counter-clockwise from the x axis *as seen on screen* (the
LEADER network's own convention, and ISO's); quality is 0–100.  Quantising at construction
makes an ISO export/import round trip exact, so a re-imported template scores the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from matcher.errors import InvalidArgument
from matcher.templates import validate_finger_position

TEMPLATE_DPI = 500
ANGLE_STEPS = 256
ANGLE_UNIT = 2 * math.pi / ANGLE_STEPS
TYPE_OTHER, TYPE_ENDING, TYPE_BIFURCATION = 0, 1, 2
MAX_MINUTIAE = 255  # ISO 19794-2 count field is one byte
MAX_COORD = (1 << 14) - 1


@dataclass(frozen=True, eq=False)
class FingerTemplate:
    """Minutiae arrays (one entry per minutia, best quality first) and the print's geometry."""

    x: np.ndarray  # uint16
    y: np.ndarray  # uint16
    angle: np.ndarray  # uint8, ISO angle code: radians = code · 2π/256
    kind: np.ndarray  # uint8: 0 other, 1 ridge ending, 2 bifurcation
    quality: np.ndarray  # uint8 0–100
    width: int
    height: int
    dpi: int = TEMPLATE_DPI
    position: int = 0  # ISO finger position: 0 unknown, 1–10 right thumb … left little
    image_quality: int = 0  # 0–100
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        for name in ("x", "y", "angle", "kind", "quality"):
            array = getattr(self, name)
            if array.ndim != 1 or array.shape[0] != n:
                raise InvalidArgument(f"template.{name}", f"must be a 1-D array of {n} values")
        if n > MAX_MINUTIAE:
            raise InvalidArgument("template", f"{n} minutiae; at most {MAX_MINUTIAE}")
        validate_finger_position(self.position, "finger_position")
        if self.width <= 0 or self.height <= 0 or self.width > MAX_COORD or self.height > MAX_COORD:
            raise InvalidArgument("template", f"image size {self.width}×{self.height} is out of range")

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        theta: np.ndarray,
        kind: np.ndarray,
        quality01: np.ndarray,
        width: int,
        height: int,
        position: int = 0,
        image_quality: int = 0,
    ) -> "FingerTemplate":
        """Build from float arrays (radians, quality 0–1), rounding to the stored units."""
        code = np.mod(np.rint(np.asarray(theta, np.float64) / ANGLE_UNIT), ANGLE_STEPS).astype(np.uint8)
        q = np.clip(np.rint(np.asarray(quality01, np.float64) * 100), 0, 100).astype(np.uint8)
        return cls(
            x=np.clip(np.rint(x), 0, width - 1).astype(np.uint16),
            y=np.clip(np.rint(y), 0, height - 1).astype(np.uint16),
            angle=code,
            kind=np.asarray(kind, np.uint8),
            quality=q,
            width=int(width),
            height=int(height),
            position=int(position),
            image_quality=int(image_quality),
        )

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    @property
    def theta(self) -> np.ndarray:
        """Angles in radians (float64), counter-clockwise on screen."""
        return self.angle.astype(np.float64) * ANGLE_UNIT

    def same_minutiae(self, other: "FingerTemplate") -> bool:
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in ("x", "y", "angle", "kind", "quality"))
