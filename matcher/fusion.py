"""Combining calibrated scores so that the result is still ``-log10`` of a false-match rate.

A calibrated score ``s = -log10(FMR)`` of an impostor comparison is, by construction, ``-log10``
of a uniform variable: ``s·ln 10`` is exponential with mean 1.  Two consequences:

* **Independent evidence adds, but its sum is not a score.**  The sum of k independent scores is
  gamma-distributed, so ``P(sum ≥ t) = 10^-t · Σ_{j<k} (t·ln 10)^j / j!`` — for two fingers at
  t = 4 about ten times more likely than ``10^-4``.  ``independent`` turns the sum back into
  ``-log10`` of that probability.  A probe of k parts is fused over all k: a part that found
  nothing counts as score 0 (the least it can add), never as absent, or a subject seen by one
  finger alone would outrank one seen by both.
* **The best of n comparisons is n chances.**  ``P(max of n ≥ s) = 1 − (1 − 10^-s)^n``:
  ``best_of`` corrects the best of several views of one face.

Both assume the parts are independent.  Two fingers of the same pair of people are not quite
(skin, sensor, pressure), which ``benchmarks/fusion_check.py`` measures on tune impostors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_LN10 = math.log(10.0)


def fmr_of(score: float) -> float:
    """The false-match rate a calibrated score stands for."""
    return 10.0 ** -max(score, 0.0)


def independent(scores: Sequence[float], parts: int | None = None) -> float:
    """``-log10 P(S ≥ sum(scores))`` for S the sum of ``parts`` independent impostor scores.

    ``parts`` (default ``len(scores)``) may exceed the scores given: the missing ones scored 0.
    """
    k = len(scores) if parts is None else parts
    if k < len(scores):
        raise ValueError(f"{len(scores)} scores cannot come from {k} parts")
    total = float(sum(max(s, 0.0) for s in scores))
    if k <= 1 or total == 0.0:
        return total
    x = total * _LN10
    term, series = 1.0, 1.0  # Σ_{j<k} x^j / j!, summed term by term
    for j in range(1, k):
        term *= x / j
        series += term
    return max(0.0, total - math.log10(series))


def best_of(score: float, comparisons: int) -> float:
    """``-log10 P(best of ``comparisons`` impostor scores ≥ score)``: the score the best of several is worth."""
    if comparisons <= 1 or score <= 0.0:
        return max(score, 0.0)
    # 1 − (1 − p)^n without cancellation for small p.
    chance = -math.expm1(comparisons * math.log1p(-fmr_of(score)))
    return max(0.0, -math.log10(chance))


def fpir(score: float, subjects: int) -> float:
    """Expected false-positive identification rate at ``score`` for a search of ``subjects`` people.

    The chance that at least one of ``subjects`` strangers scores this high: ``1 − (1 − FMR)^N``.
    A score of 4 (one false match in 10,000 comparisons) against 100,000 people returns a stranger
    in almost every search.
    """
    if subjects <= 0:
        return 0.0
    return -math.expm1(subjects * math.log1p(-min(fmr_of(score), 1.0 - 1e-16)))
