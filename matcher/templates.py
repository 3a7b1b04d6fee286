"""Templates: what the matcher compares.

A template is the bytes a modality's extractor produced, decoded by that modality
(``matcher.modality``): a fixed-length unit vector for faces, an ISO/IEC 19794-2 minutiae record
for fingers (the interchange format, so prints extracted by other systems can be enrolled too).
A template carries the id of the model (or record format) that produced it; galleries refuse to
mix them, because their scores are not comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from matcher.errors import InvalidArgument
from matcher.modality import Modality

__all__ = ["MAX_DIMENSION", "Modality", "Template", "normalise", "validate_finger_position", "vector_from_bytes"]

MAX_DIMENSION = 4096


@dataclass(frozen=True, eq=False)  # identity equality: comparing ndarrays elementwise is never what a caller means
class Template:
    """One enrolled or probe template and where it came from.

    ``vector`` is what the modality decoded (``ModalityMatcher.decode``): an L2-normalised
    float32 vector for faces, the ISO/IEC 19794-2 record's bytes (uint8) for fingers.
    """

    modality: Modality
    model_id: str
    vector: np.ndarray
    finger_position: int = 0  # 1–10 per ISO/IEC 19794-2 for fingers, 0 otherwise
    quality: dict = field(default_factory=dict, compare=False)


def validate_finger_position(position: int, field_name: str) -> int:
    """Finger positions are ISO/IEC 19794-2's: 1–10, or 0 when unknown (checked once, wherever a position enters)."""
    if not 0 <= position <= 10:
        raise InvalidArgument(field_name, f"must be 0 (unknown) or 1–10, got {position}")
    return position


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
