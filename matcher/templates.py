"""Templates: what the matcher compares.

A face template is a fixed-length unit vector; a finger template is an ISO/IEC 19794-2
minutiae record (bytes), the interchange format, so prints extracted by other systems can be
enrolled too.  A template carries the id of the model (or record format) that produced it;
galleries refuse to mix them, because their scores are not comparable.
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
    """One enrolled or probe template and where it came from.

    ``vector`` is an L2-normalised float32 vector for faces, and the ISO/IEC 19794-2 record's
    bytes (uint8) for fingers: ``payload()`` is what the store keeps either way.
    """

    modality: Modality
    model_id: str
    vector: np.ndarray
    finger_position: int = 0  # 1–10 per ISO/IEC 19794-2 for fingers, 0 otherwise
    quality: dict = field(default_factory=dict, compare=False)


    def payload(self) -> bytes:
        return template_payload(self.modality, self.vector)


MAX_DIMENSION = 4096
MAX_RECORD_BYTES = 64 * 1024  # an ISO finger record of 255 minutiae is < 1.6 kB; extended data aside


def template_payload(modality: Modality, vector: np.ndarray) -> bytes:
    """The bytes a store keeps: little-endian float32 for vectors, the record itself for fingers."""
    if modality is Modality.FINGER:
        return np.ascontiguousarray(vector, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def vector_from_payload(modality: Modality, data: bytes) -> np.ndarray:
    """Inverse of ``template_payload`` for rows the store wrote (already validated on the way in)."""
    return np.frombuffer(data, dtype=np.uint8 if modality is Modality.FINGER else "<f4")


def record_from_bytes(data: bytes, field_name: str = "vector") -> np.ndarray:
    """A finger template's record bytes as a uint8 array; its structure is checked by the gallery."""
    if not data:
        raise InvalidArgument(field_name, "is empty")
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidArgument(field_name, f"is {len(data)} bytes; a finger record is at most {MAX_RECORD_BYTES}")
    return np.frombuffer(data, dtype=np.uint8).copy()


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
