"""fr_feature and MobileFaceNet of the same crops, kept apart: how ``benchmarks/face_second_embedder.py`` fits and tests their fusion.

The product's face template already is the fusion (``enrollment.face.fused``: both models, pinned
in ``enrollment/models.toml``, fetched and converted by ``python -m enrollment.models fetch``).  To
fit the fusion again and to measure each model alone, :func:`embed_both` runs the product's
pipeline and records, for every crop it embeds, the two unit vectors the template is made of.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from benchmarks.evaluation.datasets import Sample
from benchmarks.evaluation.face import EmbeddedSet, embed_set
from benchmarks.evaluation.metrics import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    ErrorCurve,
    Estimate,
    Interval,
    Trials,
    identity_bootstrap,
)
from enrollment.face import fused
from enrollment.face.embedder import EMBEDDING_DIM as FIRST_DIM
from enrollment.face.mobilefacenet import EMBEDDING_DIM as SECOND_DIM
from enrollment.face.pipeline import FaceExtractor

SECOND = "mfn_feature"  # MobileFaceNet's manifest entry


@dataclass
class _Recorder:
    """Stands in for the extractor's fused embedder: runs its two models on every crop the pipeline embeds (timing
    each), records both unit vectors with the template they make, and returns that template as the product would."""

    embedder: fused.FusedEmbedder
    calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)  # (template, first, second)
    first_ms: list[float] = field(default_factory=list)  # per crop
    second_ms: list[float] = field(default_factory=list)

    def embed(self, aligned: Sequence[np.ndarray]) -> np.ndarray:
        start = time.perf_counter()
        first = self.embedder.first.embed(aligned)
        middle = time.perf_counter()
        second = self.embedder.second.embed(aligned)
        end = time.perf_counter()
        template = fused.combine(first, second)
        self.calls.append((template, first, second))
        self.first_ms += [1000.0 * (middle - start) / len(aligned)] * len(aligned)
        self.second_ms += [1000.0 * (end - middle) / len(aligned)] * len(aligned)
        return template


@dataclass(frozen=True)
class BothSets:
    """One set embedded by both models from the same crops (same acquisitions, failures zero rows in both)."""

    first: EmbeddedSet  # fr_feature (the template's first part)
    second: EmbeddedSet  # MobileFaceNet (its second part)
    first_ms: tuple[float, ...]  # per embedded crop, one thread
    second_ms: tuple[float, ...]


def embed_both(extractor: FaceExtractor, samples: Sequence[Sample], pre_aligned: bool) -> BothSets:
    """:func:`~benchmarks.evaluation.face.embed_set` with the fr_feature and MobileFaceNet parts of every template kept.

    Each acquired sample is matched to the embedding call whose template is its template, bit for
    bit, so a pipeline that stopped routing its crops through ``extractor.embedder`` fails here
    instead of pairing a template with another image's vectors.
    """
    recorder = _Recorder(extractor.embedder)
    original, extractor.embedder = extractor.embedder, recorder  # type: ignore[assignment]
    try:
        templates = embed_set(extractor, samples, pre_aligned)
    finally:
        extractor.embedder = original
    first = np.zeros((len(samples), FIRST_DIM), dtype=np.float32)
    second = np.zeros((len(samples), SECOND_DIM), dtype=np.float32)
    calls = iter(recorder.calls)
    for i in np.flatnonzero(templates.acquired):
        for template, a, b in calls:
            if len(template) == 1 and np.array_equal(template[0], templates.vectors[i]):
                first[i], second[i] = a[0], b[0]
                break
        else:
            raise RuntimeError(f"{samples[i].relpath}: no embedding call produced its template")
    return BothSets(
        replace(templates, vectors=first), replace(templates, vectors=second), tuple(recorder.first_ms), tuple(recorder.second_ms)
    )


# ---------------------------------------------------------------------- fusion


@dataclass(frozen=True)
class Fusion:
    """``z_fr(cos_fr) + weight · z_mfn(cos_mfn)``, each cosine z-normalised by tune impostor mean and deviation."""

    first_mean: float
    first_std: float
    second_mean: float
    second_std: float
    weight: float

    def scores(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Fused scores of matching arrays of cosines (a pair matrix, or pairs)."""
        return (first - self.first_mean) / self.first_std + self.weight * (second - self.second_mean) / self.second_std

    def matrix(self, both: BothSets) -> np.ndarray:
        """The fused [N, N] comparison matrix of one set."""
        a, b = both.first.vectors, both.second.vectors
        return self.scores(a @ a.T, b @ b.T)


def impostor_moments(impostor: np.ndarray) -> tuple[float, float]:
    values = np.asarray(impostor, dtype=np.float64)
    return float(values.mean()), float(values.std())


# ---------------------------------------------------------------------- paired intervals


def pooled_trials(parts: Sequence[Trials]) -> Trials:
    """Several sets' trials as one (identities renumbered so that they stay apart; no cross-set pairs)."""
    offsets = np.cumsum([0] + [p.identities for p in parts])
    return Trials(
        np.concatenate([p.genuine for p in parts]),
        np.concatenate([p.impostor for p in parts]),
        np.concatenate([np.asarray(p.genuine_ids) + o for p, o in zip(parts, offsets)]),
        np.concatenate([np.asarray(p.impostor_ids) + o for p, o in zip(parts, offsets)]),
        int(offsets[-1]),
    )


def paired_difference(
    base: Trials,
    other: Trials,
    statistic: Callable[[ErrorCurve], float],
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """``statistic(other) − statistic(base)`` with a paired identity-bootstrap percentile interval.

    ``base`` and ``other`` are the same comparisons scored two ways (same identities per trial), so
    each replicate draws the identities once and reads both curves on that draw; the interval is of
    the difference, not two intervals side by side.  The draws are ``identity_bootstrap``'s (one
    seed, the same identity count); the replicate's trial weights are compared to prove it.
    """
    if base.identities != other.identities or not (
        np.array_equal(base.genuine_ids, other.genuine_ids) and np.array_equal(base.impostor_ids, other.impostor_ids)
    ):
        raise ValueError("a paired difference needs the same trials scored twice")
    values = [_replicates(t, statistic, reps, seed) for t in (base, other)]
    (a, wa), (b, wb) = values
    if not np.array_equal(wa, wb):
        raise RuntimeError("the two bootstraps drew different identities")
    diff = b - a
    diff = diff[~np.isnan(diff)]
    alpha = 1.0 - confidence
    low, high = np.quantile(diff, [alpha / 2, 1 - alpha / 2]) if len(diff) else (np.nan, np.nan)
    point = statistic(other.curve()) - statistic(base.curve())
    return Estimate(float(point), Interval(float(low), float(high), "paired identity bootstrap"))


def _replicates(
    trials: Trials, statistic: Callable[[ErrorCurve], float], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate of ``identity_bootstrap``: the statistic and the (genuine, impostor) weight totals."""
    values: list[float] = []
    weights: list[tuple[float, float]] = []

    def record(curve: ErrorCurve) -> float:
        value = statistic(curve)
        values.append(value)
        weights.append((curve.genuine, curve.impostors))
        return value

    identity_bootstrap(trials, {"statistic": record}, reps, seed)
    return np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
