"""Calibration tables: raw similarity → ``-log10(FMR)``, shipped beside the models, for every modality.

A table is measured on impostor pairs of tuning data (``python benchmarks/calibrate.py``) and read
back here as a ``matcher.calibration.Calibration``.  Each table names what it describes (a model id
or a matcher id) and is refused when that no longer matches: a table must never outlive the model
or matcher whose scores it maps.

Why a table and not a formula: real embedders' and matchers' impostor distributions have heavier
tails than a Gaussian null model, so a formula would promise rarer false matches than we get.  The
table stops where the data stops: with N impostor pairs we cannot see an FMR below about 5/N, so
the scores are clamped there (≈ 5 for a few 100 k pairs) rather than extrapolated.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from enrollment import models
from enrollment.errors import ModelUnavailable
from enrollment.finger.minutiae import MODEL_ID as FINGER_MODEL_ID
from matcher.calibration import Calibration

EMBEDDER = "fr_feature"
MIN_TAIL_PAIRS = 5  # the last calibrated FMR is MIN_TAIL_PAIRS / N
SCORE_STEP = 0.1
COSINE_RANGE = (-1.0, 1.0)  # a face table's end points: every cosine
FINGER_TABLE = Path(__file__).resolve().parent / "calibration" / "finger.toml"
FINGER_MATCHER_ID = f"shanakht-mcc-consolidation@2+{FINGER_MODEL_ID}"  # @2: overlap-normalised score
# The minutiae matcher's raw scores are ≥ 0 and unbounded; its table ends at a score no pair reaches.
FINGER_SCORE_RANGE = (0.0, 10_000.0)


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


def load_finger_calibration(path: Path = FINGER_TABLE) -> Calibration:
    """The shipped minutiae-matcher raw score → ``-log10(FMR)`` table; ``ModelUnavailable`` if absent or stale."""
    return read_table(path, "matcher_id", FINGER_MATCHER_ID)


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


def build_table(
    impostors: np.ndarray,
    step: float = SCORE_STEP,
    min_tail: int = MIN_TAIL_PAIRS,
    similarity_range: tuple[float, float] = COSINE_RANGE,
) -> tuple[list[float], list[float], float]:
    """(similarities, scores, max_score) from impostor similarities.

    Points at scores 0, step, 2·step, … up to ``log10(N / min_tail)``; each point's similarity is
    the impostor quantile at FMR = 10^-score.  The end points of ``similarity_range`` (every value
    the similarity can take: −1 and 1 for cosines, ``FINGER_SCORE_RANGE`` for the minutiae matcher)
    are added so the table covers it all; the matcher's ``Calibration`` clamps beyond the last
    measured point.  A quantile that does not rise above the previous point (ties, e.g. impostors
    piled on the lowest score) adds no point: the table then understates the score there, never
    overstates it.
    """
    lowest, highest = similarity_range
    values = np.sort(np.asarray(impostors, dtype=np.float64))
    n = len(values)
    if n < 100:
        raise ValueError(f"need at least 100 impostor pairs to calibrate, got {n}")
    max_score = math.floor(math.log10(n / min_tail) / step) * step
    sims, scores = [lowest], [0.0]
    for k in range(1, int(round(max_score / step)) + 1):
        score = round(k * step, 6)
        threshold = float(np.quantile(values, 1.0 - 10.0 ** (-score)))
        if threshold > sims[-1] + 1e-6:
            sims.append(threshold)
            scores.append(score)
    if sims[-1] < highest:
        sims.append(highest)
        scores.append(scores[-1])
    return [round(s, 6) for s in sims], scores, max_score


def write_table(path: Path, header: Sequence[str], fields: Mapping[str, object]) -> None:
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
