"""The extractors this server runs, one per modality (the enrollment side of ``matcher.modalities``)."""

from __future__ import annotations

from pathlib import Path

from enrollment.extractor import Extractor
from enrollment.face.pipeline import FaceExtractor
from enrollment.finger.pipeline import FingerExtractor


def load_extractors(model_dir: Path | None, threads: int = 1) -> list[Extractor]:
    """Every built-in extractor, its models hash-verified (``ModelUnavailable`` when one is missing or altered)."""
    return [FaceExtractor(model_dir, threads=threads), FingerExtractor(model_dir, threads=threads)]
