"""Fused scores keep their promise: ``-log10`` of the false-match rate of the fused decision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matcher import fusion


def test_one_score_is_its_own_fusion():
    assert fusion.independent([3.2]) == 3.2
    assert fusion.best_of(3.2, 1) == 3.2


def test_two_independent_scores_by_hand():
    # P(sum ≥ 4) = 10^-4 · (1 + 4 ln 10) = 10^-4 · 10.2103…, so the fused score is 4 − log10(10.2103) = 2.99096.
    assert fusion.independent([2.0, 2.0]) == pytest.approx(4 - math.log10(1 + 4 * math.log(10)), abs=1e-12)
    assert fusion.independent([2.0, 2.0]) == pytest.approx(2.99096, abs=1e-5)
    # A part that found nothing counts as 0: fewer points, same number of chances.
    assert fusion.independent([3.0], parts=2) == pytest.approx(3 - math.log10(1 + 3 * math.log(10)), abs=1e-12)
    with pytest.raises(ValueError):
        fusion.independent([1.0, 2.0], parts=1)


def test_best_of_n_by_hand():
    # 1 − (1 − 10^-3)^3 = 0.002997001, so the best of three views at 3 is worth 2.52332.
    assert fusion.best_of(3.0, 3) == pytest.approx(-math.log10(1 - (1 - 1e-3) ** 3), abs=1e-12)
    assert fusion.best_of(3.0, 3) == pytest.approx(2.52332, abs=1e-5)


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("threshold", [2.0, 3.0])
def test_fused_independent_scores_match_impostors_at_the_nominal_rate(parts, threshold):
    """Calibrated impostor scores are -log10 of uniform variables; their fusion must be again."""
    rng = np.random.default_rng(parts * 10 + int(threshold))
    trials = 400_000
    scores = -np.log10(rng.uniform(size=(trials, parts)))
    fused = np.array([fusion.independent(row) for row in scores[:50_000]])
    observed = float((fused >= threshold).mean())
    nominal = 10 ** -threshold
    # Binomial standard error at 50,000 trials; 4 of them is far outside chance if the formula were off.
    assert abs(observed - nominal) < 4 * math.sqrt(nominal * (1 - nominal) / 50_000)
    # Plain addition, what the service did before, is far more confident than the truth.
    assert float((scores.sum(axis=1) >= threshold).mean()) > 4 * nominal


def test_the_best_of_n_views_matches_impostors_at_the_nominal_rate():
    rng = np.random.default_rng(7)
    best = (-np.log10(rng.uniform(size=(200_000, 4)))).max(axis=1)
    corrected = np.array([fusion.best_of(s, 4) for s in best])
    assert abs(float((corrected >= 2.0).mean()) - 0.01) < 4 * math.sqrt(0.01 * 0.99 / 200_000)


def test_fpir_grows_with_the_gallery():
    assert fusion.fpir(4.0, 100_000) == pytest.approx(1 - (1 - 1e-4) ** 100_000, rel=1e-9)
    assert fusion.fpir(4.0, 100_000) > 0.99
    assert fusion.fpir(6.0, 100) == pytest.approx(1e-4, rel=1e-3)
    assert fusion.fpir(0.0, 10) == pytest.approx(1.0) and fusion.fpir(5.0, 0) == 0.0
