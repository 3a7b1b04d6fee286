"""The shipped calibration table and the code that builds it (staleness: ``test_calibration_provenance.py``)."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest

from enrollment.calibration import (
    FINGER_SCORE_RANGE,
    FINGER_TABLE,
    TAIL_TO_SCORE,
    build_table,
    extend_table,
    fit_exponential_tail,
    load_calibration,
    load_finger_calibration,
)
from matcher.calibration import Calibration


def test_shipped_table_is_monotone_and_clamped() -> None:
    calibration = load_calibration()
    assert isinstance(calibration, Calibration)
    sims, scores = np.array(calibration.similarities), np.array(calibration.scores)
    assert np.all(np.diff(sims) > 0) and np.all(np.diff(scores) >= 0)
    assert sims[0] == -1.0 and sims[-1] == 1.0
    assert scores[0] == 0.0 and 4.0 <= scores[-1] <= 6.0, "clamped where the impostor data runs out"
    # The measured thresholds sit where an ArcFace-style model's do.
    assert 0.2 < calibration.similarity_for_score(3.0) < 0.6
    assert float(calibration.score(0.0)) < 1.0 and float(calibration.score(0.95)) == pytest.approx(scores[-1])  # float32 scores


def test_build_table_matches_the_impostor_tail() -> None:
    rng = np.random.default_rng(7)
    impostors = rng.normal(0.0, 0.1, 200_000)
    sims, scores, max_score = build_table(impostors)
    calibration = Calibration("synthetic", tuple(sims), tuple(scores))
    assert max_score == pytest.approx(np.floor(np.log10(200_000 / 5) * 10) / 10)
    for target in (1.0, 2.0, 3.0):
        threshold = calibration.similarity_for_score(target)
        assert (impostors > threshold).mean() == pytest.approx(10**-target, rel=0.15)


def test_an_exponential_tail_recovers_the_rate_and_its_bound_lies_below_it() -> None:
    rng = np.random.default_rng(11)
    rate = 1.2  # -log10 FMR per unit of score
    impostors = rng.exponential(1.0 / (rate * np.log(10.0)), 500_000)
    tail = fit_exponential_tail(impostors)
    assert tail.exceedances == pytest.approx(500, rel=0.05)  # beyond FMR 1e-3
    assert tail.fitted_rate == pytest.approx(rate, rel=0.12)
    assert tail.rate < tail.fitted_rate
    assert tail.rate == pytest.approx(tail.fitted_rate * (1 - 1.96 / np.sqrt(tail.exceedances)), rel=0.02)
    with pytest.raises(ValueError, match="at least 100"):
        fit_exponential_tail(impostors[:50_000])


def test_a_modelled_tail_understates_scores_beyond_the_data_and_stops_at_its_limit() -> None:
    """Fitted on 200k pairs (measured to 10^-4.6), checked against 20M pairs of the same distribution down to 10^-6."""
    rng = np.random.default_rng(3)
    population = rng.exponential(1.0 / np.log(10.0), 20_000_000)
    sample = population[:200_000]
    sims, scores, max_score = build_table(sample, similarity_range=FINGER_SCORE_RANGE)
    tail = fit_exponential_tail(sample)
    ext_sims, ext_scores = extend_table(sims, scores, tail)
    assert ext_sims[: len(sims) - 1] == sims[:-1], "measured points are kept"
    assert ext_sims[-1] == FINGER_SCORE_RANGE[1] and max(ext_scores) == pytest.approx(TAIL_TO_SCORE)
    assert np.all(np.diff(ext_sims) > 0) and np.all(np.diff(ext_scores) >= 0)
    calibration = Calibration("synthetic", tuple(ext_sims), tuple(ext_scores))
    for target in (5.0, 5.5, 6.0):
        observed_fmr = (population > calibration.similarity_for_score(target)).mean()
        assert observed_fmr <= 10**-target * 1.5, f"at score {target} the table must not promise more than the data holds"
        assert observed_fmr > 0 or target == 6.0


def test_the_shipped_finger_tail_promises_at_most_twice_what_other_tune_impostors_show() -> None:
    """Its model, fitted as the table fits it on different-finger tune pairs, against those pairs' own quantiles."""
    with open(FINGER_TABLE, "rb") as fh:
        table = tomllib.load(fh)
    tail = table["tail"]
    assert tail["check_pairs"] > 5 * table["impostor_pairs"], "checked on many more pairs than the table was fitted on"
    assert max(tail["check_scores"]) > table["max_score"], "checked beyond where the table's own data stops"
    assert load_finger_calibration().scores[-1] == tail["to_score"]
    for data, model in zip(tail["check_scores"], tail["check_model_scores"]):
        assert model - data <= math.log10(2.0), f"at -log10 FMR {data} the model says {model}"
