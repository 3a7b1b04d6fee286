"""Calibration tables: raw similarity → ``-log10(FMR)``, shipped beside the models, for every modality.

A table is measured on impostor pairs of tuning data (``python benchmarks/calibrate.py``) and read
back here as a ``matcher.calibration.Calibration``.  A table must never outlive the pipeline whose
scores it maps, and nobody should have to remember to say when it does: each table stores its
modality's *score provenance* (``enrollment.face.provenance`` / ``enrollment.finger.provenance``:
model hashes and every constant between the image and the raw score) with its SHA-256, and
reading it recomputes both, refusing a stale table with the keys that changed.

Why a table and not a formula: real embedders' and matchers' impostor distributions have heavier
tails than a Gaussian null model, so a formula would promise rarer false matches than we get.  The
table stops where the data stops: with N impostor pairs we cannot see an FMR below about 5/N, so
the scores are clamped there (≈ 5 for a few 100 k pairs) rather than extrapolated, unless the
modality's tail is modelled (``ExponentialTail``: the minutiae matcher, whose ~10^5 tune pairs stop
at 10^-4.3): then the table continues to ``TAIL_TO_SCORE`` at a bound that understates the score.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enrollment import models
from enrollment.errors import ModelUnavailable
from enrollment.face import provenance as face_provenance
from enrollment.finger import provenance as finger_provenance
from enrollment.provenance import differences, digest, plain
from matcher.calibration import Calibration

MIN_TAIL_PAIRS = 5  # the last calibrated FMR is MIN_TAIL_PAIRS / N
SCORE_STEP = 0.1
COSINE_RANGE = (-1.0, 1.0)  # a face table's end points: every cosine
FACE_TABLE = Path(__file__).resolve().parent / "calibration" / "face.toml"  # the fused template's (enrollment.face.fused)
FINGER_TABLE = Path(__file__).resolve().parent / "calibration" / "finger.toml"
# The minutiae matcher's raw scores are ≥ 0 and unbounded; its table ends at a score no pair reaches.
FINGER_SCORE_RANGE = (0.0, 10_000.0)
REFIT = "python benchmarks/calibrate.py"  # + the modality: how a stale table is refitted
PROVENANCE_KEY = "provenance"  # the table's readable provenance dict
PROVENANCE_HASH_KEY = "provenance_sha256"
FUSION_KEY = "fusion"  # measured corrections of fused scores, one sub-table per number of probes fused
TAIL_KEY = "tail"  # the table's record of its modelled tail, when it has one
TAIL_FROM_SCORE = 3.0  # a modelled tail is fitted on the impostors beyond FMR 10^-3 ...
TAIL_TO_SCORE = 6.0  # ... and continues the table no further than FMR 10^-6


def load_calibration(path: Path = FACE_TABLE, manifest: Mapping[str, models.ModelSpec] | None = None) -> Calibration:
    """The shipped cosine → ``-log10(FMR)`` table of the face template (fr_feature + MobileFaceNet, fused).

    Raises ``ModelUnavailable`` if the file is missing, or it was fitted for another face pipeline
    (a model hash, an alignment constant or a fusion weight differs).
    """
    return read_table(path, face_provenance.score_provenance(manifest), f"{REFIT} face")


def load_finger_calibration(
    path: Path = FINGER_TABLE, manifest: Mapping[str, models.ModelSpec] | None = None
) -> Calibration:
    """The shipped minutiae-matcher raw score → ``-log10(FMR)`` table; ``ModelUnavailable`` if absent or stale."""
    return read_table(path, finger_provenance.score_provenance(manifest), f"{REFIT} finger")


def read_table(path: Path | str, provenance: Mapping[str, object], refit: str) -> Calibration:
    """A calibration table file, checked to have been fitted for ``provenance`` (the pipeline as it is now).

    ``refit`` is the command that refits it, quoted in the error when the table is stale.
    """
    name = Path(path).name
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelUnavailable(f"cannot read calibration table {path}: {exc}") from exc
    recorded = table.get(PROVENANCE_KEY)
    if not isinstance(recorded, dict) or not isinstance(table.get(PROVENANCE_HASH_KEY), str):
        raise ModelUnavailable(f"calibration table {name} records no score provenance; refit with `{refit}`")
    if table[PROVENANCE_HASH_KEY] != digest(provenance):
        changed = differences(recorded, provenance) or ["its provenance hash (the recorded description was edited)"]
        raise ModelUnavailable(f"calibration table {name} is stale: {'; '.join(changed)}; refit with `{refit}`")
    try:
        fusion = tuple(
            (int(parts), Calibration(f"{table['source']} fused over {parts}", _floats(t["similarities"]), _floats(t["scores"])))
            for parts, t in sorted(table.get(FUSION_KEY, {}).items(), key=lambda item: int(item[0]))
        )
        return Calibration(str(table["source"]), _floats(table["similarities"]), _floats(table["scores"]), fusion)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUnavailable(f"calibration table {path} is malformed: {exc}") from exc


def _floats(values: object) -> tuple[float, ...]:
    return tuple(float(v) for v in values)  # type: ignore[union-attr]


def provenance_fields(provenance: Mapping[str, object]) -> dict[str, object]:
    """The fields a table records about its provenance (for ``write_table``): the hash and the readable dict."""
    return {PROVENANCE_HASH_KEY: digest(provenance), PROVENANCE_KEY: plain(provenance)}


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


@dataclass(frozen=True)
class ExponentialTail:
    """The impostor tail beyond ``threshold`` as an exponential: ``-log10 FMR`` rises by ``rate`` per unit of similarity.

    Why a model at all: N impostor pairs see no FMR below about 5/N (10^-4.3 for the ~10^5
    same-finger pairs our tune persons have), and a gallery of thousands needs scores well beyond
    that before an FPIR of 10^-3 means anything.  Minutiae-matcher scores count matched evidence, and
    their impostor tail is close to exponential (``-log10 FMR`` nearly straight in the score), the
    ξ = 0 case of the generalized Pareto tail that extreme-value theory gives for exceedances.
    ``rate`` is the lower 95 % bound of the maximum-likelihood rate, so the extension rises more
    slowly than the data's best fit: it understates scores rather than overstating them.
    """

    threshold: float  # the similarity at FMR 10^-from_score, where the exceedances start
    from_score: float
    exceedances: int
    fitted_rate: float  # maximum likelihood, in -log10 FMR per unit of similarity
    rate: float  # its lower 95 % bound, which the table uses

    def score_at(self, similarity: float) -> float:
        """The model's ``-log10 FMR`` at ``similarity`` (≥ ``threshold``), at the bound ``rate``."""
        return self.from_score + self.rate * (similarity - self.threshold)

    def record(self) -> dict[str, object]:
        return {
            "model": "exponential exceedances (generalized Pareto, shape 0); rate = lower 95 % bound of the maximum-likelihood rate",
            "from_score": self.from_score,
            "threshold": round(self.threshold, 6),
            "exceedances": self.exceedances,
            "fitted_rate": round(self.fitted_rate, 6),
            "rate": round(self.rate, 6),
        }


def fit_exponential_tail(impostors: np.ndarray, from_score: float = TAIL_FROM_SCORE) -> ExponentialTail:
    """Fit the impostors beyond their ``10^-from_score`` quantile with an exponential (see ``ExponentialTail``).

    The maximum-likelihood rate of exponential excesses is n / Σ(x − u); 2·λ·Σ(x − u) is χ² with 2n
    degrees of freedom, so the lower 95 % bound is λ̂ · χ²₀.₀₂₅(2n) / 2n (Wilson–Hilferty's χ²
    quantile, exact to a few 10^-4 at the ≥ 100 exceedances required here).
    """
    values = np.asarray(impostors, dtype=np.float64)
    threshold = float(np.quantile(values, 1.0 - 10.0 ** (-from_score)))
    excess = values[values > threshold] - threshold
    n = len(excess)
    if n < 100 or excess.sum() <= 0:
        raise ValueError(f"need at least 100 impostors beyond FMR 1e-{from_score:g} to fit a tail, got {n}")
    fitted = n / float(excess.sum()) / math.log(10.0)
    k = 2 * n
    chi2_low = k * (1.0 - 2.0 / (9 * k) - 1.959964 * math.sqrt(2.0 / (9 * k))) ** 3
    return ExponentialTail(threshold, from_score, n, fitted, fitted * chi2_low / k)


def extend_table(
    sims: list[float], scores: list[float], tail: ExponentialTail, to_score: float = TAIL_TO_SCORE, step: float = SCORE_STEP
) -> tuple[list[float], list[float]]:
    """``build_table``'s points continued beyond the last measured one by ``tail``, up to ``to_score``.

    The extension starts from the last measured point (the data's word there stands) and climbs at
    the tail's bound ``rate``; the range's end point is kept last.  Beyond ``to_score`` the table
    clamps again: a model fitted on 10^-3 to 10^-4.3 is not trusted for ever.
    """
    *measured_sims, end = sims
    measured_scores = scores[:-1]
    last_sim, last_score = measured_sims[-1], measured_scores[-1]
    extra = int(round((to_score - last_score) / step))
    out_sims, out_scores = list(measured_sims), list(measured_scores)
    for k in range(1, extra + 1):
        score = round(last_score + k * step, 6)
        out_sims.append(round(last_sim + (score - last_score) / tail.rate, 6))
        out_scores.append(score)
    if out_sims[-1] < end:
        out_sims.append(end)
        out_scores.append(out_scores[-1])
    return out_sims, out_scores


def write_table(path: Path, header: Sequence[str], fields: Mapping[str, object]) -> None:
    """Write ``fields`` as TOML under a ``#`` comment header; mappings become tables, after the plain fields.

    Written by hand rather than with a TOML library so that the shipped tables stay diffable:
    long arrays wrap eight values a line, and the provenance and tuning record are readable sections.
    """
    lines = [f"# {line}" if line else "#" for line in header] + [""]
    lines += _toml_lines(fields, ())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml_lines(fields: Mapping[str, object], prefix: tuple[str, ...]) -> list[str]:
    lines = [f"{_toml_key(k)} = {_toml_value(v, wrap=True)}" for k, v in fields.items() if not isinstance(v, Mapping)]
    for key, value in fields.items():
        if isinstance(value, Mapping):
            where = (*prefix, _toml_key(key))
            lines += ["", f"[{'.'.join(where)}]", *_toml_lines(value, where)]
    return lines


def _toml_key(key: object) -> str:
    text = str(key)
    return text if text and all(c.isascii() and (c.isalnum() or c in "_-") for c in text) else _toml_value(text)


def _toml_value(value: object, wrap: bool = False) -> str:
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        items = [_toml_value(v) for v in value]
        if not wrap or len(items) <= 8:
            return "[" + ", ".join(items) + "]"
        rows = [", ".join(items[i : i + 8]) for i in range(0, len(items), 8)]
        return "[\n  " + ",\n  ".join(rows) + ",\n]"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to a calibration table")
