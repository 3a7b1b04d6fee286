"""Does fusing MobileFaceNet with fr_feature raise face TAR at FAR 1e-3 on the report split beyond its interval?

    python benchmarks/face_second_embedder.py [--data DIR] [--model-dir DIR] [--sets ...] [--limit N] [--reps N]
                                              [--fetch] [--smoke] [--write]

Both embedders get the very same crop of every image: the product's pipeline (``FaceExtractor``:
padded detection, 68 landmarks, 5-point ArcFace alignment, or the image itself for pre-aligned
sets) makes it, fr_feature and MobileFaceNet embed it (``second_embedder.embed_both``).

The fusion rule and every constant in it come from *tune* identities (``benchmarks/protocol.toml``):
each model's cosine is z-normalised by the mean and deviation of its tune impostor cosines, and
the weight of MobileFaceNet's term is the one of ``WEIGHTS`` with the highest pooled tune TAR at
FAR 1e-3.  Then, on the *report* identities of every face set: TAR at FAR 1e-3 and 1e-4 of
fr_feature alone, MobileFaceNet alone and fused (identity-bootstrap intervals), and the paired
difference fused − fr_feature (paired identity bootstrap), per set and pooled.

The decision rule (``DECISION_RULE``, fixed before any report figure was computed) reads the
pooled paired interval.  The rule adopted the fusion: the product's face template is it
(``enrollment/face/fused.py``), with the deviations and the weight fitted here.  The script
compares what it fits with those constants (rounded as the product holds them) and exits with
status 1 when they differ (then update them, and refit the face calibration, whose provenance
includes them).  ``--smoke`` runs two small sets with few replicates (a test that the script
still runs; its figures mean nothing, and it gives no verdict on the constants).  ``--write``
replaces this script's section of benchmarks/RESULTS.md.  The models must be in the model cache
(``python -m enrollment.models fetch``; ``--fetch`` does it first).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import results  # noqa: E402
from benchmarks.evaluation import second_embedder as mfn  # noqa: E402
from benchmarks.evaluation.datasets import PRE_ALIGNED_SETS, default_data_dir, face_sets, load_face_set  # noqa: E402
from benchmarks.evaluation.face import impostor_scores, pair_trials  # noqa: E402
from benchmarks.evaluation.metrics import (  # noqa: E402
    BOOTSTRAP_REPS,
    ErrorCurve,
    Estimate,
    Trials,
    curve_estimates,
    fnmr_reader,
)
from benchmarks.evaluation.protocol import PROTOCOL, load_protocol  # noqa: E402
from enrollment import models  # noqa: E402
from enrollment.errors import ModelUnavailable  # noqa: E402
from enrollment.face import fused  # noqa: E402
from enrollment.face.pipeline import FaceExtractor  # noqa: E402

NAME = "face_second_embedder"
TITLE = "Face: fusing a second embedder, MobileFaceNet (`benchmarks/face_second_embedder.py`)"
PACKAGES = ("pillow", "tflite2onnx", "onnx", "tflite")
# The product's fitted constants (enrollment.face.fused) and how it rounds them: deviations to 4 decimals.
PRODUCT_DECIMALS = 4
DECISION_FAR = 1e-3
FARS = (1e-3, 1e-4)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # MobileFaceNet's weight, chosen on tune identities
POOLED = "all report sets pooled"
SMOKE_SETS = ("att_orl", "faceapi_bbt")
SMOKE_LIMIT, SMOKE_REPS = 40, 20
MODELS = ("fr_feature", "MobileFaceNet", "fused")
DECISION_RULE = (
    "Adopt the fusion in the product only if the lower bound of the 95 % paired interval of "
    "(fused − fr_feature) TAR@1e-3, **pooled over every report set at one threshold**, is above 0. "
    "Pooled, not per set, decided before any report figure was computed: the product applies one threshold to every "
    "population, so the pooled curve is what a user gets; it has the most identities, so the narrowest interval; and "
    "on a set where fr_feature already accepts every genuine pair at that FAR no difference can have a lower bound "
    "above 0, so a majority-of-sets rule would be decided by how many sets are small, not by the embedder. "
    "Per-set intervals are shown for information."
)


@dataclass(frozen=True)
class Row:
    """One report set (or the pool): TAR per model and FAR, and the paired difference at ``DECISION_FAR``."""

    name: str
    images: int
    identities: int
    genuine: int
    impostor: int
    tar: dict[str, dict[float, Estimate]]  # model → FAR → TAR
    gain: Estimate  # fused − fr_feature TAR@DECISION_FAR, paired


def tar_reader(far: float) -> Callable[[ErrorCurve], float]:
    return lambda curve: curve.tar_at_far(far)


def fit_fusion(tune: dict[str, mfn.BothSets]) -> tuple[mfn.Fusion, dict[float, float]]:
    """z-normalisation from the tune impostor cosines (acquired images, all tune sets together), then the weight
    of ``WEIGHTS`` with the highest pooled tune TAR@1e-3 (the smallest on a tie).  Returns the grid's TARs too."""
    first = np.concatenate([impostor_scores(b.first) for b in tune.values()])
    second = np.concatenate([impostor_scores(b.second) for b in tune.values()])
    (m1, s1), (m2, s2) = mfn.impostor_moments(first), mfn.impostor_moments(second)
    grid: dict[float, float] = {}
    for weight in WEIGHTS:
        fusion = mfn.Fusion(m1, s1, m2, s2, weight)
        pooled = mfn.pooled_trials([pair_trials(b.first, fusion.matrix(b)) for b in tune.values()])
        grid[weight] = pooled.curve().tar_at_far(DECISION_FAR)
    best = max(WEIGHTS, key=lambda w: (grid[w], -w))
    return mfn.Fusion(m1, s1, m2, s2, best), grid


def product_check(fusion: mfn.Fusion) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Lines comparing the fitted deviations and weight with ``enrollment.face.fused``'s, and name → (fitted, product)
    for those that differ (deviations compared at the product's rounding)."""
    fitted = {
        "FR_FEATURE_IMPOSTOR_STD": round(fusion.first_std, PRODUCT_DECIMALS),
        "MOBILEFACENET_IMPOSTOR_STD": round(fusion.second_std, PRODUCT_DECIMALS),
        "MOBILEFACENET_WEIGHT": fusion.weight,
    }
    lines, differ = [], {}
    for name, value in fitted.items():
        current = float(getattr(fused, name))
        agrees = math.isclose(value, current, abs_tol=1e-12)
        lines.append(f"- `enrollment.face.fused.{name}`: fitted {value:g}; the product has {current:g}{'' if agrees else ' (update it)'}.")
        if not agrees:
            differ[name] = (value, current)
    return lines, differ


def model_trials(both: mfn.BothSets, fusion: mfn.Fusion) -> dict[str, Trials]:
    return {
        "fr_feature": pair_trials(both.first),
        "MobileFaceNet": pair_trials(both.second),
        "fused": pair_trials(both.first, fusion.matrix(both)),
    }


def measure(name: str, images: int, trials: dict[str, Trials], reps: int) -> Row:
    tar = {
        model: {far: e.complement() for far, e in zip(FARS, _fnmr(t, reps))} for model, t in trials.items()
    }
    gain = mfn.paired_difference(trials["fr_feature"], trials["fused"], tar_reader(DECISION_FAR), reps)
    base = trials["fr_feature"]
    identities = len(np.unique(np.concatenate([np.ravel(base.genuine_ids), np.ravel(base.impostor_ids)])))
    return Row(name, images, identities, len(base.genuine), len(base.impostor), tar, gain)


def _fnmr(trials: Trials, reps: int) -> list[Estimate]:
    found = curve_estimates(trials, {str(far): fnmr_reader(far) for far in FARS}, reps=reps)
    return [found[str(far)] for far in FARS]


def adopt(pooled: Row) -> bool:
    return pooled.gain.interval.low > 0


# ---------------------------------------------------------------------- report


def tar_text(row: Row, model: str, far: float) -> str:
    """TAR with its interval; — where the set has fewer than 1/FAR impostor pairs at 1e-4, * at 1e-3 (then the
    threshold is the highest impostor score, a weaker claim than the FAR)."""
    if far * row.impostor < 1:
        return "—" if far < DECISION_FAR else results.estimate_text(row.tar[model][far]) + "*"
    return results.estimate_text(row.tar[model][far])


def gain_text(gain: Estimate) -> str:
    return f"{gain.value:+.3f} [{gain.interval.low:+.3f}, {gain.interval.high:+.3f}]"


def render(
    rows: list[Row],
    tune_counts: dict[str, tuple[int, int]],
    fusion: mfn.Fusion,
    grid: dict[float, float],
    cost: dict[str, float],
    crops: int,
    reps: int,
    limit: int | None,
    second: models.ModelSpec,
) -> list[str]:
    protocol = load_protocol()
    pooled = rows[-1]
    share = {r.name: (r.genuine / pooled.genuine, r.impostor / pooled.impostor) for r in rows[:-1]}
    largest = max(share, key=lambda n: share[n][1])
    out = [
        f"- models: fr_feature (faceplugin, {mfn.FIRST_DIM}-d) and MobileFaceNet (npm `{second.package}@{second.version}`, "
        f"`{second.path.rsplit('/', 1)[-1]}` SHA-256 `{(second.source_sha256 or '')[:12]}…`, converted with "
        + ", ".join(f"{k} {v}" for k, v in second.converter.items())
        + f" to ONNX SHA-256 `{second.sha256[:12]}…`, {mfn.SECOND_DIM}-d), one ONNX Runtime thread each: the two parts of "
        "the product's face template (`enrollment/face/fused.py`), measured apart.",
        "- both embed the very same 112×112 crop of every image: the product's pipeline (padded detection, 68 landmarks,",
        "  5-point ArcFace alignment; pre-aligned sets as they are) makes it once, each model normalises it its own way",
        "  (fr_feature (x − 127) / 128, MobileFaceNet (x − 127.5) / 128). Failures to acquire are zero vectors in both.",
        f"- **fusion, fitted on tune identities only** (`benchmarks/{PROTOCOL.name}`, seed {protocol.seed}; "
        + ", ".join(f"{n} {i} ids / {k} images" for n, (i, k) in tune_counts.items())
        + "):",
        f"  `z_fr + w · z_mfn`, z = (cosine − tune impostor mean) / tune impostor deviation: fr_feature "
        f"{fusion.first_mean:.4f} ± {fusion.first_std:.4f}, MobileFaceNet {fusion.second_mean:.4f} ± "
        f"{fusion.second_std:.4f}; w = **{fusion.weight:g}**, the grid value with the highest pooled tune TAR@1e-3:",
        "",
        "| w | " + " | ".join(f"{w:g}" for w in WEIGHTS) + " |",
        "| --- | " + " | ".join("---" for _ in WEIGHTS) + " |",
        "| tune TAR@1e-3 (pooled) | " + " | ".join(f"{grid[w]:.3f}" for w in WEIGHTS) + " |",
        "",
        "- report identities only below; TAR over all genuine vs all impostor pairs of a set's report images "
        + (f"(first {limit} per set) " if limit else "")
        + "(FTA counts as a non-match);",
        f"  95 % intervals by a bootstrap over identities ({reps} replicates, fixed seed), † = no error seen (rule of "
        "three over the identities); * = fewer than 1/FAR impostor pairs (threshold = the highest impostor); — = too few "
        "impostor pairs for 1e-4.",
        "- gain = fused − fr_feature TAR@1e-3 with a **paired** identity bootstrap (each replicate draws the identities "
        "once and reads both curves), the test for \"beyond the interval\".",
        f"- pooled: every report set's pairs in one curve, one threshold, identities kept apart; {largest} holds "
        f"{100 * share[largest][0]:.0f} % of its genuine and {100 * share[largest][1]:.0f} % of its impostor pairs.",
        "",
        "| set | images / ids | genuine / impostor pairs | fr_feature TAR@1e-3 | MobileFaceNet TAR@1e-3 "
        "| fused TAR@1e-3 | gain (fused − fr_feature) | fr_feature TAR@1e-4 | MobileFaceNet TAR@1e-4 | fused TAR@1e-4 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        name = f"**{row.name}**" if row is pooled else row.name
        out.append(
            f"| {name} | {row.images} / {row.identities} | {row.genuine} / {row.impostor} | "
            + " | ".join(tar_text(row, m, 1e-3) for m in MODELS)
            + f" | {gain_text(row.gain)} | "
            + " | ".join(tar_text(row, m, 1e-4) for m in MODELS)
            + " |"
        )
    above = [r.name for r in rows[:-1] if r.gain.interval.low > 0]
    verdict = adopt(pooled)
    out += [
        "",
        f"Cost per photo (one face, one thread, median over {crops} crops of this run): MobileFaceNet "
        f"**{cost['MobileFaceNet']:.1f} ms** per embedding (fr_feature {cost['fr_feature']:.1f} ms on the same crops), "
        f"plus {4 * mfn.SECOND_DIM} bytes per stored template and a {cost['model_mb']:.1f} MB model. "
        f"The machine's 1-minute load average was {cost['load_start']:.1f} at the start and {cost['load_end']:.1f} at "
        f"the end on {os.cpu_count()} cores: other work shared them, so compare the two models' times, not either alone.",
        "",
        "**Decision rule.** " + DECISION_RULE,
        "",
        f"**Decision: {'adopt' if verdict else 'do not adopt'}.** Pooled gain {gain_text(pooled.gain)}: the lower bound "
        f"is {'above' if verdict else 'not above'} 0. Sets whose own paired lower bound is above 0: "
        + (", ".join(above) if above else "none")
        + f" ({len(above)} of {len(rows) - 1}). "
        + (
            "By this rule the fusion qualifies for the product, and the product's face template is this fusion "
            "(`enrollment/face/fused.py`: the two unit vectors weighted by √(1/σ_fr) and √(w/σ_mfn) and concatenated, "
            "so a template cosine is an increasing affine function of the fused score)."
            if verdict
            else "MobileFaceNet stays an evaluation; the product keeps fr_feature alone."
        ),
    ]
    return out


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder (default $SHANAKHT_DATA or ../shared/data)")
    parser.add_argument("--model-dir", type=Path, default=None, help="model cache (default $SHANAKHT_MODEL_DIR or .cache/models)")
    parser.add_argument("--sets", nargs="+", default=None, help="limit to these face sets")
    parser.add_argument("--limit", type=int, default=None, help="only the first N tune and N report images of each set")
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS, help="bootstrap replicates")
    parser.add_argument("--fetch", action="store_true", help="fetch the face models first (and convert MobileFaceNet) if missing")
    parser.add_argument(
        "--smoke", action="store_true", help=f"{', '.join(SMOKE_SETS)}, {SMOKE_LIMIT} images each, {SMOKE_REPS} replicates"
    )
    parser.add_argument("--write", action="store_true", help=f"replace the {NAME} section of RESULTS.md")
    args = parser.parse_args(argv)
    if args.smoke and args.write:
        parser.error("--smoke measures nothing worth writing; drop --write")
    if args.smoke:
        args.sets = args.sets or list(SMOKE_SETS)
        args.limit = args.limit or SMOKE_LIMIT
        args.reps = min(args.reps, SMOKE_REPS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    data = args.data or default_data_dir()
    sets = args.sets or face_sets(data)
    if not sets:
        print(f"no face sets under {data}/face (set --data or SHANAKHT_DATA)", file=sys.stderr)
        return 1
    try:
        if args.fetch:
            models.fetch(args.model_dir, ["fr_detect", "fr_landmark", *fused.EMBEDDERS])
        path = models.load_verified(mfn.SECOND, args.model_dir)
        # Vectors do not depend on the quality models (pose, eyes, liveness), and nothing is refused for quality here.
        extractor = FaceExtractor(args.model_dir, threads=1, with_quality_models=False)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    protocol = load_protocol()

    tune: dict[str, mfn.BothSets] = {}
    report: dict[str, mfn.BothSets] = {}
    first_ms: list[float] = []
    second_ms: list[float] = []
    for name in sets:
        samples = load_face_set(name, data)
        for role, store in (("tune", tune), ("report", report)):
            chosen = protocol.select("face", name, samples, role)[: args.limit]
            if not chosen:
                continue
            start = time.perf_counter()
            store[name] = both = mfn.embed_both(extractor, chosen, name in PRE_ALIGNED_SETS)
            first_ms += both.first_ms
            second_ms += both.second_ms
            print(f"{name} {role}: {len(chosen)} images in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if not tune:
        print(f"none of {', '.join(sets)} has tune identities: nothing to fit the fusion on", file=sys.stderr)
        return 1

    fusion, grid = fit_fusion(tune)
    print(f"fusion fitted on tune: {fusion}", file=sys.stderr)
    per_set = {name: model_trials(both, fusion) for name, both in report.items()}
    rows = [measure(name, len(report[name].first.labels), t, args.reps) for name, t in per_set.items()]
    pooled = {m: mfn.pooled_trials([t[m] for t in per_set.values()]) for m in MODELS}
    rows.append(measure(POOLED, sum(r.images for r in rows), pooled, args.reps))

    tune_counts = {
        name: (len(set(both.first.labels.tolist())), len(both.first.labels)) for name, both in tune.items()
    }
    cost = {
        "MobileFaceNet": float(np.median(second_ms)),
        "fr_feature": float(np.median(first_ms)),
        "model_mb": path.stat().st_size / 2**20,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }
    body = render(rows, tune_counts, fusion, grid, cost, len(second_ms), args.reps, args.limit, models.load_manifest()[mfn.SECOND])
    section = "\n".join(body) + "\n"
    print(section)
    check, differ = product_check(fusion)
    print("\n".join(check), file=sys.stderr)
    print(f"ran in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.write:
        results.write_section(NAME, TITLE, section, results.script_command("face_second_embedder.py", argv), PACKAGES)
        print(f"wrote {results.RESULTS}", file=sys.stderr)
    if differ and not args.smoke:
        print(
            "error: the fusion fitted on tune identities differs from the product's (enrollment/face/fused.py): "
            + ", ".join(f"{name} fitted {a:g}, product {b:g}" for name, (a, b) in differ.items())
            + "; update the constants (and benchmarks/constants.toml), then refit: python benchmarks/calibrate.py face",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
