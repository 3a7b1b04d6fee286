"""Fixtures for the enrollment tests: real models from the cache, real images from the data folder.

Both are outside the repository.  When either is absent the tests that need it are skipped with
the command that provides it; nothing is downloaded from a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.evaluation.datasets import default_data_dir
from enrollment import models
from tests.conftest import model_cache

FACE_MODELS = ("fr_detect", "fr_landmark", "fr_feature", "mfn_feature", "fr_pose", "fr_eye", "fr_liveness")



@pytest.fixture(scope="session")
def model_dir() -> Path:
    directory = model_cache()
    problems = models.check(directory, FACE_MODELS)
    if problems:
        pytest.skip(f"face models not available ({problems[0]}); run `python -m enrollment.models fetch`")
    return directory


@pytest.fixture(scope="session")
def face_data() -> Path:
    root = default_data_dir() / "face"
    if not (root / "ageitgey" / "labels.csv").is_file():
        pytest.skip(f"face data not found under {root}; set SHANAKHT_DATA to the shared data folder")
    return root


@pytest.fixture(scope="session")
def extractor(model_dir: Path):
    from enrollment.face.pipeline import FaceExtractor

    return FaceExtractor(model_dir, threads=1)
