from __future__ import annotations

import math

import numpy as np
import pytest

from matcher.calibration import Calibration
from tests.conftest import unit_vectors


def test_null_model_matches_measured_impostor_rate_of_random_vectors():
    calibration = Calibration.null_model(512)
    vectors = unit_vectors(2000, 512, 3)
    sims = (vectors[:1000] @ vectors[1000:].T).ravel()  # 1e6 impostor pairs
    threshold = calibration.similarity_for_score(3.0)  # FMR 1e-3
    measured = float(np.mean(sims >= threshold))
    assert 0.5e-3 < measured < 2e-3
    assert calibration.score(0.99) == pytest.approx(12.0)
    assert np.all(np.diff(calibration.score(np.linspace(-1, 1, 100))) >= 0)


def test_tables_must_be_monotone():
    with pytest.raises(ValueError):
        Calibration("x", (0.1, 0.0), (1.0, 2.0))
    assert Calibration("x", (0.0, 1.0), (0.0, 4.0)).score(0.5) == pytest.approx(2.0)
    assert math.isclose(Calibration("x", (0.0, 1.0), (0.0, 4.0)).similarity_for_score(2.0), 0.5)
