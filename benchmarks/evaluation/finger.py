"""Extracting the fingerprint evaluation sets once, for the finger benchmark and the calibration command.

LEADER costs 0.2–1.5 s per print on one core, so evaluation runs wrap the detector in
:class:`CachingDetector`: the network's minutiae are stored per input crop (keyed by a hash of
the exact pixels and the model id) in a folder *outside* the repository, and a rerun that feeds
the same pixels gets the same minutiae back.  Everything after the network is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.evaluation.datasets import Sample, load_finger_set
from enrollment import models
from enrollment.finger import minutiae
from enrollment.finger.minutiae import QUALITY_THRESHOLD, RawMinutiae
from enrollment.finger.pipeline import FingerExtractor, MinutiaeDetector
from matcher.errors import InvalidArgument
from matcher.finger.template import FingerTemplate

log = logging.getLogger(__name__)

CACHE_ENV = "SHANAKHT_FINGER_CACHE"
DEFAULT_CACHE = Path("/tmp/shanakht-finger-cache")
CACHE_FLOOR = 0.3  # minutiae stored down to this quality so the threshold can be varied
FVC_SETS = ("fvc2002_db1_b", "fvc2002_db2_b", "fvc_300x300")
# Scanning resolution per set.  SOCOFing says 500 dpi but its ridges are ≈ 3.8 px apart: it is read
# at the resolution that brings its ridge period to the 500-dpi prints' (benchmarks/tune_finger_dpi.py,
# from tune prints); its altered prints are the same images damaged.  latent_generated's clean prints
# are FVC impressions (500 dpi) on a 512×512 canvas, and its latents were generated at that scale.
SET_DPI = {
    "fvc2002_db1_b": 500,
    "fvc2002_db2_b": 569,
    "fvc_300x300": 500,
    "socofing_real_distractors": 200,
    "socofing_altered": 200,
    "ten_fingers_4_people": 500,
    "latent_generated": 500,
}


def default_cache_dir() -> Path:
    """``$SHANAKHT_FINGER_CACHE``, else /tmp/shanakht-finger-cache (never inside the repository)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else DEFAULT_CACHE


def model_cache_name() -> str:
    """The cache folder of what the pipeline's minutiae model produced: its id and the SHA-256 of its file."""
    return f"{minutiae.MODEL_ID.replace('/', '_')}-{models.load_manifest()[minutiae.MODEL_NAME].sha256[:16]}"


class CachingDetector:
    """Wraps a detector; remembers its output per exact input pixels in ``cache_dir``.

    Kept per model file (the manifest's SHA-256 of the model the pipeline runs), so a rewritten
    or replaced network never reads another's minutiae.
    """

    def __init__(self, inner: MinutiaeDetector | None, cache_dir: Path | None = None) -> None:
        self._inner = inner
        self._dir = Path(cache_dir or default_cache_dir()) / model_cache_name()
        self._dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def detect(self, gray: np.ndarray, quality_threshold: float = QUALITY_THRESHOLD) -> RawMinutiae:
        key = hashlib.sha1(np.ascontiguousarray(gray).tobytes() + str(gray.shape).encode()).hexdigest()
        path = self._dir / f"{key}.npz"
        if path.is_file():
            self.hits += 1
            with np.load(path) as z:
                raw = RawMinutiae(z["x"], z["y"], z["theta"], z["kind"], z["quality"])
        else:
            self.misses += 1
            if self._inner is None:
                raise LookupError("minutiae not cached and no detector given")
            raw = self._inner.detect(gray, CACHE_FLOOR)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # two runs filling one cache must not share a file
            np.savez(tmp, x=raw.x, y=raw.y, theta=raw.theta, kind=raw.kind, quality=raw.quality)
            os.replace(tmp, path)
        keep = raw.quality >= quality_threshold
        return RawMinutiae(raw.x[keep], raw.y[keep], raw.theta[keep], raw.kind[keep], raw.quality[keep])


class CachingNfiq2:
    """Wraps the NFIQ 2 assessor; remembers its score per exact input pixels (NFIQ 2 costs ≈ 0.2 s a print)."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        from enrollment.finger.nfiq2 import Nfiq2Assessor

        self._inner = Nfiq2Assessor()
        self._dir = Path(cache_dir or default_cache_dir()) / "nfiq2-nbis-py-0.1.3"
        self._dir.mkdir(parents=True, exist_ok=True)

    def assess(self, gray: np.ndarray):
        from enrollment.finger.nfiq2 import Nfiq2Score

        key = hashlib.sha1(np.ascontiguousarray(gray).tobytes() + str(gray.shape).encode()).hexdigest()
        path = self._dir / f"{key}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            return Nfiq2Score(saved["score"], saved["actionable"], saved["failure"])
        found = self._inner.assess(gray)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"score": found.score, "actionable": found.actionable, "failure": found.failure}))
        os.replace(tmp, path)
        return found


@dataclass
class ExtractedSet:
    """Templates of one set in label order; ``None`` where enrolment failed (with the reason)."""

    name: str
    samples: list[Sample]
    templates: list[FingerTemplate | None]
    failures: dict[int, str]
    timings_ms: list[dict[str, float]]

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.samples]


def caching_extractor(
    model_dir: Path | None = None, cache_dir: Path | None = None, threads: int = 1
) -> FingerExtractor:
    """The production finger extractor with LEADER behind :class:`CachingDetector`."""
    from enrollment import models
    from enrollment.finger.minutiae import MODEL_NAME, LeaderMinutiae

    inner = LeaderMinutiae(models.load_verified(MODEL_NAME, model_dir), threads)
    return FingerExtractor(detector=CachingDetector(inner, cache_dir), nfiq2=CachingNfiq2(cache_dir))


def extract_set(
    extractor: FingerExtractor, name: str, data_dir: Path | None = None, limit: int | None = None
) -> ExtractedSet:
    """Every labelled print of ``name`` at the set's resolution; failures to enrol are kept as ``None``."""
    return extract_samples(extractor, name, load_finger_set(name, data_dir)[:limit])


def extract_samples(extractor: FingerExtractor, name: str, samples: Sequence[Sample]) -> ExtractedSet:
    """These prints of set ``name`` (a protocol's selection, say) at the set's resolution; failures kept as ``None``."""
    samples = list(samples)
    dpi = SET_DPI.get(name, 0)
    templates: list[FingerTemplate | None] = []
    failures: dict[int, str] = {}
    timings: list[dict[str, float]] = []
    for i, sample in enumerate(samples):
        try:
            result = extractor.extract(sample.path.read_bytes(), dpi=dpi)
            templates.append(result.template)
            timings.append(result.timings_ms)
        except InvalidArgument as exc:
            templates.append(None)
            failures[i] = str(exc)
            log.info("%s: %s failed to enrol: %s", name, sample.relpath, exc)
    return ExtractedSet(name, samples, templates, failures, timings)
