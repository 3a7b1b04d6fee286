"""The face template: fr_feature and MobileFaceNet of one aligned crop, weighted and concatenated into one unit vector.

``benchmarks/face_second_embedder.py`` measured that fusing the two embedders' scores,
``z_fr + w · z_mfn`` with ``z = (cosine − μ) / σ`` of impostor cosines, raises TAR at FAR 1e-3 on
the report split beyond its paired interval (issue 18), so the product does it.  It does it inside
the template: with unit vectors ``u`` (fr_feature, 512-d) and ``v`` (MobileFaceNet, 192-d),

    template = normalize(concat(a · u, b · v)),   a² = 1 / σ_fr,   b² = w / σ_mfn,

whose inner product with another such template is ``(a² cos_fr + b² cos_mfn) / (a² + b²)``: an
increasing affine function of the fitted fused score (the means only shift it).  The matcher, the
FAISS indexes, the calibration table, score fusion and the stores keep comparing unit vectors by
inner product and need not know that a template has two parts.

``FR_FEATURE_IMPOSTOR_STD``, ``MOBILEFACENET_IMPOSTOR_STD`` and ``MOBILEFACENET_WEIGHT`` were fitted
on tune identities (glint24_aligned, att_orl, bollywood_64; ``benchmarks/protocol.toml``) by
``python benchmarks/face_second_embedder.py``, which recomputes them and fails when they differ
from these.  They are part of the face score provenance: changing one makes the face
calibration table stale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from enrollment import models
from enrollment.errors import ModelUnavailable
from enrollment.face import embedder, mobilefacenet
from enrollment.face.embedder import FaceEmbedder
from enrollment.face.mobilefacenet import MobileFaceNetEmbedder

#: The manifest entries whose vectors make the template, in the order they are concatenated.
EMBEDDERS = ("fr_feature", "mfn_feature")
DIMENSION = embedder.EMBEDDING_DIM + mobilefacenet.EMBEDDING_DIM
# Standard deviations of impostor cosines of tune identities, and MobileFaceNet's weight (grid 0–2 by 0.25).
FR_FEATURE_IMPOSTOR_STD = 0.1038
MOBILEFACENET_IMPOSTOR_STD = 0.1483
MOBILEFACENET_WEIGHT = 2.0


def part_weights() -> tuple[float, float]:
    """``(a, b)``: the factors of fr_feature's and MobileFaceNet's unit vectors (constants read at call time)."""
    return math.sqrt(1.0 / FR_FEATURE_IMPOSTOR_STD), math.sqrt(MOBILEFACENET_WEIGHT / MOBILEFACENET_IMPOSTOR_STD)


def combine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``[N, 704]`` unit templates from ``[N, 512]`` fr_feature and ``[N, 192]`` MobileFaceNet unit vectors."""
    a, b = part_weights()
    joined = np.concatenate([a * np.asarray(first, np.float32), b * np.asarray(second, np.float32)], axis=1)
    return (joined / np.linalg.norm(joined, axis=1, keepdims=True)).astype(np.float32)


def template_model_id(specs: Mapping[str, models.ModelSpec]) -> str:
    """The template's model id: the embedders' manifest model ids joined by ``+`` (galleries refuse to mix ids)."""
    ids = []
    for name in EMBEDDERS:
        spec = specs.get(name)
        model_id = spec.model_id if spec is not None else None
        if not model_id:
            raise ModelUnavailable(f"model manifest entry [models.{name}] is missing or has no model_id")
        ids.append(model_id)
    return "+".join(ids)


class FusedEmbedder:
    """Both embedders on the same crops; ``embed`` gives the fused template, ``embed_parts`` the two unit vectors."""

    dimension = DIMENSION

    def __init__(self, first: FaceEmbedder, second: MobileFaceNetEmbedder) -> None:
        self.first = first
        self.second = second

    def embed_parts(self, aligned: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``([N, 512], [N, 192])`` unit vectors of fr_feature and MobileFaceNet."""
        return self.first.embed(aligned), self.second.embed(aligned)

    def embed(self, aligned: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, 704]`` float32 unit templates for N aligned ``112×112`` RGB (or grey) uint8 crops."""
        return combine(*self.embed_parts(aligned))
