"""Templates: the fixed-length vectors the matcher compares.

A template carries the id of the model that produced it; galleries refuse to mix models,
because scores from different embedders are not comparable.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from matcher.errors import InvalidArgument


class Modality(enum.Enum):
    """A biometric modality; values match the protobuf enum ``shanakht.v1.Modality``."""

    FACE = 1
    FINGER = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, eq=False)  # identity equality: comparing ndarrays elementwise is never what a caller means
class Template:
    """One enrolled or probe template: an L2-normalised float32 vector and where it came from."""

    modality: Modality
    model_id: str
    vector: np.ndarray
    finger_position: int = 0  # 1–10 per ISO/IEC 19794-2 for fingers, 0 otherwise
    quality: dict = field(default_factory=dict, compare=False)


MAX_DIMENSION = 4096


def vector_from_bytes(data: bytes, field_name: str = "vector") -> np.ndarray:
    """Decode little-endian float32 bytes into a unit vector, refusing anything malformed.

    The gallery checks the length against its model; here we only refuse what no model could
    produce.  Zero, NaN and infinite vectors are refused rather than normalised: they would
    match everything or nothing, silently.
    """
    if not data:
        raise InvalidArgument(field_name, "is empty")
    if len(data) % 4:
        raise InvalidArgument(field_name, f"is {len(data)} bytes, not a whole number of float32 values")
    if len(data) // 4 > MAX_DIMENSION:
        raise InvalidArgument(field_name, f"has {len(data) // 4} values; at most {MAX_DIMENSION} allowed")
    return normalise(np.frombuffer(data, dtype="<f4"), field_name)


def normalise(vector: np.ndarray, field_name: str = "vector") -> np.ndarray:
    """Return ``vector`` as a contiguous float32 unit vector, or raise ``InvalidArgument``."""
    vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(vector)):
        raise InvalidArgument(field_name, "contains NaN or infinite values")
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidArgument(field_name, "has zero length; a template must be a non-zero vector")
    return (vector / norm).astype(np.float32)
