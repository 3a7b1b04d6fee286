"""Fingerprints as a modality: ISO/IEC 19794-2 minutiae records, searched by MCC retrieval + minutiae re-ranking.

Templates arrive as ISO/IEC 19794-2:2005 or :2011 or ANSI INCITS 378-2004 records, of one or
several finger views (``matcher.finger.interchange``); ``split`` turns each into one stored
single-view ISO 2005 record per view, which is what galleries check, store and index.

Records are variable-length, so a gallery's finger setting has no dimension.  Several fingers of
one person in a probe are independent evidence: their calibrated scores add.  The matcher's raw
scores have no null model; their table is measured on impostor pairs and must be supplied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matcher.calibration import Calibration
from matcher.errors import FailedPrecondition, InvalidArgument
from matcher.finger.gallery_index import FingerGalleryIndex, parse_record
from matcher.finger.interchange.detect import FORMATS, NAMES, STORED_FORMAT, read_record
from matcher.finger.iso19794 import to_iso
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

    def split(self, template: Template, field: str) -> list[Template]:
        """A record in any interchange format → one stored single-view ISO 2005 template per finger view.

        The format is read from the bytes; ``model_id`` must name it (any of ``FORMATS``), or the
        template is left as sent for the gallery to refuse its model.  A finger position sent
        beside the record stands for the views whose own position is unknown and must agree with
        the others.  A single-view ISO 2005 record is kept byte for byte (its extended data too);
        other records are re-encoded per view at 500 dpi, their extended data dropped (the
        matcher reads minutiae only).
        """
        if template.model_id not in FORMATS:
            return [template]
        try:
            record = read_record(self.payload(template.vector))
        except InvalidArgument as error:
            raise InvalidArgument(f"{field}.vector", f"not a valid finger minutiae record: {error.detail}") from None
        if record.format != template.model_id:
            raise InvalidArgument(
                f"{field}.model_id", f"is {template.model_id!r} but the record is {NAMES[record.format]} ({record.format!r}) by its bytes"
            )
        for i, view in enumerate(record.views):
            if view.position and template.finger_position and view.position != template.finger_position:
                where = f"view {i}'s" if len(record.views) > 1 else "the record's"
                raise InvalidArgument(
                    f"{field}.finger_position", f"{template.finger_position} contradicts {where} finger position {view.position}"
                )
        if record.format == STORED_FORMAT and len(record.views) == 1:
            return [template]
        out = []
        for view in record.views:
            position = view.position or template.finger_position
            stored = to_iso(dataclasses.replace(view, position=position, extra={}))
            vector = self.decode(stored, f"{field}.vector")
            out.append(dataclasses.replace(template, model_id=STORED_FORMAT, vector=vector, finger_position=position))
        return out

    def check_template(self, template: Template, spec: ModalitySpec, field: str) -> None:
        """The record must be one valid finger view, and a finger position sent beside it must not contradict the record's own."""
        try:
            recorded = parse_record(template.vector).position
        except InvalidArgument as error:
            raise InvalidArgument(f"{field}.vector", f"not a valid ISO/IEC 19794-2 record: {error.detail}") from None
        if recorded and template.finger_position and recorded != template.finger_position:
            raise InvalidArgument(
                f"{field}.finger_position", f"{template.finger_position} contradicts the record's finger position {recorded}"
            )

    def check_probes(self, probes: Sequence[tuple[int, Template]]) -> None:
        """One finger is one piece of evidence: two probes of the same known position would count it twice.

        Probes are numbered by the request sample they came from, so two views of one finger in
        one multi-view record are named as such.
        """
        first: dict[int, int] = {}
        for j, probe in probes:
            position = probe.finger_position or parse_record(probe.vector).position
            if position and position in first:
                if first[position] == j:
                    raise InvalidArgument(
                        f"samples[{j}].template.vector",
                        f"the record holds two views of finger {position}; a probe counts each finger once, send one view of it",
                    )
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
