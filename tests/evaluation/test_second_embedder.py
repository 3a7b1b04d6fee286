"""The second face embedder's evaluation: the fusion rule it fits and the paired interval that decides it (the model itself: tests/enrollment/test_face_fused.py)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.evaluation import second_embedder as mfn
from benchmarks.evaluation.metrics import Trials

# Four identities, one genuine pair each, the six impostor pairs between them (highest impostor 0.25).
GENUINE_IDS = np.array([0, 1, 2, 3])
IMPOSTOR_IDS = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
IMPOSTOR = np.array([0.10, 0.20, 0.25, 0.15, 0.05, 0.00])


def _trials(genuine: list[float]) -> Trials:
    return Trials(np.array(genuine), IMPOSTOR, GENUINE_IDS, IMPOSTOR_IDS, 4)


def _tar_at_zero_far(curve) -> float:
    return curve.tar_at_far(0.0)


def test_paired_difference_of_a_comparison_with_itself_is_exactly_zero() -> None:
    trials = _trials([0.9, 0.8, 0.3, 0.2])
    gain = mfn.paired_difference(trials, trials, _tar_at_zero_far, reps=200)
    assert gain.value == 0.0
    assert (gain.interval.low, gain.interval.high) == (0.0, 0.0)
    assert gain.interval.method == "paired identity bootstrap"


def test_paired_difference_reads_both_curves_on_the_same_draw() -> None:
    # Threshold above the highest impostor (0.25): base accepts 0.9, 0.8, 0.3 (3 of 4), other all four.
    base, other = _trials([0.9, 0.8, 0.3, 0.2]), _trials([0.9, 0.8, 0.3, 0.5])
    gain = mfn.paired_difference(base, other, _tar_at_zero_far, reps=300)
    assert gain.value == pytest.approx(0.25)
    # other is never worse on any draw, so a paired interval cannot reach below 0 (two unpaired intervals would).
    assert gain.interval.low >= 0.0
    assert 0.0 < gain.interval.high <= 1.0


def test_paired_difference_refuses_trials_that_are_not_the_same_comparisons() -> None:
    other = Trials(np.array([0.9, 0.8, 0.3, 0.2]), IMPOSTOR, np.array([0, 1, 2, 2]), IMPOSTOR_IDS, 4)
    with pytest.raises(ValueError, match="same trials"):
        mfn.paired_difference(_trials([0.9, 0.8, 0.3, 0.2]), other, _tar_at_zero_far, reps=10)


def test_pooled_trials_keep_each_sets_identities_apart() -> None:
    a = Trials(np.array([0.9]), np.array([0.1]), np.array([0]), np.array([[0, 1]]), 2)
    b = Trials(np.array([0.8, 0.7]), np.array([0.2]), np.array([0, 2]), np.array([[1, 2]]), 3)
    pooled = mfn.pooled_trials([a, b])
    assert pooled.identities == 5
    assert pooled.genuine_ids.tolist() == [0, 2, 4]
    assert pooled.impostor_ids.tolist() == [[0, 1], [3, 4]]
    assert pooled.genuine.tolist() == [0.9, 0.8, 0.7]


def test_fusion_is_a_weighted_sum_of_z_normalised_cosines() -> None:
    fusion = mfn.Fusion(first_mean=0.1, first_std=0.2, second_mean=0.0, second_std=0.1, weight=2.0)
    # (0.5 − 0.1) / 0.2 + 2 · (0.3 − 0) / 0.1 = 2 + 6
    assert fusion.scores(np.array([0.5]), np.array([0.3]))[0] == pytest.approx(8.0)
