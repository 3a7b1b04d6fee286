"""Do fused scores keep their promise?  Impostor match rates at fused scores 2, 3 and 4, tune and report split.

    python benchmarks/fusion_check.py [--data DIR] [--model-dir DIR] [--cache DIR] [--write]

A fused score ``t`` promises that impostors reach it at rate ``10^-t``.  This measures it with the
production code: per-finger raw scores of the Cython matcher, the shipped finger and face
calibration tables (the finger table's measured fusion corrections included), and the modalities'
own fusion (``ModalityMatcher.fuse``, ``matcher.fusion``).

* **Two and three fingers** (``socofing_real_distractors``): an impostor trial is a pair of
  different people (A, B) and a set of k finger positions; each finger of A is compared with the
  same finger of B and the k calibrated scores are fused as a gallery fuses them.  Every pair of
  people and every set of positions is a trial; trials of one pair of people share skin, sensor and
  pressure, so the interval is a bootstrap over *people* (resampled with replacement), not a
  binomial one.
* **Face + finger** (chimeric: faces and fingers of different people, which is what independence
  between modalities means): a random face impostor pair from the face sets with a random finger
  impostor pair, fused as two modalities.  Clopper–Pearson (independent draws).
* For comparison, the plain sum of the calibrated scores (what the service did before).

Tune identities check the calibration and fusion as fitted; report identities check them on people
nothing was fitted on (``benchmarks/protocol.toml``).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.evaluation import metrics  # noqa: E402
from benchmarks.evaluation.datasets import load_face_set, load_finger_set  # noqa: E402
from benchmarks.evaluation.face import embed_set  # noqa: E402
from benchmarks.evaluation.finger import caching_extractor, default_cache_dir, extract_samples  # noqa: E402
from benchmarks.evaluation.protocol import load_protocol  # noqa: E402
from benchmarks.results import markdown_table, write_section  # noqa: E402
from enrollment.calibration import load_calibration, load_finger_calibration  # noqa: E402
from enrollment.face.pipeline import FaceExtractor  # noqa: E402
from matcher import fusion  # noqa: E402
from matcher.finger.descriptors import prepare  # noqa: E402
from matcher.finger.matching import match  # noqa: E402
from matcher.modalities import matcher_for  # noqa: E402
from matcher.templates import Modality  # noqa: E402

NAME = "fusion_check"
FINGER_SET = "socofing_real_distractors"
FACE_SETS = ("glint24_aligned", "att_orl", "bollywood_64")
PRE_ALIGNED = {"glint24_aligned"}
THRESHOLDS = (2.0, 3.0, 4.0)
BOOTSTRAPS = 400
CHIMERIC_TRIALS = 2_000_000


@dataclass(frozen=True)
class Observed:
    """Impostor trials reaching each threshold, and the 95 % interval of that rate."""

    trials: int
    rates: dict[float, float]
    intervals: dict[float, metrics.Interval]


def finger_scores(args, role: str) -> tuple[np.ndarray, np.ndarray]:
    """``[P, P, F]`` calibrated impostor scores (person A's finger f vs person B's finger f; NaN where a print is missing)
    and the person index of each row."""
    protocol, calibration = load_protocol(), load_finger_calibration()
    samples = load_finger_set(FINGER_SET, args.data)
    if args.people:  # a smoke run extracts only the prints it uses
        of_role = {s.label.split("_", 2)[1] for s in samples if protocol.role("finger", FINGER_SET, s.label) == role}
        wanted = set(sorted(of_role, key=int)[: args.people])
        samples = [s for s in samples if s.label.split("_", 2)[1] in wanted]
    extracted = extract_samples(caching_extractor(args.model_dir, args.cache or default_cache_dir()), FINGER_SET, samples)
    prints: dict[tuple[str, str], object] = {}
    for sample, template in zip(extracted.samples, extracted.templates):
        if template is not None and protocol.role("finger", FINGER_SET, sample.label) == role:
            person, finger = sample.label.split("_", 2)[1], sample.label.split("_", 2)[2]
            prints[(person, finger)] = prepare(template)
    people = sorted({p for p, _ in prints}, key=int)
    fingers = sorted({f for _, f in prints})
    scores = np.full((len(people), len(people), len(fingers)), np.nan)
    for (a, pa), (b, pb) in itertools.combinations(enumerate(people), 2):
        for k, finger in enumerate(fingers):
            if (pa, finger) in prints and (pb, finger) in prints:
                value = float(calibration.score(match(prints[(pa, finger)], prints[(pb, finger)])))
                scores[a, b, k] = scores[b, a, k] = value
    logging.info("%s %s: %d people, %d fingers", FINGER_SET, role, len(people), len(fingers))
    return scores, np.arange(len(people))


def multi_finger(scores: np.ndarray, k: int, plain: bool, seed: int) -> Observed:
    """Every pair of people × every set of k positions both have, fused as the finger modality fuses (its measured
    correction for k fingers included)."""
    people = scores.shape[0]
    fuse, calibration = matcher_for(Modality.FINGER).fuse, load_finger_calibration()
    reached = np.zeros((len(THRESHOLDS), people, people))
    counts = np.zeros((people, people))
    for a, b in itertools.combinations(range(people), 2):
        row = scores[a, b]
        present = np.flatnonzero(~np.isnan(row))
        for subset in itertools.combinations(present, k):
            values = row[list(subset)]
            fused = float(values.sum()) if plain else fuse(values.tolist(), k, calibration)
            counts[a, b] += 1
            for t, threshold in enumerate(THRESHOLDS):
                reached[t, a, b] += fused >= threshold
    return _bootstrap(reached, counts, seed)


def _bootstrap(reached: np.ndarray, counts: np.ndarray, seed: int) -> Observed:
    """Rates over all trials; intervals from resampling people (a trial's weight is the product of its two people's draws)."""
    rng = np.random.default_rng(seed)
    people = counts.shape[0]
    upper = np.triu(np.ones((people, people)), 1)
    total = float((counts * upper).sum())
    rates = {t: float((reached[i] * upper).sum()) / total for i, t in enumerate(THRESHOLDS)}
    draws = []
    for _ in range(BOOTSTRAPS):
        m = np.bincount(rng.integers(0, people, people), minlength=people).astype(float)
        w = np.outer(m, m) * upper
        draws.append([(reached[i] * w).sum() / max((counts * w).sum(), 1.0) for i in range(len(THRESHOLDS))])
    low, high = np.percentile(np.asarray(draws), [2.5, 97.5], axis=0)
    intervals = {t: metrics.Interval(float(low[i]), float(high[i]), "bootstrap over people") for i, t in enumerate(THRESHOLDS)}
    return Observed(int(total), rates, intervals)


def face_impostors(args, role: str) -> np.ndarray:
    """Calibrated scores of every face impostor pair among ``role`` identities of the face sets (acquired images only)."""
    protocol, calibration = load_protocol(), load_calibration()
    extractor = FaceExtractor(args.model_dir, with_quality_models=False)
    pooled = []
    for name in FACE_SETS:
        samples = protocol.select("face", name, load_face_set(name, args.data), role)[: args.face_images or None]
        embedded = embed_set(extractor, samples, pre_aligned=name in PRE_ALIGNED)
        ok = embedded.acquired
        vectors, labels = embedded.vectors[ok], embedded.labels[ok]
        upper = np.triu_indices(len(labels), 1)
        different = labels[upper[0]] != labels[upper[1]]
        pooled.append(calibration.score((vectors @ vectors.T)[upper][different]))
    return np.concatenate(pooled).astype(np.float64)


def face_and_finger(face: np.ndarray, finger: np.ndarray, plain: bool, seed: int) -> Observed:
    rng = np.random.default_rng(seed)
    pairs = np.stack([rng.choice(face, CHIMERIC_TRIALS), rng.choice(finger, CHIMERIC_TRIALS)], axis=1)
    fused = pairs.sum(axis=1) if plain else np.array([fusion.independent(row, 2) for row in pairs])
    reached = {t: int((fused >= t).sum()) for t in THRESHOLDS}
    return Observed(
        CHIMERIC_TRIALS,
        {t: reached[t] / CHIMERIC_TRIALS for t in THRESHOLDS},
        {t: metrics.count_interval(reached[t], CHIMERIC_TRIALS) for t in THRESHOLDS},
    )


def verdict(threshold: float, observed: Observed) -> str:
    """Kept: the nominal rate lies in the observed interval, or (a wide interval) the rate is within 2× of it."""
    nominal, rate, interval = 10**-threshold, observed.rates[threshold], observed.intervals[threshold]
    if interval.low <= nominal <= interval.high:
        return "kept (nominal inside the interval)"
    if nominal / 2 <= rate <= 2 * nominal:
        return "kept (within 2×)"
    return f"**not kept ({rate / nominal:.1f}× nominal)**"


def rows(label: str, observed: Observed) -> list[list[object]]:
    return [
        [label, f"{t:g}", f"{10 ** -t:.4%}", f"{observed.rates[t]:.4%}", f"{observed.intervals[t].low:.4%}–{observed.intervals[t].high:.4%}",
         f"{observed.trials:,}", verdict(t, observed)]
        for t in THRESHOLDS
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="replace the fusion_check section of benchmarks/RESULTS.md")
    parser.add_argument("--people", type=int, default=0, help="smoke run: only the first N people of each side (0: all)")
    parser.add_argument("--face-images", type=int, default=0, help="smoke run: only the first N images of each face set (0: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("benchmarks.evaluation.finger").setLevel(logging.WARNING)
    logging.getLogger("benchmarks.evaluation.face").setLevel(logging.WARNING)
    body = []
    for role in ("tune", "report"):
        scores, _ = finger_scores(args, role)
        single = scores[np.triu_indices(scores.shape[0], 1)].reshape(-1)
        single = single[~np.isnan(single)]
        table = []
        for k in (2, 3):
            table += rows(f"{k} fingers, fused", multi_finger(scores, k, plain=False, seed=k))
            table += rows(f"{k} fingers, plain sum (before)", multi_finger(scores, k, plain=True, seed=k))
        face = face_impostors(args, role)
        table += rows("face + finger, fused", face_and_finger(face, single, plain=False, seed=5))
        table += rows("face + finger, plain sum (before)", face_and_finger(face, single, plain=True, seed=5))
        one = Observed(len(single), {t: float((single >= t).mean()) for t in THRESHOLDS},
                       {t: metrics.count_interval(int((single >= t).sum()), len(single)) for t in THRESHOLDS})
        table = rows("1 finger (calibration alone)", one) + table
        body += [f"### {role.capitalize()} identities", "", markdown_table(
            ["probe", "fused score ≥", "nominal FMR", "observed impostor rate", "95 % interval", "impostor trials", "promise"], table), ""]
        logging.info("%s done", role)
    body.append(
        "Impostor trials: every pair of different people of `socofing_real_distractors` (tune or report persons of "
        "`benchmarks/protocol.toml`) and every set of k finger positions both have, each finger compared with the same "
        "finger; face + finger pairs a random face impostor pair of glint24_aligned, att_orl and bollywood_64 (same role) "
        f"with a random single-finger impostor pair, {CHIMERIC_TRIALS:,} draws. Fused as the service fuses "
        "(`matcher/fusion.py`); 'plain sum' is the addition the service did before. Multi-finger intervals resample people "
        f"({BOOTSTRAPS} bootstraps), chimeric ones are Clopper–Pearson (the rule of three at no error)."
    )
    text = "\n".join(body)
    print(text)
    if args.write:
        write_section(NAME, "Fused scores against their promise (impostor rates at fused scores 2, 3, 4)", text,
                      "python benchmarks/fusion_check.py --write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
