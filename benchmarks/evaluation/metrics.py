"""The error rates every benchmark reports, implemented once so that face and finger figures mean the same thing.

One convention throughout: a comparison is **accepted when its score is ≥ the threshold**.  With
``n`` impostor and ``m`` genuine scores, at threshold ``t``

* FMR(t)  = #(impostor ≥ t) / n  (false match rate, a.k.a. FAR),
* FNMR(t) = #(genuine < t) / m   (false non-match rate; TAR = 1 − FNMR).

"FNMR at FMR x" is read at the lowest threshold whose FMR is at most x, which is the least FNMR
any threshold with FMR ≤ x achieves.  That threshold lies just above the ⌊x·n⌋-th highest impostor
(counting from 0), so a genuine score is accepted exactly when it is strictly above that impostor.
When a set has fewer than 1/x impostors it is the highest impostor: "no false match observed",
which is a weaker claim than the FMR (the face report stars such figures).

Failures to acquire or enrol are the caller's business: score them so that they never match
(0 for the finger matcher, a zero vector's cosine 0 for the face) before calling these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

# ⌊x·n⌋ is taken of x·n + this: 1e-3 · n is not always exact in binary.
_COUNT_SLACK = 1e-9


def threshold_at_fmr(impostor: ArrayLike, fmr: float) -> float:
    """The lowest threshold that accepts at most ``fmr`` of the impostors (−inf when that is all of them)."""
    ordered = np.sort(_scores(impostor))[::-1]
    if len(ordered) == 0:
        raise ValueError("no impostor scores")
    allowed = math.floor(fmr * len(ordered) + _COUNT_SLACK)  # impostors that may be accepted
    if allowed >= len(ordered):
        return -math.inf
    return float(np.nextafter(ordered[allowed], math.inf))


def fnmr_at_fmr(genuine: ArrayLike, impostor: ArrayLike, fmr: float) -> float:
    """FNMR at the lowest threshold with FMR ≤ ``fmr`` (NaN when either side is empty)."""
    rejected, total = _genuine_rejected(genuine, impostor, fmr)
    return rejected / total if total else math.nan


def tar_at_far(genuine: ArrayLike, impostor: ArrayLike, far: float) -> float:
    """TAR = 1 − FNMR at FMR ``far``, counted (not subtracted) so it is exact to the last bit."""
    rejected, total = _genuine_rejected(genuine, impostor, far)
    return (total - rejected) / total if total else math.nan


def eer(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Equal error rate: the mean of FMR and FNMR at the observed threshold where they are closest.

    Every distinct score (and +inf, reject all) is a candidate threshold, so the rate is exact for
    the data rather than interpolated; on a tie the lowest threshold wins.
    """
    g, i = np.sort(_scores(genuine)), np.sort(_scores(impostor))
    if len(g) == 0 or len(i) == 0:
        return math.nan
    thresholds = np.unique(np.concatenate([g, i, [np.inf]]))
    fmr = 1.0 - np.searchsorted(i, thresholds, side="left") / len(i)
    fnmr = np.searchsorted(g, thresholds, side="left") / len(g)
    k = int(np.argmin(np.abs(fmr - fnmr)))
    return float((fmr[k] + fnmr[k]) / 2)


def d_prime(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Decidability d′ = |μg − μi| / √((σg² + σi²) / 2) (population variances).

    The separation of the two score distributions in pooled standard deviations: a threshold-free
    figure that still moves when the error rates are already 0 on a small set.
    """
    g, i = _scores(genuine), _scores(impostor)
    return float(abs(g.mean() - i.mean()) / np.sqrt((g.var() + i.var()) / 2))


def rank1(top_labels: Sequence[object], true_labels: Sequence[object], found: Sequence[bool] | None = None) -> float:
    """Rank-1 identification rate: the share of probes whose best candidate carries the probe's own label.

    ``top_labels[k]`` is probe k's best candidate (None when the search returned nothing);
    ``found[k]`` False marks a probe that produced no template, which is a miss whatever it scored.
    NaN when there are no probes.
    """
    if len(top_labels) != len(true_labels) or (found is not None and len(found) != len(true_labels)):
        raise ValueError("one best candidate, one label (and one found flag) per probe")
    if len(true_labels) == 0:
        return math.nan
    hits = np.asarray(top_labels, dtype=object) == np.asarray(true_labels, dtype=object)
    if found is not None:
        hits &= np.asarray(found, dtype=bool)
    return int(np.count_nonzero(hits)) / len(hits)


def _genuine_rejected(genuine: ArrayLike, impostor: ArrayLike, fmr: float) -> tuple[int, int]:
    """(genuine scores rejected at the FMR ``fmr`` threshold, genuine scores); (0, 0) when either side is empty."""
    g, i = _scores(genuine), _scores(impostor)
    if len(g) == 0 or len(i) == 0:
        return 0, 0
    return int(np.count_nonzero(g < threshold_at_fmr(i, fmr))), len(g)


def _scores(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()
