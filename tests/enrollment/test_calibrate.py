"""The shipped calibration table and the code that builds it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from enrollment import models
from enrollment.calibration import build_table, load_calibration
from enrollment.errors import ModelUnavailable
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
    assert float(calibration.score(0.0)) < 1.0 and float(calibration.score(0.95)) == scores[-1]


def test_build_table_matches_the_impostor_tail() -> None:
    rng = np.random.default_rng(7)
    impostors = rng.normal(0.0, 0.1, 200_000)
    sims, scores, max_score = build_table(impostors)
    calibration = Calibration("synthetic", tuple(sims), tuple(scores))
    assert max_score == pytest.approx(np.floor(np.log10(200_000 / 5) * 10) / 10)
    for target in (1.0, 2.0, 3.0):
        threshold = calibration.similarity_for_score(target)
        assert (impostors > threshold).mean() == pytest.approx(10**-target, rel=0.15)


def test_table_for_another_model_is_refused(tmp_path: Path) -> None:
    manifest = models.load_manifest()
    spec = manifest["fr_feature"]
    copy = tmp_path / "table.toml"
    shutil.copyfile(spec.calibration, copy)
    copy.write_text(copy.read_text().replace(spec.model_id, "someone-else@1"))
    from dataclasses import replace

    with pytest.raises(ModelUnavailable, match="someone-else"):
        load_calibration("fr_feature", {**manifest, "fr_feature": replace(spec, calibration=copy)})
