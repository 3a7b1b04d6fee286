"""A calibration table records what its raw scores depend on and is refused, naming what changed, once that changes.

Nobody bumps an id: changing a matcher parameter, an extraction constant or a model file makes the
shipped table stale by itself, and the server will not start on it.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from enrollment import calibration, models
from enrollment.calibration import load_calibration, load_finger_calibration
from enrollment.errors import ModelUnavailable
from enrollment.face import align, fused
from enrollment.face.provenance import score_provenance as face_provenance
from enrollment.finger import minutiae
from enrollment.finger.pipeline import FingerExtractor
from enrollment.finger.provenance import score_provenance as finger_provenance
from enrollment.provenance import differences, digest, module_constants
from matcher.finger import descriptors, parameters
from tests.conftest import REPO, model_cache


def test_shipped_tables_load_while_nothing_changed() -> None:
    assert load_calibration().similarities[0] == -1.0
    assert load_finger_calibration().similarities[0] == 0.0


def test_a_changed_matcher_parameter_makes_the_finger_table_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parameters, "DIST_TOL", parameters.DIST_TOL + 1.0)
    with pytest.raises(ModelUnavailable) as raised:
        load_finger_calibration()
    message = str(raised.value)
    assert "finger.toml is stale" in message
    assert f"matcher DIST_TOL {parameters.DIST_TOL - 1.0} → {parameters.DIST_TOL}" in message
    assert "python benchmarks/calibrate.py finger" in message


def test_a_new_matcher_parameter_is_covered_without_being_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parameters, "SCORE_VERSION", 3, raising=False)
    with pytest.raises(ModelUnavailable, match=r"matcher SCORE_VERSION \(absent\) → 3"):
        load_finger_calibration()


@pytest.mark.parametrize(
    ("module", "name", "key"),
    [(minutiae, "QUALITY_THRESHOLD", "minutiae QUALITY_THRESHOLD"), (descriptors, "RADIUS", "descriptors RADIUS")],
)
def test_a_changed_extraction_or_descriptor_constant_makes_the_finger_table_stale(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, key: str
) -> None:
    monkeypatch.setattr(module, name, getattr(module, name) * 1.1)
    with pytest.raises(ModelUnavailable, match=key):
        load_finger_calibration()


def test_the_extractor_refuses_a_stale_table(monkeypatch: pytest.MonkeyPatch) -> None:
    extractor = FingerExtractor(detector=object())  # type: ignore[arg-type]  # no model needed for the table
    extractor.calibration()
    monkeypatch.setattr(parameters, "OVERLAP_BLEND", 0.25)
    with pytest.raises(ModelUnavailable, match="OVERLAP_BLEND"):
        extractor.calibration()


def test_another_face_model_file_makes_the_face_table_stale() -> None:
    manifest = models.load_manifest()
    other = "0" * 64
    for name in ("fr_detect", "fr_feature", "mfn_feature"):
        changed = {**manifest, name: replace(manifest[name], sha256=other)}
        with pytest.raises(ModelUnavailable, match=f"face.toml is stale: models {name} .* → 000000000000…"):
            load_calibration(manifest=changed)
    load_calibration(manifest=manifest)


def test_a_changed_fusion_weight_makes_the_face_table_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "MOBILEFACENET_WEIGHT", fused.MOBILEFACENET_WEIGHT + 0.25)
    with pytest.raises(ModelUnavailable, match=r"face.toml is stale: fused MOBILEFACENET_WEIGHT 2.0 → 2.25.*calibrate.py face"):
        load_calibration()


def test_a_changed_alignment_template_makes_the_face_table_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(align, "ARCFACE_TEMPLATE", align.ARCFACE_TEMPLATE + np.float32(0.5))
    with pytest.raises(ModelUnavailable, match="align ARCFACE_TEMPLATE"):
        load_calibration()


def test_a_table_without_provenance_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "finger.toml"
    text = calibration.FINGER_TABLE.read_text()
    table.write_text(text.replace("provenance_sha256 =", "old_provenance_sha256 ="))
    with pytest.raises(ModelUnavailable, match="records no score provenance"):
        load_finger_calibration(table)


def test_a_hand_edited_description_does_not_pass_for_a_refit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing the readable dict to match the code leaves the hash stale: only a refit writes a new one."""
    table = tmp_path / "finger.toml"
    table.write_text(calibration.FINGER_TABLE.read_text().replace("\nDIST_TOL = 8.0\n", "\nDIST_TOL = 9.0\n"))
    monkeypatch.setattr(parameters, "DIST_TOL", 9.0)
    with pytest.raises(ModelUnavailable, match="provenance hash"):
        load_finger_calibration(table)


def test_provenance_is_plain_data_hashed_canonically() -> None:
    current = finger_provenance()
    assert digest(current) == digest({key: current[key] for key in reversed(list(current))})
    assert digest({"a": (1.0, 2)}) == digest({"a": [1.0, 2]}) != digest({"a": [1.0, 3]})
    assert module_constants(parameters)["SEEDS"] == parameters.SEEDS
    assert set(face_provenance()["models"]) == {"fr_detect", "fr_landmark", "fr_feature", "mfn_feature"}  # type: ignore[arg-type]
    assert differences({"g": {"A": 1, "B": 2}}, {"g": {"A": 1, "B": 3, "C": 4}}) == ["g B 2 → 3", "g C (absent) → 4"]


@pytest.mark.skipif(
    models.check(model_cache(), ["fr_feature", "leader", "leader_fused"]) != [], reason="models not fetched; run `make install`"
)
def test_the_server_refuses_to_start_on_a_stale_table(tmp_path: Path) -> None:
    """The same server start as ``tests/server/test_models_required.py``, with one matcher parameter changed first."""
    start = (
        "import sys; import matcher.finger.parameters as p; p.DIST_TOL += 1.0; "
        "from cli.commands import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", start, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0",
         "--model-dir", str(model_cache())],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )
    assert result.returncode != 0 and "refusing to start" in result.stderr
    assert "finger.toml is stale: matcher DIST_TOL" in result.stderr
