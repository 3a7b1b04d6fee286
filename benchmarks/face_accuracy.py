"""Face accuracy and speed on every face set in the data folder, with the dlib peer side by side.

    python benchmarks/face_accuracy.py [--data DIR] [--model-dir DIR] [--peer] [--write]

For each set: failure to acquire (FTA), TAR at FAR 1e-2 / 1e-3 / 1e-4 over all genuine vs all
impostor pairs (FTA counts as non-match), rank-1 with the first image of each identity enrolled,
and, where the set has ``pairs.csv``, pair accuracy at a threshold fixed *before* looking at the
pairs: the calibrated cosine at FMR 1e-3 (measured on glint24_aligned, att_orl, five_celebrities).
Then enrolment throughput and per-stage latency of the full pipeline (quality models included).

``--peer`` runs ``face_recognition`` (dlib HOG detector + ResNet) on the same images, if installed.
``--write`` replaces the section between the face_accuracy markers in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import results  # noqa: E402
from benchmarks.evaluation.datasets import (  # noqa: E402
    CALIBRATION_SETS,
    PRE_ALIGNED_SETS,
    default_data_dir,
    face_sets,
    load_face_set,
    load_pairs,
)
from benchmarks.evaluation.face import EmbeddedSet, embed_set, pair_scores, rank1_one_enrolled  # noqa: E402
from benchmarks.evaluation.metrics import tar_at_far  # noqa: E402
from enrollment.calibration import load_calibration  # noqa: E402
from enrollment.face.pipeline import STAGES, FaceExtractor  # noqa: E402

BEGIN, END = "<!-- face_accuracy:begin -->", "<!-- face_accuracy:end -->"
FARS = (1e-2, 1e-3, 1e-4)
PEER_TOLERANCE = 0.6  # face_recognition's documented default distance threshold
PEER_MAX_SIDE = 1600  # the peer's HOG detector on a 4600-px photo takes minutes; users downscale too
PEER_WHOLE_IMAGE_MAX_SIDE = 160  # same courtesy as our tight-crop fallback: small crops use the whole image


@dataclass
class SetResult:
    name: str
    images: int
    identities: int
    fta: float
    fallbacks: int
    genuine: int
    impostor: int
    tar: dict[float, float]
    rank1: float
    pairs_accuracy: float | None = None
    pairs_errors: int | None = None
    pairs: int | None = None
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


def evaluate(
    name: str,
    embedded: EmbeddedSet,
    seconds: float,
    data: Path,
    pair_threshold: float | None,
    scores: np.ndarray | None = None,
) -> SetResult:
    """Every measure of one set.  ``scores`` is the [N, N] comparison matrix (the peer's -distance; default
    cosines); a listed pair is declared "same" when its score is above ``pair_threshold`` (None: not scored)."""
    genuine, impostor = pair_scores(embedded, scores)
    result = SetResult(
        name=name,
        images=len(embedded.labels),
        identities=len(set(embedded.labels.tolist())),
        fta=embedded.failure_to_acquire,
        fallbacks=embedded.fallbacks,
        genuine=len(genuine),
        impostor=len(impostor),
        tar={far: tar_at_far(genuine, impostor, far) for far in FARS},
        rank1=rank1_one_enrolled(embedded, scores),
        seconds=seconds,
        errors=embedded.errors,
    )
    pairs = load_pairs(name, data)
    if pairs and pair_threshold is not None:
        index = {rel: i for i, rel in enumerate(embedded.relpaths)}

        def score(a: int, b: int) -> float:
            # Per pair, not read off the matrix: a float32 dot product need not equal its matmul entry to the bit.
            return float(embedded.vectors[a] @ embedded.vectors[b]) if scores is None else float(scores[a, b])

        correct = 0
        for a, b, same in pairs:
            value = score(index[a], index[b]) if a in index and b in index else -np.inf
            correct += int((value > pair_threshold) == same)
        result.pairs, result.pairs_errors = len(pairs), len(pairs) - correct
        result.pairs_accuracy = correct / len(pairs)
    return result


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


def peer_embed(samples, pre_aligned: bool) -> tuple[EmbeddedSet, float]:
    """face_recognition's own recipe: HOG detection (1 upsample), largest face, 128-d ResNet encoding.

    Its vectors are compared by Euclidean distance (see ``peer_evaluate``), not cosine.
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


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def fmt_tar(result: SetResult, far: float) -> str:
    """TAR, starred when the set has fewer than 1/FAR impostor pairs (then the threshold is the
    highest impostor score: TAR with no false accept observed, a weaker claim than the FAR)."""
    text = fmt(result.tar[far])
    return text + "*" if far * result.impostor < 1 and text != "—" else text


def render(
    ours: list[SetResult],
    peer: dict[str, SetResult],
    threshold: float,
    stage_ms: dict[str, float],
    throughput: float,
    photos: int,
    peer_note: str,
) -> str:
    out = [
        "- model: faceplugin fr_detect → fr_landmark → 5-point align → fr_feature (512-d), one ONNX Runtime thread",
        "- TAR over all genuine vs all impostor pairs of a set; failures to acquire (FTA) count as non-matches;",
        "  * = fewer than 1/FAR impostor pairs in the set, so the threshold is its highest impostor score",
        "  (no false accept observed; a weaker claim than the FAR). Rank-1: first image of each identity enrolled.",
        f"- pairs accuracy: threshold fixed beforehand at the calibrated cosine for FMR 1e-3 = {threshold:.4f}",
        f"  (calibration sets: {', '.join(CALIBRATION_SETS)}; their TAR/rank-1 rows are in-sample for the *calibration* only,",
        "  TAR at FAR is always measured on the set's own impostors).",
        "",
        "| set | images / ids | genuine / impostor pairs | FTA | fallback | TAR@1e-2 | TAR@1e-3 | TAR@1e-4 | rank-1 | pairs acc. (errors / n) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in ours:
        pairs = f"{fmt(r.pairs_accuracy, 4)} ({r.pairs_errors} / {r.pairs})" if r.pairs else ""
        out.append(
            f"| {r.name} | {r.images} / {r.identities} | {r.genuine} / {r.impostor} | {fmt(r.fta)} | {r.fallbacks} | {fmt_tar(r, 1e-2)} | "
            f"{fmt_tar(r, 1e-3)} | {fmt_tar(r, 1e-4)} | {fmt(r.rank1)} | {pairs} |"
        )
    if peer:
        out += [
            "",
            "### Side by side with `face_recognition` (dlib HOG + ResNet)",
            "",
            peer_note,
            "",
            "| set | FTA ours / dlib | TAR@1e-2 ours / dlib | TAR@1e-3 ours / dlib | rank-1 ours / dlib | pairs acc. ours / dlib | s/photo ours / dlib |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in ours:
            p = peer.get(r.name)
            if p is None:
                continue
            out.append(
                f"| {r.name} | {fmt(r.fta)} / {fmt(p.fta)} | {fmt_tar(r, 1e-2)} / {fmt_tar(p, 1e-2)} | "
                f"**{fmt_tar(r, 1e-3)}** / {fmt_tar(p, 1e-3)} | {fmt(r.rank1)} / {fmt(p.rank1)} | "
                f"{fmt(r.pairs_accuracy, 4) if r.pairs else ''} / {fmt(p.pairs_accuracy, 4) if p.pairs else ''} | "
                f"{fmt(r.seconds / r.images, 3)} / {fmt(p.seconds / p.images, 3)} |"
            )
    total = sum(stage_ms.values())
    out += [
        "",
        f"### Enrolment speed (full pipeline incl. quality models, one thread, {photos} full-frame photos)",
        "",
        f"Throughput: **{throughput:.1f} photos/s** on one core ({1000.0 / throughput:.0f} ms per photo, "
        "including JPEG decoding of photos up to 4600 px).",
        "",
        "| stage | mean ms / photo |",
        "| --- | --- |",
    ]
    for stage in STAGES:
        out.append(f"| {stage} | {stage_ms.get(stage, 0.0):.1f} |")
    out.append(f"| total | {total:.1f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder (default $SHANAKHT_DATA or ../shared/data)")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--sets", nargs="+", default=None, help="limit to these face sets")
    parser.add_argument("--peer", action="store_true", help="also run face_recognition (dlib) if installed")
    parser.add_argument("--write", action="store_true", help="replace the face_accuracy section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    data = args.data or default_data_dir()
    sets = args.sets or face_sets(data)
    if not sets:
        print(f"no face sets under {data}/face (set --data or SHANAKHT_DATA)", file=sys.stderr)
        return 1
    extractor = FaceExtractor(args.model_dir, threads=1)
    threshold = load_calibration().similarity_for_score(3.0)

    ours: list[SetResult] = []
    stage_seconds: dict[str, float] = {}
    full_frame_photos, full_frame_seconds = 0, 0.0
    for name in sets:
        samples = load_face_set(name, data)
        pre_aligned = name in PRE_ALIGNED_SETS
        timings: dict[str, float] = {}
        start = time.perf_counter()
        embedded = embed_set(extractor, samples, pre_aligned, timings=timings)
        seconds = time.perf_counter() - start
        if not pre_aligned:
            full_frame_photos += len(samples)
            full_frame_seconds += seconds
            for stage, value in timings.items():
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + value
        ours.append(evaluate(name, embedded, seconds, data, threshold))
        print(f"{name}: {len(samples)} images in {seconds:.1f} s", file=sys.stderr)

    peer: dict[str, SetResult] = {}
    peer_note = ""
    if args.peer:
        if peer_available():
            peer_note = (
                "face_recognition as its README uses it: HOG detector with one upsample, largest face, "
                f"128-d encoding, distance threshold {PEER_TOLERANCE} for pairs. Photos larger than {PEER_MAX_SIDE} px are "
                f"downscaled first; crops up to {PEER_WHOLE_IMAGE_MAX_SIDE} px where HOG finds nothing use the whole image "
                "(the courtesy our own tight-crop fallback gets); aligned crops are encoded whole."
            )
            for name in sets:
                embedded, seconds = peer_embed(load_face_set(name, data), name in PRE_ALIGNED_SETS)
                peer[name] = evaluate(name, embedded, seconds, data, -PEER_TOLERANCE, peer_scores(embedded))
                print(f"peer {name}: {seconds:.1f} s", file=sys.stderr)
        else:
            print("face_recognition is not installed; skipping the peer (pip install face_recognition)", file=sys.stderr)

    stage_ms = {k: 1000.0 * v / max(full_frame_photos, 1) for k, v in stage_seconds.items()}
    throughput = full_frame_photos / full_frame_seconds if full_frame_seconds else float("nan")
    command = "python benchmarks/face_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = render(ours, peer, threshold, stage_ms, throughput, full_frame_photos, peer_note)
    print(section)
    failures = {r.name: r.errors for r in ours if r.errors}
    if failures:
        print("failures to acquire:", file=sys.stderr)
        for name, errors in failures.items():
            for rel, message in errors.items():
                print(f"  {name}/{rel}: {message}", file=sys.stderr)
    if args.write:
        results.write_section("face_accuracy", "Face accuracy (`benchmarks/face_accuracy.py`)", section, command.strip(),
                              extra_packages=("pillow", "face_recognition", "face_recognition_models", "dlib"))
        print(f"wrote {results.RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
