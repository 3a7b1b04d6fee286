"""Calibration: raw cosine → ``-log10(FMR)``, measured on impostor pairs, shipped with the manifest.

``python -m enrollment.calibrate face [--data DIR] [--model-dir DIR]`` embeds the calibration sets
(glint24_aligned, att_orl, five_celebrities), pools their impostor cosines and writes the table
named by the embedder's ``calibration`` key in ``models.toml``.  ``load_calibration()`` reads it
back as a ``matcher.calibration.Calibration``.

Why a table and not a formula: real embedders' impostor distributions have heavier tails than
the Gaussian null model, so a formula would promise rarer false matches than we get.  The table
stops where the data stops: with N impostor pairs we cannot see an FMR below about 5/N, so the
scores are clamped there (≈ 5 for a few 100 k pairs) rather than extrapolated.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from enrollment import models
from enrollment.errors import ModelUnavailable
from matcher.calibration import Calibration

log = logging.getLogger(__name__)

EMBEDDER = "fr_feature"
MIN_TAIL_PAIRS = 5  # the last calibrated FMR is MIN_TAIL_PAIRS / N
SCORE_STEP = 0.1


def load_calibration(model_name: str = EMBEDDER, manifest: Mapping[str, models.ModelSpec] | None = None) -> Calibration:
    """The shipped similarity → ``-log10(FMR)`` table of ``model_name``.

    Raises ``ModelUnavailable`` if the manifest names no table, the file is missing, or it was
    measured for a different model id (a table must never outlive the model it describes).
    """
    specs = manifest if manifest is not None else models.load_manifest()
    spec = specs.get(model_name)
    if spec is None or spec.calibration is None:
        raise ModelUnavailable(f"model {model_name!r} has no calibration table in the manifest")
    return read_table(spec.calibration, "model_id", spec.model_id)


def read_table(path: Path | str, id_key: str, expected_id: str) -> Calibration:
    """A calibration table file, checked to describe ``expected_id`` (the model or matcher it was measured for)."""
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelUnavailable(f"cannot read calibration table {path}: {exc}") from exc
    if table.get(id_key) != expected_id:
        raise ModelUnavailable(f"calibration table {path} is for {table.get(id_key)!r}, not {expected_id!r}")
    try:
        return Calibration(
            source=str(table["source"]),
            similarities=tuple(float(v) for v in table["similarities"]),
            scores=tuple(float(v) for v in table["scores"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUnavailable(f"calibration table {path} is malformed: {exc}") from exc


def build_table(impostors: np.ndarray, step: float = SCORE_STEP, min_tail: int = MIN_TAIL_PAIRS) -> tuple[list[float], list[float], float]:
    """(similarities, scores, max_score) from impostor cosines.

    Points at scores 0, step, 2·step, … up to ``log10(N / min_tail)``; each point's similarity is
    the impostor quantile at FMR = 10^-score.  Endpoints −1 and 1 are added so the table covers
    every cosine; the matcher's ``Calibration`` clamps beyond the last measured point.
    """
    values = np.sort(np.asarray(impostors, dtype=np.float64))
    n = len(values)
    if n < 100:
        raise ValueError(f"need at least 100 impostor pairs to calibrate, got {n}")
    max_score = math.floor(math.log10(n / min_tail) / step) * step
    sims, scores = [-1.0], [0.0]
    for k in range(1, int(round(max_score / step)) + 1):
        score = round(k * step, 6)
        threshold = float(np.quantile(values, 1.0 - 10.0 ** (-score)))
        if threshold > sims[-1] + 1e-6:
            sims.append(threshold)
            scores.append(score)
    if sims[-1] < 1.0:
        sims.append(1.0)
        scores.append(scores[-1])
    return [round(s, 6) for s in sims], scores, max_score


def _write_table(path: Path, header: Sequence[str], fields: Mapping[str, object]) -> None:
    def fmt(value: object) -> str:
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, (list, tuple)):
            rows = [", ".join(fmt(v) for v in value[i : i + 8]) for i in range(0, len(value), 8)]
            return "[\n  " + ",\n  ".join(rows) + ",\n]"
        if isinstance(value, float):
            return repr(value)
        return str(value)

    lines = [f"# {line}" if line else "#" for line in header] + [""]
    lines += [f"{key} = {fmt(value)}" for key, value in fields.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def calibrate_face(data_dir: Path | None, model_dir: Path | None, threads: int = 1) -> Path:
    """Embed the calibration sets, pool impostor cosines, write the embedder's table; return its path."""
    from enrollment.datasets import CALIBRATION_SETS, PRE_ALIGNED_SETS, face_sets, load_face_set
    from enrollment.face.evaluation import embed_set, impostor_scores
    from enrollment.face.pipeline import FaceExtractor

    manifest = models.load_manifest()
    spec = manifest[EMBEDDER]
    if spec.calibration is None:
        raise ModelUnavailable(f"[models.{EMBEDDER}] names no calibration file")
    present = face_sets(data_dir)
    missing = [s for s in CALIBRATION_SETS if s not in present]
    if missing:
        raise FileNotFoundError(f"calibration sets missing from the data folder: {', '.join(missing)}")
    extractor = FaceExtractor(model_dir, threads=threads, with_quality_models=False)
    pooled, parts = [], []
    for name in CALIBRATION_SETS:
        embedded = embed_set(extractor, load_face_set(name, data_dir), pre_aligned=name in PRE_ALIGNED_SETS)
        scores = impostor_scores(embedded)
        pooled.append(scores)
        parts.append(f"{name} {len(scores)}")
        log.info("%s: %d images, %d acquired, %d impostor pairs", name, len(embedded.labels), int(embedded.acquired.sum()), len(scores))
    impostors = np.concatenate(pooled)
    sims, scores, max_score = build_table(impostors)
    header = [
        f"Calibration of {spec.model_id}: cosine similarity -> -log10(FMR).",
        "Generated by `python -m enrollment.calibrate face`; do not edit by hand.",
        f"Impostor pairs (within each set, acquired images only): {', '.join(parts)}; total {len(impostors)}.",
        f"Scores stop at {max_score:.1f} = log10(N / {MIN_TAIL_PAIRS}): below FMR {MIN_TAIL_PAIRS}/N the data says nothing,",
        "so the table is clamped there instead of extrapolated.",
    ]
    _write_table(
        spec.calibration,
        header,
        {
            "model_id": spec.model_id,
            "source": f"{spec.model_id} impostors: {', '.join(parts)} pairs",
            "generated": _dt.date.today().isoformat(),
            "impostor_pairs": int(len(impostors)),
            "max_score": float(round(max_score, 3)),
            "similarities": sims,
            "scores": [float(s) for s in scores],
        },
    )
    return spec.calibration


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m enrollment.calibrate", description="Measure and write a calibration table.")
    parser.add_argument("modality", choices=("face",))
    parser.add_argument("--data", type=Path, default=None, help="data folder (default $SHANAKHT_DATA or ../shared/data)")
    parser.add_argument("--model-dir", type=Path, default=None, help="model cache (default $SHANAKHT_MODEL_DIR or .cache/models)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("enrollment.face.evaluation").setLevel(logging.WARNING)
    try:
        path = calibrate_face(args.data, args.model_dir, args.threads)
    except (ModelUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    calibration = load_calibration()
    print(f"wrote {path}: {len(calibration.similarities)} points, scores up to {max(calibration.scores):.1f}")
    for score in (2.0, 3.0, 4.0):
        print(f"  FMR 1e-{score:.0f}: cosine {calibration.similarity_for_score(score):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
