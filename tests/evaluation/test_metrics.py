"""The benchmarks' error rates on cases small enough to count by hand (benchmarks/evaluation/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.evaluation.metrics import (
    ErrorCurve,
    Interval,
    Searches,
    Trials,
    beta_quantile,
    clopper_pearson,
    count_interval,
    d_prime,
    eer,
    fnir,
    fnir_at_fpir,
    fnmr_at_fmr,
    fpir,
    identity_bootstrap,
    mate_scores,
    open_set_rates,
    rank1,
    rank_k,
    regularized_beta,
    rule_of_three,
    tar_at_far,
    threshold_at_fmr,
    top_scores,
    unless_no_error,
    zero_fmr,
)

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


def test_zero_fmr_rejects_every_genuine_score_up_to_the_highest_impostor() -> None:
    # Highest impostor 0.5: the threshold must be above it, so 0.2 and 0.5 (a tie) are rejected.
    assert zero_fmr([0.2, 0.5, 0.6, 0.9], [0.1, 0.5]) == 0.5
    assert zero_fmr([0.6, 0.9], [0.1, 0.5]) == 0.0
    assert math.isnan(zero_fmr([], [0.1]))


def test_rank_k() -> None:
    candidates, truth = [["a", "b"], ["c", "b"], ["x", "y"], []], ["b", "b", "b", "b"]
    assert rank_k(candidates, truth, 1) == 0.0
    assert rank_k(candidates, truth, 2) == 0.5
    assert rank_k(candidates, truth, 2, found=[True, False, True, True]) == 0.25
    assert math.isnan(rank_k([], [], 5))
    with pytest.raises(ValueError):
        rank_k([["a"]], ["a", "b"], 1)


def test_mate_score_is_read_within_the_candidate_list_only() -> None:
    searches = [[("a", 3.0), ("b", 2.0)], [("c", 1.0)], []]
    assert mate_scores(searches, ["b", "b", "b"], 2).tolist() == [2.0, -math.inf, -math.inf]
    assert mate_scores(searches, ["b", "b", "b"], 1).tolist() == [-math.inf, -math.inf, -math.inf]
    assert top_scores(searches).tolist() == [3.0, 1.0, -math.inf]


# Ten non-mated searches (best candidate's score; the last returned nothing) and five mated ones
# (the mate's score; the last mate was not in the candidate list).
NON_MATED_TOP = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, -math.inf]
MATED = [0.95, 0.85, 0.75, 0.65, -math.inf]


def test_fpir_and_fnir_at_a_threshold() -> None:
    assert fpir(NON_MATED_TOP, 0.85) == 0.1  # only the 0.9 search returns a candidate ≥ 0.85
    assert fpir(NON_MATED_TOP, 0.5) == 0.5  # 0.9 … 0.5
    assert fnir(MATED, 0.85) == 0.6  # 0.75, 0.65 and the absent mate
    assert fnir(MATED, -math.inf) == 0.2  # an absent mate is missed whatever the threshold
    assert fpir(NON_MATED_TOP, -math.inf) == 0.9  # a search that returned nothing is never a false positive
    assert math.isnan(fpir([], 0.5)) and math.isnan(fnir([], 0.5))


def test_fnir_at_fpir_reads_the_lowest_threshold_within_the_fpir() -> None:
    # FPIR ≤ 0.1 allows one of ten non-mated searches: T just above 0.8, so FNIR = 3/5.
    assert fnir_at_fpir(MATED, NON_MATED_TOP, 0.1) == 0.6
    # FPIR ≤ 0.2: T just above 0.7; the mates at 0.65 and −inf are missed.
    assert fnir_at_fpir(MATED, NON_MATED_TOP, 0.2) == 0.4
    # FPIR 0: T above 0.9; only the 0.95 mate is found.
    assert fnir_at_fpir(MATED, NON_MATED_TOP, 0.0) == 0.8
    # FPIR 1 (every search may return a candidate): only the absent mate is missed.
    assert fnir_at_fpir(MATED, NON_MATED_TOP, 1.0) == 0.2


def test_weights_count_as_copies() -> None:
    weighted = ErrorCurve.from_scores([0.3, 0.7], [0.1, 0.5, 0.6], genuine_weights=[2, 1], impostor_weights=[1, 0, 3])
    copies = ErrorCurve.from_scores([0.3, 0.3, 0.7], [0.1, 0.6, 0.6, 0.6])
    assert weighted.eer() == copies.eer()
    for fmr in (0.0, 0.25, 0.5, 0.75):
        assert weighted.fnmr_at_fmr(fmr) == copies.fnmr_at_fmr(fmr)
    assert weighted.threshold_at_fmr(0.0) == 0.7  # the lowest observed score above the highest impostor


def test_regularized_beta_of_integers_is_a_binomial_tail() -> None:
    # I_x(a, b) = P(Binomial(a + b − 1, x) ≥ a): I_0.5(2, 3) = P(Bin(4, ½) ≥ 2) = 11/16.
    assert regularized_beta(0.5, 2, 3) == pytest.approx(11 / 16, abs=1e-12)
    # I_0.2(1, 1) = 0.2 (uniform); I_x(1, b) = 1 − (1 − x)^b.
    assert regularized_beta(0.2, 1, 1) == pytest.approx(0.2, abs=1e-12)
    assert regularized_beta(0.3, 1, 4) == pytest.approx(1 - 0.7**4, abs=1e-12)
    assert beta_quantile(11 / 16, 2, 3) == pytest.approx(0.5, abs=1e-9)


def test_clopper_pearson_against_published_values() -> None:
    zero = clopper_pearson(0, 10)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.3085, abs=1e-4)  # 1 − 0.025^(1/10)
    half = clopper_pearson(5, 10)
    assert (half.low, half.high) == (pytest.approx(0.1871, abs=1e-4), pytest.approx(0.8129, abs=1e-4))
    one = clopper_pearson(1, 10)
    assert (one.low, one.high) == (pytest.approx(0.00253, abs=1e-5), pytest.approx(0.4450, abs=1e-4))
    three = clopper_pearson(3, 1000)  # R: binom.test(3, 1000)$conf.int = 0.000619, 0.008742
    assert (three.low, three.high) == (pytest.approx(0.000619, abs=1e-6), pytest.approx(0.008742, abs=1e-6))
    assert clopper_pearson(10, 10).high == 1.0 and clopper_pearson(10, 10).low == pytest.approx(1 - 0.3085, abs=1e-4)
    assert half.method == "Clopper–Pearson"
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_rule_of_three_where_no_error_is_seen() -> None:
    assert rule_of_three(100) == Interval(0.0, 0.03, "rule of three")
    assert count_interval(0, 300) == Interval(0.0, 0.01, "rule of three")
    assert count_interval(1, 10) == clopper_pearson(1, 10)
    assert rule_of_three(2).high == 1.0
    assert Interval(0.1, 0.3, "x").complement() == Interval(0.7, 0.9, "x")


def test_identity_bootstrap_resamples_identities_not_trials() -> None:
    """Two identities: 0's genuine score accepted, 1's rejected, one impostor pair between them.

    A replicate drawing one identity twice has no impostor pair left (its weight is 0 · 2), so its
    FNMR is undefined and left out; every replicate drawing both is the original data, FNMR 1/2.
    """
    trials = Trials(
        genuine=np.array([0.9, 0.1]),
        impostor=np.array([0.5]),
        genuine_ids=np.array([0, 1]),
        impostor_ids=np.array([[0, 1]]),
        identities=2,
    )
    found = identity_bootstrap(trials, {"fnmr": lambda c: c.fnmr_at_fmr(0.0)}, reps=200, seed=1)
    assert found["fnmr"] == Interval(0.5, 0.5, "identity bootstrap")


def test_identity_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_identities() -> None:
    def interval(identities: int) -> tuple[float, Interval]:
        rng = np.random.default_rng(identities)
        ids = np.repeat(np.arange(identities), 4)
        genuine = rng.normal(2.0, 1.0, len(ids))
        pairs = np.array([(a, b) for a in range(identities) for b in range(a + 1, identities)])
        impostor = rng.normal(0.0, 1.0, len(pairs))
        trials = Trials(genuine, impostor, ids, pairs, identities)
        return trials.curve().eer(), identity_bootstrap(trials, {"eer": ErrorCurve.eer}, reps=300)["eer"]

    small_eer, small = interval(10)
    large_eer, large = interval(160)
    assert small.low <= small_eer <= small.high and large.low <= large_eer <= large.high
    assert large.high - large.low < small.high - small.low


def test_no_error_gives_the_rule_of_three_over_the_identities() -> None:
    bootstrap = Interval(0.0, 0.0, "identity bootstrap")
    assert unless_no_error(0.0, bootstrap, 12) == rule_of_three(12)
    assert unless_no_error(0.1, Interval(0.05, 0.2, "identity bootstrap"), 12).method == "identity bootstrap"


def _searches(identities: int = 5) -> Searches:
    """MATED / NON_MATED_TOP as searches, probe identity k % identities."""
    return Searches(
        np.array(MATED),
        np.array(NON_MATED_TOP),
        np.arange(len(MATED)) % identities,
        np.arange(len(NON_MATED_TOP)) % identities,
        identities,
    )


def test_open_set_rates_read_fnir_and_its_threshold() -> None:
    at_tenth, at_hundredth = open_set_rates(_searches(), [0.1, 0.01], reps=50)
    assert (at_tenth.fnir.value, at_tenth.threshold, at_tenth.unresolved) == (0.6, 0.85, False)
    # Ten non-mated searches cannot resolve FPIR 0.01: T goes above the highest of them (0.9), to the 0.95 mate.
    assert (at_hundredth.fnir.value, at_hundredth.threshold, at_hundredth.unresolved) == (0.8, 0.95, True)
    assert at_tenth.fnir.interval.method == "identity bootstrap"


def test_pooled_searches_keep_their_identities_apart() -> None:
    pooled = Searches.pooled([_searches(5), _searches(3)])
    assert pooled.identities == 8
    assert pooled.mated_ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 5, 6]
    assert pooled.fnir_at_fpir(0.1) == 0.6  # the same searches twice: the same rates
