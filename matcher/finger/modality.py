"""Fingerprints as a modality: ISO/IEC 19794-2 minutiae records, searched by MCC retrieval + minutiae re-ranking.

Records are variable-length, so a gallery's finger setting has no dimension.  Several fingers of
one person in a probe are independent evidence: their calibrated scores add.  The matcher's raw
scores have no null model; their table is measured on impostor pairs and must be supplied.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matcher.calibration import Calibration
from matcher.errors import FailedPrecondition, InvalidArgument
from matcher.finger.gallery_index import FingerGalleryIndex, parse_record
from matcher.modality import Modality, ModalityMatcher
from matcher.policy import IndexPolicy
from matcher.store.base import ModalitySpec
from matcher.templates import Template

MAX_RECORD_BYTES = 64 * 1024  # an ISO finger record of 255 minutiae is < 1.6 kB; extended data aside


class FingerModality(ModalityMatcher):
    modality = Modality.FINGER
    independent_probes = True
    quality_measure = "nfiq2"

    def check_settings(self, spec: ModalitySpec, field: str) -> None:
        if spec.dimension:
            raise InvalidArgument(f"{field}.dimension", "must be 0 for fingers: finger templates are ISO/IEC 19794-2 records")

    def check_template(self, template: Template, spec: ModalitySpec, field: str) -> None:
        """The record must parse, and a finger position sent beside it must not contradict the record's own."""
        try:
            recorded = parse_record(template.vector).position
        except InvalidArgument as error:
            raise InvalidArgument(f"{field}.vector", f"not a valid ISO/IEC 19794-2 record: {error.detail}") from None
        if recorded and template.finger_position and recorded != template.finger_position:
            raise InvalidArgument(
                f"{field}.finger_position", f"{template.finger_position} contradicts the record's finger position {recorded}"
            )

    def check_probes(self, probes: Sequence[tuple[int, Template]]) -> None:
        """One finger is one piece of evidence: two probes of the same known position would count it twice."""
        first: dict[int, int] = {}
        for j, probe in probes:
            position = probe.finger_position or parse_record(probe.vector).position
            if position and position in first:
                raise InvalidArgument(
                    f"samples[{j}].finger_position", f"finger {position} is already samples[{first[position]}]; send each finger once"
                )
            first.setdefault(position, j)

    def decode(self, data: bytes, field: str) -> np.ndarray:
        """The record's bytes as uint8; its structure is checked against the gallery in ``check_template``."""
        if not data:
            raise InvalidArgument(field, "is empty")
        if len(data) > MAX_RECORD_BYTES:
            raise InvalidArgument(field, f"is {len(data)} bytes; a finger record is at most {MAX_RECORD_BYTES}")
        return np.frombuffer(data, dtype=np.uint8).copy()

    def payload(self, vector: np.ndarray) -> bytes:
        return np.ascontiguousarray(vector, dtype=np.uint8).tobytes()

    def from_payload(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8)

    def new_index(self, spec: ModalitySpec, policy: IndexPolicy, vector_dir: Path | None) -> FingerGalleryIndex:
        return FingerGalleryIndex(spec.model_id, background_build=policy.background_build)

    def load_index(self, spec: ModalitySpec, policy: IndexPolicy, path: Path, vector_dir: Path | None) -> FingerGalleryIndex | None:
        return FingerGalleryIndex.load(path, spec.model_id, policy.background_build)

    def default_calibration(self, spec: ModalitySpec) -> Calibration:
        raise FailedPrecondition(f"finger model {spec.model_id!r} has no calibration; pass calibration_for")
