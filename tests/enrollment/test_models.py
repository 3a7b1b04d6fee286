"""The model manifest, the cache check and the hash verification the server relies on at start-up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from enrollment import models
from enrollment.errors import ModelUnavailable
import enrollment.face as face
from enrollment.face import detector, embedder, eyes, landmarks, liveness, pose
from matcher.errors import FailedPrecondition

REPO = Path(__file__).resolve().parents[2]


def test_manifest_lists_every_face_model_with_pinned_hashes() -> None:
    manifest = models.load_manifest()
    for name in ("fr_detect", "fr_landmark", "fr_feature", "fr_liveness", "fr_pose", "fr_eye", "leader"):
        spec = manifest[name]
        assert len(spec.sha256) == 64 and len(spec.package_sha256) == 64
    feature = manifest["fr_feature"]
    assert feature.model_id == "faceplugin-fr_feature@0.0.1" and feature.output_dim == 512
    # What galleries and clients are told the face templates are (enrollment.face) is what the model makes.
    assert (feature.model_id, feature.output_dim) == (face.MODEL_ID, face.DIMENSION) == (feature.model_id, embedder.EMBEDDING_DIM)
    assert feature.calibration is not None and feature.calibration.is_file()


@pytest.mark.parametrize(
    "name, module",
    [("fr_detect", detector), ("fr_landmark", landmarks), ("fr_feature", embedder), ("fr_liveness", liveness), ("fr_pose", pose), ("fr_eye", eyes)],
)
def test_code_constants_match_the_manifest_contract(name: str, module) -> None:
    spec = models.load_manifest()[name]
    assert tuple(spec.input["shape"]) == tuple(module.INPUT_SHAPE)
    assert spec.input["colour"] == module.COLOUR_ORDER


def test_model_unavailable_is_a_failed_precondition() -> None:
    assert issubclass(ModelUnavailable, FailedPrecondition)


def _copy_model(model_dir: Path, tmp_path: Path, name: str) -> Path:
    spec = models.load_manifest()[name]
    target = tmp_path / spec.cache_relpath
    target.parent.mkdir(parents=True)
    shutil.copyfile(model_dir / spec.cache_relpath, target)
    return target


def test_load_verified_returns_the_cached_file(model_dir: Path) -> None:
    path = models.load_verified("fr_eye", model_dir)
    assert path.is_file() and path.name == "fr_eye.onnx"


def test_missing_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="fr_feature.*missing"):
        models.load_verified("fr_feature", tmp_path)


def test_corrupted_model_is_detected(model_dir: Path, tmp_path: Path) -> None:
    target = _copy_model(model_dir, tmp_path, "fr_eye")
    assert models.check(tmp_path, ["fr_eye"]) == []
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))

    with pytest.raises(ModelUnavailable, match="fr_eye.*SHA-256") as info:
        models.load_verified("fr_eye", tmp_path)
    assert str(target) in str(info.value)
    (problem,) = models.check(tmp_path, ["fr_eye"])
    assert "fr_eye" in problem

    cli = subprocess.run(
        [sys.executable, "-m", "enrollment.models", "check", "--cache-dir", str(tmp_path), "--only", "fr_eye"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert cli.returncode != 0 and "fr_eye" in cli.stderr and "SHA-256" in cli.stderr


def test_fetch_skips_files_already_present(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_model(model_dir, tmp_path, "fr_eye")

    def no_network(*args, **kwargs):
        raise AssertionError("fetch must not download a model that is present and valid")

    monkeypatch.setattr(models.subprocess, "run", no_network)
    (path,) = models.fetch(tmp_path, ["fr_eye"])
    assert path.is_file()


def test_unknown_model_name_is_refused() -> None:
    with pytest.raises(ModelUnavailable, match="not in the manifest"):
        models.load_verified("no_such_model")
