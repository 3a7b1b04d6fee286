"""The server refuses to start, saying why, when a model is missing or is not the pinned file."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from enrollment import models
from tests.conftest import REPO, model_cache

CACHE = model_cache()


def serve(tmp_path, model_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--model-dir", str(model_dir)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )


@pytest.mark.skipif(models.check(CACHE, ["fr_feature", "mfn_feature"]) != [], reason="face models not fetched; run `make install`")
@pytest.mark.parametrize("name, file", [("fr_feature", "fr_feature.onnx"), ("mfn_feature", "MobileFaceNet.onnx")])
def test_refuses_to_start_on_a_tampered_or_missing_model(tmp_path, name, file):
    tampered = tmp_path / "models"
    shutil.copytree(CACHE, tampered)
    (path,) = tampered.rglob(file)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = serve(tmp_path, tampered)
    assert result.returncode != 0 and "refusing to start" in result.stderr and name in result.stderr
    assert "sha" in result.stderr.lower()

    path.unlink()
    result = serve(tmp_path, tampered)
    assert result.returncode != 0 and "refusing to start" in result.stderr and name in result.stderr
