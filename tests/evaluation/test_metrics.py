"""The benchmarks' error rates on cases small enough to count by hand (benchmarks/evaluation/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.evaluation.metrics import d_prime, eer, fnmr_at_fmr, rank1, tar_at_far, threshold_at_fmr

# Impostors with ties: sorted high to low 0.5 0.5 0.5 0.3 0.3 0.2 0.1 0.1 0.0 0.0 (n = 10).
TIED_IMPOSTORS = [0.1, 0.5, 0.5, 0.5, 0.2, 0.3, 0.3, 0.1, 0.0, 0.0]
TIED_GENUINE = [0.5, 0.5, 0.6, 0.9]


def test_eer_where_the_rates_cross() -> None:
    # t = 0.65: FMR = #(i ≥ t)/4 = 1/4 (0.65), FNMR = #(g < t)/4 = 1/4 (0.6).
    assert eer([0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.65]) == pytest.approx(0.25)


def test_eer_where_the_rates_do_not_meet_is_the_mean_at_the_closest_threshold() -> None:
    # Thresholds .1 .2 .3 .4 .5 .7 .8 inf; closest at t = 0.5: FMR 1/4, FNMR 1/3.
    assert eer([0.3, 0.7, 0.8], [0.1, 0.2, 0.4, 0.5]) == pytest.approx((1 / 4 + 1 / 3) / 2)


def test_eer_of_separated_scores_is_zero() -> None:
    assert eer([0.8, 0.9], [0.1, 0.2]) == 0.0


def test_threshold_at_fmr_accepts_at_most_that_share_of_impostors() -> None:
    threshold = threshold_at_fmr([0.1, 0.2, 0.3, 0.4], 0.25)
    assert threshold == np.nextafter(0.3, 1.0)  # 0.4 accepted (FMR 1/4), 0.3 rejected
    assert threshold_at_fmr([0.1, 0.2], 1.0) == -math.inf


def test_fnmr_at_fmr_with_ties() -> None:
    # FMR 0.2 allows 2 impostors, but the three tied at 0.5 go together: the threshold must reject
    # all of them (FMR 0), and the genuine pairs that tie with them are rejected too.
    assert fnmr_at_fmr(TIED_GENUINE, TIED_IMPOSTORS, 0.2) == 0.5
    assert fnmr_at_fmr(TIED_GENUINE, TIED_IMPOSTORS, 0.1) == 0.5
    # FMR 0.3 lets the three 0.5 impostors through; then every genuine score (≥ 0.5) is accepted.
    assert fnmr_at_fmr(TIED_GENUINE, TIED_IMPOSTORS, 0.3) == 0.0


def test_fewer_impostors_than_one_over_fmr_put_the_threshold_at_the_highest() -> None:
    assert fnmr_at_fmr([0.4, 0.5], [0.1, 0.4], 1e-3) == 0.5


def test_fmr_times_n_is_counted_despite_binary_rounding() -> None:
    # 0.29 · 100 = 28.999999999999996 in binary; 29 impostors of 100 may still be accepted.
    impostors = np.arange(100) / 100
    assert threshold_at_fmr(impostors, 0.29) == np.nextafter(0.7, 1.0)  # 0.71 … 0.99 accepted


def test_tar_at_far_is_one_minus_fnmr_at_fmr() -> None:
    for far in (0.1, 0.2, 0.3):
        assert tar_at_far(TIED_GENUINE, TIED_IMPOSTORS, far) == pytest.approx(
            1 - fnmr_at_fmr(TIED_GENUINE, TIED_IMPOSTORS, far)
        )
    rng = np.random.default_rng(3)
    for _ in range(50):
        genuine, impostors = rng.integers(0, 30, rng.integers(1, 40)), rng.integers(0, 20, rng.integers(1, 400))
        for far in (1e-2, 1e-3, 0.05):
            assert tar_at_far(genuine, impostors, far) == pytest.approx(1 - fnmr_at_fmr(genuine, impostors, far))


def test_fnmr_at_fmr_is_the_least_fnmr_of_any_threshold_within_the_fmr() -> None:
    """The definition, brute force over every observed threshold, on integer scores full of ties."""
    rng = np.random.default_rng(11)
    for _ in range(50):
        genuine, impostors = rng.integers(0, 30, rng.integers(1, 40)), rng.integers(0, 20, rng.integers(1, 400))
        for fmr in (1e-2, 1e-3, 0.05, 0.5):
            candidates = np.append(np.unique(np.concatenate([genuine, impostors])), np.inf)
            best = min((genuine < t).mean() for t in candidates if (impostors >= t).mean() <= fmr)
            assert fnmr_at_fmr(genuine, impostors, fmr) == best


def test_tar_at_far_is_the_face_reports_rule() -> None:
    """Threshold = the ⌊far·n⌋-th highest impostor, genuine accepted when strictly above it."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        genuine, impostors = rng.integers(0, 30, rng.integers(1, 40)), rng.integers(0, 20, rng.integers(1, 3000))
        for far in (1e-2, 1e-3, 1e-4):
            highest_first = np.sort(impostors)[::-1]
            assert tar_at_far(genuine, impostors, far) == (genuine > highest_first[int(far * len(impostors))]).mean()


def test_rates_of_an_empty_side_are_nan() -> None:
    assert math.isnan(fnmr_at_fmr([], [0.1], 0.01))
    assert math.isnan(tar_at_far([0.5], [], 0.01))
    assert math.isnan(eer([0.5], []))


def test_d_prime() -> None:
    # Means 2 and 0, population variances 1 and 1.
    assert d_prime([1.0, 3.0], [-1.0, 1.0]) == pytest.approx(2.0)
    # Means 4 and 1, variances 8/3 and 1: 3 / sqrt((8/3 + 1) / 2).
    assert d_prime([2.0, 4.0, 6.0], [0.0, 2.0]) == pytest.approx(3 / math.sqrt(11 / 6))


def test_rank1() -> None:
    tops, truth = ["a", "b", None, "d"], ["a", "c", "c", "d"]
    assert rank1(tops, truth) == 0.5
    assert rank1(tops, truth, found=[True, True, True, False]) == 0.25  # a probe with no template is a miss
    assert rank1(np.array(["x", "y"]), np.array(["x", "x"])) == 0.5
    assert math.isnan(rank1([], []))
    with pytest.raises(ValueError):
        rank1(["a"], ["a", "b"])
