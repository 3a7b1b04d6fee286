"""The Cython cylinder kernel (``native/cylinders.pyx``) gives the NumPy reference's cylinders bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.finger import descriptors
from matcher.finger.descriptors import prepare, prepare_reference
from matcher.finger.template import FingerTemplate

pytest.importorskip("native.cylinders", reason="native.cylinders not built (pip install -e . or cythonize)")

FIELDS = ("x", "y", "theta", "bits", "valid", "bit_counts", "source")


def assert_same(template: FingerTemplate) -> None:
    a, b = prepare(template), prepare_reference(template)
    for name in FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    assert a.total == b.total
    assert np.array_equal(a.cell_mask(), b.cell_mask())


def synthetic(n: int, seed: int, width: int = 300, height: int = 400) -> FingerTemplate:
    rng = np.random.default_rng(seed)
    return FingerTemplate(
        x=rng.integers(0, width, n).astype(np.uint16), y=rng.integers(0, height, n).astype(np.uint16),
        angle=rng.integers(0, 256, n).astype(np.uint8), kind=np.ones(n, np.uint8), quality=np.full(n, 80, np.uint8),
        width=width, height=height,
    )


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 12, 40, 90])
def test_synthetic_templates(n):
    for seed in range(3):
        assert_same(synthetic(n, seed))


def test_minutiae_on_the_image_border_and_coincident():
    t = synthetic(30, 9, width=120, height=90)
    x, y = t.x.copy(), t.y.copy()
    x[:4], y[:4] = 0, 0
    x[4:6], y[4:6] = 119, 89
    x[6], y[6] = x[7], y[7]
    assert_same(FingerTemplate(x=x, y=y, angle=t.angle, kind=t.kind, quality=t.quality, width=120, height=90))


def test_real_and_jittered_templates(db1_templates):
    from benchmarks.evaluation.growth import jittered

    rng = np.random.default_rng(0)
    for template in db1_templates.values():
        assert_same(template)
        for _ in range(5):
            assert_same(jittered(template, rng))


def test_cells_near_the_threshold_are_recomputed_the_reference_way(db1_templates, monkeypatch):
    """With every cell "ambiguous", each is recomputed by ``_reference_value``: the same bits again."""
    monkeypatch.setattr(descriptors, "_AMBIGUOUS", 10.0)
    assert_same(synthetic(14, 4))
    template = next(iter(db1_templates.values()))
    small = FingerTemplate(x=template.x[:18], y=template.y[:18], angle=template.angle[:18], kind=template.kind[:18],
                           quality=template.quality[:18], width=template.width, height=template.height)
    assert_same(small)


def test_the_kernel_runs_without_the_gil():
    import threading
    import time

    templates = [synthetic(45, s) for s in range(16)]
    started = time.perf_counter()
    for t in templates:
        prepare(t)
    alone = time.perf_counter() - started
    out = []
    threads = [threading.Thread(target=lambda part: out.extend(prepare(t) for t in part), args=(templates[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(out) == len(templates) and alone > 0
