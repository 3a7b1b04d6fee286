"""The Cython minutiae matcher computes exactly the NumPy reference's score on real template pairs."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from matcher.finger import reference

kernel = pytest.importorskip("native.minutiae", reason="native.minutiae not built (pip install -e . or cythonize)")

REPO = Path(__file__).resolve().parents[2]
DB1 = "fvc2002_db1_b/images/fingerprintmatching/FVC2002/DB1_B"


def test_cells_in_radius_constant():
    from matcher.finger.descriptors import _OFFSETS, ND, RADIUS

    assert reference.CELLS_IN_RADIUS_BITS == int((np.hypot(_OFFSETS[:, 0], _OFFSETS[:, 1]) <= RADIUS).sum()) * ND


@pytest.fixture(scope="module")
def prepared():
    from benchmarks.evaluation.datasets import default_data_dir
    from enrollment import models
    from enrollment.finger.pipeline import FingerExtractor
    from matcher.finger.descriptors import prepare

    model_dir = Path(os.environ.get(models.MODEL_DIR_ENV) or REPO / ".cache" / "models")
    problems = models.check(model_dir, ["leader", "leader_fused"])
    if problems:
        pytest.skip(f"LEADER model not available ({problems[0]}); run `python -m enrollment.models fetch --only leader`")
    folder = default_data_dir() / "finger" / DB1
    if not (folder / "103_1.tif").is_file():
        pytest.skip(f"fingerprint data not found under {folder}; set SHANAKHT_DATA")
    extractor = FingerExtractor(model_dir)
    names = ["103_1", "103_2", "103_5", "104_1", "104_4"]
    return [prepare(extractor.extract((folder / f"{n}.tif").read_bytes()).template) for n in names]


def test_kernel_equals_reference_on_real_pairs(prepared):
    from matcher.finger.matching import match

    for a, b in itertools.permutations(prepared, 2):
        assert match(a, b) == reference.match(a, b)


def test_similarity_matrix_equals_reference(prepared):
    a, b = prepared[0], prepared[1]
    got = kernel.similarity_matrix(a.bits, a.valid, a.theta, b.bits, b.valid, b.theta,
                                   reference.MAX_DIRECTION_DIFF, reference.MIN_COMMON_FRACTION * reference.CELLS_IN_RADIUS_BITS)
    np.testing.assert_array_equal(got, reference.local_similarities(a, b))


def test_empty_templates_score_zero(prepared):
    from matcher.finger.matching import match

    a = prepared[0]
    empty = type(a)(a.x[:0], a.y[:0], a.theta[:0], a.bits[:0], a.valid[:0], a.bit_counts[:0], a.source[:0], 0)
    assert match(a, empty) == 0.0 == reference.match(empty, a)
