"""Fixed-length unit-vector templates (face embeddings; any embedder of the same kind) as a modality.

Vectors are compared by inner product in a FAISS index (``matcher.index.VectorIndex``: exact, or
IVF-PQ fast scan with exact re-scoring for large galleries).  Without a measured calibration
table a model's scores follow the null model of random unit vectors of its dimension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from matcher.calibration import Calibration
from matcher.errors import InvalidArgument
from matcher.index import VectorIndex
from matcher.modality import Modality, ModalityMatcher
from matcher.policy import IndexPolicy
from matcher.store.base import ModalitySpec
from matcher.templates import MAX_DIMENSION, Template, vector_from_bytes


class VectorModality(ModalityMatcher):
    """A modality whose templates are L2-normalised float32 vectors of one dimension per model."""

    def __init__(self, modality: Modality, independent_probes: bool = False) -> None:
        self.modality = modality
        self.independent_probes = independent_probes

    def check_settings(self, spec: ModalitySpec, field: str) -> None:
        if not (1 <= spec.dimension <= MAX_DIMENSION):
            raise InvalidArgument(f"{field}.dimension", f"must be 1–{MAX_DIMENSION}, got {spec.dimension}")

    def check_template(self, template: Template, spec: ModalitySpec, field: str) -> None:
        if template.vector.shape != (spec.dimension,):
            raise InvalidArgument(
                f"{field}.vector", f"expected {spec.dimension} values for model {spec.model_id!r}, got {template.vector.size}"
            )

    def decode(self, data: bytes, field: str) -> np.ndarray:
        return vector_from_bytes(data, field)

    def payload(self, vector: np.ndarray) -> bytes:
        return np.ascontiguousarray(vector, dtype="<f4").tobytes()

    def from_payload(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype="<f4")

    def new_index(self, spec: ModalitySpec, policy: IndexPolicy, vector_dir: Path | None) -> VectorIndex:
        return VectorIndex(spec.dimension, spec.model_id, policy, vector_dir)

    def load_index(self, spec: ModalitySpec, policy: IndexPolicy, path: Path, vector_dir: Path | None) -> VectorIndex | None:
        return VectorIndex.load(path, spec.dimension, spec.model_id, policy, vector_dir)

    def default_calibration(self, spec: ModalitySpec) -> Calibration:
        """The null model of random unit vectors of that dimension: right for synthetic templates,
        optimistic for real embedders, which is why real models ship a measured table."""
        return Calibration.null_model(spec.dimension)
