"""Embedding a labelled face set, and the pair and identification protocols the face report uses.

Shared by ``benchmarks/calibrate.py face`` and ``benchmarks/face_accuracy.py`` so both read the
data and count failures the same way: a failure to acquire (no face, refused image) keeps its
slot with a zero vector, which scores 0 against everything, i.e. it counts as a non-match.
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.evaluation.datasets import Sample
from benchmarks.evaluation.metrics import rank1
from enrollment.face.pipeline import FaceExtractor
from enrollment.face.quality import QualityPolicy
from matcher.errors import InvalidArgument

log = logging.getLogger(__name__)

# Evaluation measures the matcher, not the gate: nothing is refused for quality.
_ACCEPT_ALL = QualityPolicy(min_inter_eye_px=None, min_sharpness=None, max_abs_yaw_deg=None, max_abs_pitch_deg=None)


@dataclass(frozen=True)
class EmbeddedSet:
    """One set's templates in sample order (zero rows where acquisition failed), with what failed and why."""

    labels: np.ndarray  # [N] str
    vectors: np.ndarray  # [N, D]; zero rows where acquisition failed
    acquired: np.ndarray  # [N] bool
    errors: dict[str, str]  # relpath → error message
    relpaths: tuple[str, ...]
    fallbacks: int  # faces found only through the whole-image fallback

    @property
    def failure_to_acquire(self) -> float:
        return float(1.0 - self.acquired.mean()) if len(self.acquired) else 0.0


def embed_set(
    extractor: FaceExtractor,
    samples: Sequence[Sample],
    pre_aligned: bool,
    timings: MutableMapping[str, float] | None = None,
) -> EmbeddedSet:
    """One template per sample (the main face, as enrolment with ``largest_face`` would pick)."""
    vectors = np.zeros((len(samples), 512), dtype=np.float32)
    acquired = np.zeros(len(samples), dtype=bool)
    errors: dict[str, str] = {}
    fallbacks = 0
    for i, sample in enumerate(samples):
        data = sample.path.read_bytes()
        try:
            if pre_aligned:
                result = extractor.extract_aligned(data, policy=_ACCEPT_ALL)
            else:
                (result,) = extractor.extract(
                    data, mode="enroll", largest_face=True, policy=_ACCEPT_ALL, timings=timings
                )
        except InvalidArgument as exc:
            errors[sample.relpath] = str(exc)
            log.info("failure to acquire %s: %s", sample.relpath, exc)
            continue
        vectors[i] = result.template.vector
        acquired[i] = True
        fallbacks += int(result.quality.fallback_whole_image)
    return EmbeddedSet(
        labels=np.array([s.label for s in samples]),
        vectors=vectors,
        acquired=acquired,
        errors=errors,
        relpaths=tuple(s.relpath for s in samples),
        fallbacks=fallbacks,
    )


def pair_scores(embedded: EmbeddedSet, scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores of all genuine pairs and all impostor pairs (each unordered pair once).

    ``scores`` is the [N, N] comparison matrix (a peer's own measure); by default the cosines.
    """
    sims = embedded.vectors @ embedded.vectors.T if scores is None else scores
    upper = np.triu_indices(len(embedded.labels), 1)
    same = (embedded.labels[:, None] == embedded.labels[None, :])[upper]
    values = sims[upper]
    return values[same], values[~same]


def impostor_scores(embedded: EmbeddedSet) -> np.ndarray:
    """Impostor cosines between *acquired* samples only (calibration must not learn from zero vectors)."""
    ok = embedded.acquired
    sub = EmbeddedSet(embedded.labels[ok], embedded.vectors[ok], ok[ok], {}, (), 0)
    return pair_scores(sub)[1]


def rank1_one_enrolled(embedded: EmbeddedSet, scores: np.ndarray | None = None) -> float:
    """Enrol the first image of each identity (a failed enrolment stays a zero template), probe with the rest.

    ``scores`` as in :func:`pair_scores`; a probe that failed to acquire is a miss.
    """
    first: dict[str, int] = {}
    for i, label in enumerate(embedded.labels):
        first.setdefault(str(label), i)
    gallery = np.array(list(first.values()))
    enrolled = set(gallery.tolist())
    probes = np.array([i for i in range(len(embedded.labels)) if i not in enrolled])
    if len(probes) == 0:
        return math.nan
    if scores is None:
        sims = embedded.vectors[probes] @ embedded.vectors[gallery].T
    else:
        sims = scores[np.ix_(probes, gallery)]
    best = gallery[np.argmax(sims, axis=1)]
    return rank1(embedded.labels[best], embedded.labels[probes], embedded.acquired[probes])
