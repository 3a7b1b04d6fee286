"""The shipped calibration table and the code that builds it (staleness: ``test_calibration_provenance.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from enrollment.calibration import build_table, load_calibration
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
