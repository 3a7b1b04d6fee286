"""Embedding a labelled set and the verification / identification measures the field reports.

Shared by ``python -m enrollment.calibrate`` and ``benchmarks/face_accuracy.py`` so both read the
data and count failures the same way: a failure to acquire (no face, refused image) keeps its
slot with a zero vector, which scores 0 against everything, i.e. it counts as a non-match.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from enrollment.datasets import Sample
from enrollment.face.pipeline import FaceExtractor
from enrollment.face.quality import QualityPolicy
from matcher.errors import InvalidArgument

log = logging.getLogger(__name__)

# Evaluation measures the matcher, not the gate: nothing is refused for quality.
_ACCEPT_ALL = QualityPolicy(min_inter_eye_px=None, min_sharpness=None, max_abs_yaw_deg=None, max_abs_pitch_deg=None)


@dataclass(frozen=True)
class EmbeddedSet:
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
                (result,) = extractor.extract(data, mode="enroll", largest_face=True, policy=_ACCEPT_ALL, timings=timings)
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


def pair_scores(embedded: EmbeddedSet) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of all genuine pairs and all impostor pairs (each unordered pair once)."""
    sims = embedded.vectors @ embedded.vectors.T
    upper = np.triu_indices(len(embedded.labels), 1)
    same = (embedded.labels[:, None] == embedded.labels[None, :])[upper]
    values = sims[upper]
    return values[same], values[~same]


def impostor_scores(embedded: EmbeddedSet) -> np.ndarray:
    """Impostor cosines between *acquired* samples only (calibration must not learn from zero vectors)."""
    ok = embedded.acquired
    sub = EmbeddedSet(embedded.labels[ok], embedded.vectors[ok], ok[ok], {}, (), 0)
    return pair_scores(sub)[1]


def threshold_at_far(impostors: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most ``far`` of the impostor pairs score strictly above it."""
    ordered = np.sort(impostors)[::-1]
    k = int(np.floor(far * len(ordered)))
    return float(ordered[k]) if k < len(ordered) else float(ordered[-1])


def tar_at_far(genuine: np.ndarray, impostors: np.ndarray, far: float) -> float:
    if len(genuine) == 0 or len(impostors) == 0:
        return float("nan")
    return float((genuine > threshold_at_far(impostors, far)).mean())


def rank1_one_enrolled(embedded: EmbeddedSet) -> float:
    """Enrol the first image of each identity (a failed enrolment stays a zero template), probe with the rest."""
    first: dict[str, int] = {}
    for i, label in enumerate(embedded.labels):
        first.setdefault(str(label), i)
    gallery = np.array(list(first.values()))
    probes = np.array([i for i in range(len(embedded.labels)) if i not in set(gallery.tolist())])
    if len(probes) == 0:
        return float("nan")
    sims = embedded.vectors[probes] @ embedded.vectors[gallery].T
    best = gallery[np.argmax(sims, axis=1)]
    hits = (embedded.labels[best] == embedded.labels[probes]) & embedded.acquired[probes]
    return float(hits.mean())
