"""Face accuracy on the report identities of every face set, with 95 % intervals, 1:N with distractors, and speed.

    python benchmarks/face_accuracy.py [--data DIR] [--model-dir DIR] [--sets ...] [--limit N] [--reps N]
                                       [--peer] [--figures DIR] [--smoke] [--write]

Only identities the protocol (``benchmarks/protocol.toml``) puts on the *report* side are measured;
the calibration table was fitted on tune identities.  For each set: failure to acquire (FTA), TAR
at FAR 1e-2 / 1e-3 / 1e-4 over all genuine vs all impostor pairs (FTA counts as non-match),
closed-set rank-1 with the first image of each identity enrolled, and, where the set has
``pairs.csv``, pair accuracy at a threshold fixed beforehand (the calibrated cosine for score 3).
Then open-set 1:N (``benchmarks.evaluation.face.open_set``): FNIR at FPIR 1e-2 / 1e-3 on the
calibrated scores the server reports.  Then enrolment throughput and per-stage latency.

``--peer`` runs ``face_recognition`` (dlib HOG detector + ResNet) on the same images, if installed.
``--smoke`` runs two small sets with few bootstrap replicates (a test that the script still runs;
it writes nothing and its figures mean nothing).  ``--write`` replaces the face_accuracy section of
benchmarks/RESULTS.md and the figures in benchmarks/figures/.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import results  # noqa: E402
from benchmarks.evaluation import plots  # noqa: E402
from benchmarks.evaluation.datasets import (  # noqa: E402
    PRE_ALIGNED_SETS,
    Sample,
    default_data_dir,
    face_sets,
    load_face_set,
    load_pairs,
)
from benchmarks.evaluation.face import (  # noqa: E402
    CANDIDATES,
    EmbeddedSet,
    OpenSet,
    embed_set,
    one_enrolled_hits,
    open_set,
    pair_trials,
)
from benchmarks.evaluation.metrics import (  # noqa: E402
    BOOTSTRAP_REPS,
    ErrorCurve,
    Estimate,
    OpenSetRate,
    Searches,
    count_estimate,
    curve_estimates,
    fnmr_reader,
    open_set_rates,
)
from benchmarks.evaluation.protocol import PROTOCOL, load_protocol  # noqa: E402
from enrollment.calibration import load_calibration  # noqa: E402
from enrollment.face.pipeline import STAGES, FaceExtractor  # noqa: E402
from matcher.calibration import Calibration  # noqa: E402

NAME = "face_accuracy"
TITLE = "Face accuracy, report identities (`benchmarks/face_accuracy.py`)"
PACKAGES = ("pillow", "matplotlib", "face_recognition", "face_recognition_models", "dlib")  # versions the section names
FARS = (1e-2, 1e-3, 1e-4)
FPIRS = (1e-2, 1e-3)
PAIR_SCORE = 3.0  # pairs.csv is decided at the calibrated score for FMR 1e-3, fixed before looking at the pairs
SMOKE_SETS = ("att_orl", "faceapi_bbt")
SMOKE_LIMIT, SMOKE_REPS = 40, 20
PEER_TOLERANCE = 0.6  # face_recognition's documented default distance threshold
PEER_MAX_SIDE = 1600  # the peer's HOG detector on a 4600-px photo takes minutes; users downscale too
PEER_WHOLE_IMAGE_MAX_SIDE = 160  # same courtesy as our tight-crop fallback: small crops use the whole image
FIGURE_NAMES = {"det": "face_det.png", "scores": "face_scores.png", "open_set": "face_open_set_det.png"}
FIGURE_CAPTIONS = {
    "det": "DET, 1:1 all pairs per set (report identities)",
    "scores": "cosine histograms per set",
    "open_set": "DET, 1:N (FNIR vs FPIR, calibrated scores)",
}


@dataclass
class SetResult:
    name: str
    images: int
    identities: int
    fta: Estimate
    fallbacks: int
    genuine: np.ndarray
    impostor: np.ndarray
    tar: dict[float, Estimate]
    rank1: Estimate
    probes: int
    pairs_accuracy: Estimate | None = None
    pairs_errors: int | None = None
    pairs: int | None = None
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    def curve(self) -> ErrorCurve:
        return ErrorCurve.from_scores(self.genuine, self.impostor)


def evaluate(
    name: str,
    embedded: EmbeddedSet,
    seconds: float,
    data: Path,
    pair_threshold: float | None,
    reps: int,
    scores: np.ndarray | None = None,
) -> SetResult:
    """Every 1:1 and closed-set measure of one set.  ``scores`` is the [N, N] comparison matrix (the peer's
    -distance; default cosines); a listed pair is "same" when its score is above ``pair_threshold``
    (None: not scored)."""
    trials = pair_trials(embedded, scores)
    fnmr = curve_estimates(trials, {str(far): fnmr_reader(far) for far in FARS}, reps=reps)
    hits = one_enrolled_hits(embedded, scores)
    result = SetResult(
        name=name,
        images=len(embedded.labels),
        identities=len(set(embedded.labels.tolist())),
        fta=count_estimate(int((~embedded.acquired).sum()), len(embedded.acquired)),
        fallbacks=embedded.fallbacks,
        genuine=trials.genuine,
        impostor=trials.impostor,
        tar={far: fnmr[str(far)].complement() for far in FARS},
        rank1=count_estimate(int((~hits).sum()), len(hits)).complement(),
        probes=len(hits),
        seconds=seconds,
        errors=embedded.errors,
    )
    _score_pairs(result, embedded, load_pairs(name, data), pair_threshold, scores)
    return result


def _score_pairs(
    result: SetResult,
    embedded: EmbeddedSet,
    pairs: Sequence[tuple[str, str, bool]],
    threshold: float | None,
    scores: np.ndarray | None,
) -> None:
    """Pair accuracy of the set's listed pairs whose both images are report images (Clopper–Pearson over pairs)."""
    index = {rel: i for i, rel in enumerate(embedded.relpaths)}
    listed = [(index[a], index[b], same) for a, b, same in pairs if a in index and b in index]
    if not listed or threshold is None:
        return

    def score(a: int, b: int) -> float:
        # Per pair, not read off the matrix: a float32 dot product need not equal its matmul entry to the bit.
        return float(embedded.vectors[a] @ embedded.vectors[b]) if scores is None else float(scores[a, b])

    errors = sum(int((score(a, b) > threshold) != same) for a, b, same in listed)
    result.pairs, result.pairs_errors = len(listed), errors
    result.pairs_accuracy = count_estimate(errors, len(listed)).complement()


# ---------------------------------------------------------------------- 1:N


@dataclass(frozen=True)
class OpenSetRow:
    """FNIR at each FPIR of one experiment (or the pool)."""

    name: str
    searches: Searches
    rates: list[OpenSetRate]
    design: OpenSet | None  # None for the pooled row


def open_set_rows(
    embedded: dict[str, EmbeddedSet], calibration: Calibration, reps: int
) -> tuple[list[OpenSetRow], list[OpenSetRate]]:
    """One open-set experiment per set (the other sets' report images as distractors), then all searches pooled.

    Also returns the pooled FNIR read on the raw cosines, to show what the calibration's clamp costs.
    """
    designs = [
        open_set(name, e, [(o, x) for o, x in embedded.items() if o != name], calibration)
        for name, e in embedded.items()
    ]
    rows = [OpenSetRow(d.name, d.searches, open_set_rates(d.searches, FPIRS, reps), d) for d in designs]
    pooled = Searches.pooled([d.searches for d in designs])
    rows.append(OpenSetRow("all sets pooled", pooled, open_set_rates(pooled, FPIRS, reps), None))
    return rows, open_set_rates(Searches.pooled([d.cosines for d in designs]), FPIRS, reps)


# ---------------------------------------------------------------------- peer (dlib)


def _shim_pkg_resources() -> None:
    """face_recognition_models 0.3.0 imports ``pkg_resources.resource_filename``, which setuptools
    ≥ 81 no longer ships; give it the one function it needs (this process only)."""
    try:
        importlib.import_module("pkg_resources")
        return
    except ImportError:
        pass
    import types
    from importlib.resources import files

    shim = types.ModuleType("pkg_resources")
    shim.resource_filename = lambda package, name: str(files(package) / name)  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim


def peer_available() -> bool:
    _shim_pkg_resources()
    try:
        importlib.import_module("face_recognition")
    except (Exception, SystemExit):  # ImportError, dlib failing to load, or its quit() on missing models
        return False
    return True


def peer_embed(samples: Sequence[Sample], pre_aligned: bool) -> tuple[EmbeddedSet, float]:
    """face_recognition's own recipe: HOG detection (1 upsample), largest face, 128-d ResNet encoding.

    Its vectors are compared by Euclidean distance (see ``peer_scores``), not cosine.
    """
    import face_recognition  # type: ignore[import-not-found]
    from PIL import Image

    vectors = np.zeros((len(samples), 128), dtype=np.float32)
    acquired = np.zeros(len(samples), dtype=bool)
    errors: dict[str, str] = {}
    start = time.perf_counter()
    for i, sample in enumerate(samples):
        image = Image.open(sample.path)
        image = image.convert("RGB")
        if max(image.size) > PEER_MAX_SIDE:
            image.thumbnail((PEER_MAX_SIDE, PEER_MAX_SIDE))
        pixels = np.asarray(image)
        h, w = pixels.shape[:2]
        if pre_aligned:
            boxes = [(0, w, h, 0)]
        else:
            boxes = face_recognition.face_locations(pixels, number_of_times_to_upsample=1)
            if not boxes and max(h, w) <= PEER_WHOLE_IMAGE_MAX_SIDE:
                boxes = [(0, w, h, 0)]
        if not boxes:
            errors[sample.relpath] = "no face"
            continue
        largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        encodings = face_recognition.face_encodings(pixels, known_face_locations=[largest])
        if encodings:
            vectors[i] = encodings[0]
            acquired[i] = True
    seconds = time.perf_counter() - start
    embedded = EmbeddedSet(
        labels=np.array([s.label for s in samples]),
        vectors=vectors,
        acquired=acquired,
        errors=errors,
        relpaths=tuple(s.relpath for s in samples),
        fallbacks=0,
    )
    return embedded, seconds


def peer_scores(embedded: EmbeddedSet) -> np.ndarray:
    """The peer's comparison matrix: -Euclidean distance, failures at -1e9 (never a match)."""
    v, ok = embedded.vectors, embedded.acquired
    sq = (v**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * v @ v.T, 0.0))
    score = -dist
    score[~ok, :] = -1e9
    score[:, ~ok] = -1e9
    return score


# ---------------------------------------------------------------------- report


def fmt_tar(result: SetResult, far: float) -> str:
    """TAR with its interval, starred when the set has fewer than 1/FAR impostor pairs (then the threshold is
    the highest impostor score: TAR with no false accept observed, a weaker claim than the FAR)."""
    text = results.estimate_text(result.tar[far])
    return text + "*" if far * len(result.impostor) < 1 and text != "—" else text


def render_protocol(ours: list[SetResult], reps: int, all_images: dict[str, int]) -> list[str]:
    protocol = load_protocol()
    return [
        "- model: faceplugin fr_detect → fr_landmark → 5-point align → fr_feature (512-d) + MobileFaceNet (192-d), fused into "
        "one 704-d template (`enrollment/face/fused.py`), one ONNX Runtime thread",
        f"- **report identities only** (`benchmarks/{PROTOCOL.name}`, seed {protocol.seed}): "
        + ", ".join(f"{r.name} {r.identities} ids / {r.images} of {all_images[r.name]} images" for r in ours)
        + "; the calibration table was fitted on tune identities.",
        "- TAR over all genuine vs all impostor pairs of a set's report images; failures to acquire (FTA) count as",
        "  non-matches. Rank-1: first image of each identity enrolled, the rest probe (closed set, within the set).",
        "- 95 % intervals: TAR by a bootstrap over identities "
        f"({reps} replicates, fixed seed; pairs share identities);",
        "  FTA, rank-1 and pair accuracy by Clopper–Pearson; † = no error seen, so the interval is the rule of three",
        "  (TAR, FNIR: over the identities; FTA, rank-1: over the images / probes).",
        "  * = fewer than 1/FAR impostor pairs, so the threshold is the set's highest impostor score",
        "  (no false accept observed; a weaker claim than the FAR).",
    ]


def render_verification(ours: list[SetResult], pair_threshold: float) -> list[str]:
    out = [
        "",
        "| set | images / ids | genuine / impostor pairs | FTA | fallback | TAR@1e-2 "
        "| TAR@1e-3 | TAR@1e-4 | rank-1 (probes) | pairs acc. (errors / n) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in ours:
        pairs = (
            f"{results.estimate_text(r.pairs_accuracy, digits=4)} ({r.pairs_errors} / {r.pairs})"
            if r.pairs_accuracy
            else ""
        )
        out.append(
            f"| {r.name} | {r.images} / {r.identities} | {len(r.genuine)} "
            f"/ {len(r.impostor)} | {results.estimate_text(r.fta)} | "
            f"{r.fallbacks} | {fmt_tar(r, 1e-2)} | {fmt_tar(r, 1e-3)} | {fmt_tar(r, 1e-4)} "
            f"| {results.estimate_text(r.rank1)} ({r.probes}) | {pairs} |"
        )
    if any(r.pairs for r in ours):
        out += [
            "",
            'Pairs accuracy: `pairs.csv` pairs of report images, "same" when the cosine is above '
            f"{pair_threshold:.4f}, "
            f"the calibrated score {PAIR_SCORE:.0f} (FMR 1e-{PAIR_SCORE:.0f}) "
            "of the shipped table, fixed before looking at the pairs.",
        ]
    return out


def render_open_set(rows: list[OpenSetRow], raw: list[OpenSetRate], calibration: Calibration) -> list[str]:
    out = [
        "",
        "### 1:N with distractors (open set, calibrated scores)",
        "",
        "Per set: its report identities sorted by label, the 1st, "
        "3rd, 5th, … enrolled with their first image (file order),",
        "the 2nd, 4th, … left out. Gallery = those first images plus "
        "every acquired report image of the *other* face sets as",
        "distractors (one subject per identity, all its images as "
        "templates). Mated searches = the enrolled identities' other",
        "images; non-mated searches = every image of the left-out "
        "identities. A probe that fails to acquire is a miss (mated)",
        f"or returns nothing (non-mated). Candidate list L = {CANDIDATES} "
        "subjects by cosine; scores are the calibrated scores",
        "(`enrollment.calibration.load_calibration()`) a user sees, "
        "and T is the calibrated threshold the FNIR is read at",
        "(the lowest with FPIR ≤ the target). FNIR intervals: bootstrap "
        "over probe identities (threshold re-read per replicate).",
        "Identities are taken to be distinct across sets. * = fewer "
        "than 1/FPIR non-mated searches: T is above the highest",
        "non-mated score (no false positive observed).",
        "",
        "| set | gallery subjects / templates (distractors) | enrolled / left-out "
        "ids | mated / non-mated searches | FNIR@FPIR 1e-2 | FNIR@FPIR 1e-3 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        d, s = row.design, row.searches
        gallery = (
            f"{d.subjects} / {d.templates} ({d.distractor_subjects} / {d.distractor_templates})" if d else "per set"
        )
        ids = (
            f"{d.enrolled} / {d.left_out}"
            if d
            else f"{sum(r.design.enrolled for r in rows if r.design)} / "
            f"{sum(r.design.left_out for r in rows if r.design)}"
        )
        name = f"**{row.name}**" if d is None else row.name
        out.append(
            f"| {name} | {gallery} | {ids} | {len(s.mated)} / {len(s.nonmated)} | "
            + " | ".join(results.fnir_text(r) for r in row.rates)
            + " |"
        )
    reached = [(r.name, r.searches.nonmated) for r in rows if r.design]
    return out + [""] + results.clamp_sentences(calibration, "cosine", reached, raw, "the pooled FNIR")


def render_peer(ours: list[SetResult], peer: dict[str, SetResult], note: str) -> list[str]:
    out = [
        "",
        "### Side by side with `face_recognition` (dlib HOG + ResNet), same report images",
        "",
        note,
        "",
        "| set | FTA ours / dlib | TAR@1e-2 ours / dlib | TAR@1e-3 ours / dlib "
        "| rank-1 ours / dlib | pairs acc. ours / dlib | s/photo ours / dlib |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in ours:
        p = peer.get(r.name)
        if p is None:
            continue
        pairs = [results.estimate_text(x.pairs_accuracy, digits=4) if x.pairs_accuracy else "" for x in (r, p)]
        out.append(
            f"| {r.name} | {results.estimate_text(r.fta)} / "
            f"{results.estimate_text(p.fta)} | {fmt_tar(r, 1e-2)} / {fmt_tar(p, 1e-2)} | "
            f"**{fmt_tar(r, 1e-3)}** / {fmt_tar(p, 1e-3)} | "
            f"{results.estimate_text(r.rank1)} / {results.estimate_text(p.rank1)} | "
            f"{pairs[0]} / {pairs[1]} | {r.seconds / r.images:.3f} / {p.seconds / p.images:.3f} |"
        )
    return out


def render_speed(stage_ms: dict[str, float], throughput: float, photos: int) -> list[str]:
    total = sum(stage_ms.values())
    out = [
        "",
        f"### Enrolment speed (full pipeline incl. quality models, one thread, {photos} full-frame report photos)",
        "",
        f"Throughput: **{throughput:.1f} photos/s** on one core ({1000.0 / throughput:.0f} ms per photo, "
        "including JPEG decoding of photos up to 4600 px).",
        "",
        "| stage | mean ms / photo |",
        "| --- | --- |",
    ]
    out += [f"| {stage} | {stage_ms.get(stage, 0.0):.1f} |" for stage in STAGES]
    out.append(f"| total | {total:.1f} |")
    return out


def draw(ours: list[SetResult], rows: list[OpenSetRow], folder: Path) -> dict[str, Path]:
    """The three face figures into ``folder``."""
    return {
        "det": plots.det_figure(
            {r.name: r.curve() for r in ours}, folder / FIGURE_NAMES["det"], "Face 1:1, report identities"
        ),
        "scores": plots.score_histograms(
            {r.name: (r.genuine, r.impostor) for r in ours},
            folder / FIGURE_NAMES["scores"],
            "Face cosines, report identities",
            "cosine",
        ),
        "open_set": plots.det_figure(
            {r.name: r.searches.trials().curve() for r in rows},
            folder / FIGURE_NAMES["open_set"],
            f"Face 1:N with distractors, L = {CANDIDATES}",
            "FPIR",
            "FNIR (0 not drawn)",
        ),
    }


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="data folder (default $SHANAKHT_DATA or ../shared/data)"
    )
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--sets", nargs="+", default=None, help="limit to these face sets")
    parser.add_argument("--limit", type=int, default=None, help="only the first N report images of each set")
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS, help="bootstrap replicates")
    parser.add_argument("--peer", action="store_true", help="also run face_recognition (dlib) if installed")
    parser.add_argument(
        "--figures", type=Path, default=None, help="draw the PNGs into this folder (--write: benchmarks/figures)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{', '.join(SMOKE_SETS)}, {SMOKE_LIMIT} images each, {SMOKE_REPS} replicates",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the face_accuracy section of RESULTS.md and the figures"
    )
    args = parser.parse_args(argv)
    if args.smoke and args.write:
        parser.error("--smoke measures nothing worth writing; drop --write")
    if args.smoke:
        args.sets = args.sets or list(SMOKE_SETS)
        args.limit = args.limit or SMOKE_LIMIT
        args.reps = min(args.reps, SMOKE_REPS)
    return args


def report_samples(name: str, data: Path, limit: int | None) -> tuple[list[Sample], int]:
    """The set's report images (file order, at most ``limit``) and how many labelled images the set has."""
    samples = load_face_set(name, data)
    return load_protocol().select("face", name, samples, "report")[:limit], len(samples)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    data = args.data or default_data_dir()
    sets = args.sets or face_sets(data)
    if not sets:
        print(f"no face sets under {data}/face (set --data or SHANAKHT_DATA)", file=sys.stderr)
        return 1
    extractor = FaceExtractor(args.model_dir, threads=1)
    calibration = load_calibration()
    pair_threshold = calibration.similarity_for_score(PAIR_SCORE)

    ours: list[SetResult] = []
    embedded: dict[str, EmbeddedSet] = {}
    all_images: dict[str, int] = {}
    stage_seconds: dict[str, float] = {}
    full_frame_photos, full_frame_seconds = 0, 0.0
    for name in sets:
        samples, all_images[name] = report_samples(name, data, args.limit)
        pre_aligned = name in PRE_ALIGNED_SETS
        timings: dict[str, float] = {}
        start = time.perf_counter()
        embedded[name] = embed_set(extractor, samples, pre_aligned, timings=timings)
        seconds = time.perf_counter() - start
        if not pre_aligned:
            full_frame_photos += len(samples)
            full_frame_seconds += seconds
            for stage, value in timings.items():
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + value
        ours.append(evaluate(name, embedded[name], seconds, data, pair_threshold, args.reps))
        print(f"{name}: {len(samples)} report images in {seconds:.1f} s", file=sys.stderr)
    rows, raw = open_set_rows(embedded, calibration, args.reps)

    peer, peer_note = run_peer(args, sets, data, ours) if args.peer else ({}, "")
    stage_ms = {k: 1000.0 * v / max(full_frame_photos, 1) for k, v in stage_seconds.items()}
    throughput = full_frame_photos / full_frame_seconds if full_frame_seconds else float("nan")
    folder = plots.FIGURES if args.write else args.figures
    figures = draw(ours, rows, folder) if folder else {}
    body = render_protocol(ours, args.reps, all_images) + render_verification(ours, pair_threshold)
    body += render_open_set(rows, raw, calibration)
    body += results.figure_links(figures, FIGURE_CAPTIONS) if args.write else []
    body += render_peer(ours, peer, peer_note) if peer else []
    body += render_speed(stage_ms, throughput, full_frame_photos)
    section = "\n".join(body) + "\n"
    print(section)
    report_failures(ours)
    if args.write:
        results.write_section(NAME, TITLE, section, results.script_command("face_accuracy.py", argv), PACKAGES)
        print(f"wrote {results.RESULTS}", file=sys.stderr)
    return 0


def run_peer(
    args: argparse.Namespace, sets: Sequence[str], data: Path, ours: list[SetResult]
) -> tuple[dict[str, SetResult], str]:
    """The dlib peer on the same report images (empty when face_recognition is not installed)."""
    if not peer_available():
        print("face_recognition is not installed; skipping the peer (pip install face_recognition)", file=sys.stderr)
        return {}, ""
    note = (
        "face_recognition as its README uses it: HOG detector with one upsample, largest face, "
        f"128-d encoding, distance threshold {PEER_TOLERANCE} for pairs. Photos larger than {PEER_MAX_SIDE} px are "
        f"downscaled first; crops up to {PEER_WHOLE_IMAGE_MAX_SIDE} px where HOG finds nothing use the whole image "
        "(the courtesy our own tight-crop fallback gets); aligned crops are encoded whole."
    )
    peer = {}
    for name in sets:
        embedded, seconds = peer_embed(report_samples(name, data, args.limit)[0], name in PRE_ALIGNED_SETS)
        peer[name] = evaluate(name, embedded, seconds, data, -PEER_TOLERANCE, args.reps, peer_scores(embedded))
        print(f"peer {name}: {seconds:.1f} s", file=sys.stderr)
    return peer, note


def report_failures(ours: list[SetResult]) -> None:
    failures = {r.name: r.errors for r in ours if r.errors}
    if failures:
        print("failures to acquire:", file=sys.stderr)
        for name, errors in failures.items():
            for rel, message in errors.items():
                print(f"  {name}/{rel}: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
