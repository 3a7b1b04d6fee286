"""Fixtures for the fingerprint tests (a pytest plugin of tests/conftest.py): the real LEADER model from the cache, real prints by path.

Both live outside the repository; tests that need them skip with the command that provides them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.evaluation.datasets import default_data_dir
from enrollment import models
from tests.conftest import model_cache

DB1 = "fvc2002_db1_b/images/fingerprintmatching/FVC2002/DB1_B"



@pytest.fixture(scope="session")
def leader_dir() -> Path:
    directory = model_cache()
    problems = models.check(directory, ["leader", "leader_fused"])
    if problems:
        pytest.skip(f"LEADER model not available ({problems[0]}); run `python -m enrollment.models fetch --only leader`")
    return directory


@pytest.fixture(scope="session")
def finger_data() -> Path:
    root = default_data_dir() / "finger"
    if not (root / DB1 / "101_1.tif").is_file():
        pytest.skip(f"fingerprint data not found under {root}; set SHANAKHT_DATA to the shared data folder")
    return root


@pytest.fixture(scope="session")
def face_photo() -> Path:
    path = default_data_dir() / "face" / "ageitgey"
    photos = sorted(path.rglob("*.jpg")) if path.is_dir() else []
    if not photos:
        pytest.skip("face photos not found; set SHANAKHT_DATA to the shared data folder")
    return photos[0]


@pytest.fixture(scope="session")
def finger_extractor(leader_dir: Path):
    from enrollment.finger.pipeline import FingerExtractor

    return FingerExtractor(leader_dir, threads=1)


@pytest.fixture(scope="session")
def db1_templates(finger_extractor, finger_data):
    """Impressions 1–3 of fingers 101 and 102 of FVC2002 DB1_B: {(finger, impression): template}."""
    out = {}
    for finger in (101, 102):
        for impression in (1, 2, 3):
            data = (finger_data / DB1 / f"{finger}_{impression}.tif").read_bytes()
            out[(finger, impression)] = finger_extractor.extract(data, position=2).template
    return out
