"""Face: image bytes → detected faces → 68 landmarks → 112×112 aligned crops → 512-d templates.

The public entry point is :class:`FaceExtractor` (``enrollment.face.pipeline``); the model classes
(one per ONNX file) are importable for tests and benchmarks.  Names are imported lazily so that
``import enrollment.face.align`` does not load every model wrapper.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FaceExtractor", "FaceResult", "QualityPolicy", "QualityReport", "assess"]

_HOMES = {
    "FaceExtractor": "enrollment.face.pipeline",
    "FaceResult": "enrollment.face.pipeline",
    "QualityPolicy": "enrollment.face.quality",
    "QualityReport": "enrollment.face.quality",
    "assess": "enrollment.face.quality",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
