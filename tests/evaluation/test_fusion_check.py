"""``benchmarks/fusion_check.py`` runs end to end on a few people, so the figures in RESULTS can be rerun (no figure asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import DATA, REPO

pytestmark = pytest.mark.skipif(
    not (DATA / "finger" / "socofing_real_distractors" / "labels.csv").is_file()
    or not (DATA / "face" / "glint24_aligned" / "labels.csv").is_file(),
    reason=f"finger and face data not found under {DATA}; set SHANAKHT_DATA to the shared data folder",
)


def test_the_fusion_check_runs_on_a_few_people():
    result = subprocess.run(
        [sys.executable, "benchmarks/fusion_check.py", "--people", "6", "--face-images", "40"],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={**os.environ, "SHANAKHT_DATA": str(DATA)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "### Tune identities" in result.stdout and "### Report identities" in result.stdout
    assert "2 fingers, fused" in result.stdout and "face + finger, fused" in result.stdout
