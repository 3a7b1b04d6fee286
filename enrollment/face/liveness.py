"""Presentation-attack (liveness) score with faceplugin's ``fr_liveness.onnx``.

Contract, as ``package/lib/fr_liveness.js`` uses it: the square face box scaled 2.7× about its
centre, kept inside the image (shifted, and shrunk only if the image is too small), resized to
128×128, RGB, raw 0–255 values, NCHW; output 3 logits, softmax.  The package reports the
probability of class 0; this module names which class means "live" in ``LIVE_CLASS``.

It is a single-frame model of undocumented provenance: treat its score as a warning signal, and
keep ``QualityPolicy.require_live`` off unless it has been validated on your capture setup.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from enrollment.face._onnx import check_contract, open_session, run
from enrollment.face.align import Box, crop_resized

INPUT_SIZE = 128
INPUT_SHAPE = (1, 3, INPUT_SIZE, INPUT_SIZE)
COLOUR_ORDER = "RGB"
BOX_SCALE = 2.7
# The class fr_liveness.js reports.  Measured on bona fide photos of ../shared/data: mean
# P(class 0) 0.85 on five_celebrities, 0.84 on faceapi_bbt (colour), 0.43 on att_orl (1990s
# grey scans, which a liveness model may fairly doubt): class 0 is the "live" class.
LIVE_CLASS = 0


def context_box(face_box: Box, width: int, height: int, scale: float = BOX_SCALE) -> Box:
    """fr_liveness.js ``alignLivenessImage``: grow the box, then slide it back inside the image."""
    w, h = face_box.width, face_box.height
    scale = min((height - 1) / max(h, 1.0), (width - 1) / max(w, 1.0), scale)
    cx, cy = face_box.centre
    x1, y1 = cx - w * scale / 2, cy - h * scale / 2
    x2, y2 = cx + w * scale / 2, cy + h * scale / 2
    if x1 < 0:
        x2, x1 = x2 - x1, 0.0
    if y1 < 0:
        y2, y1 = y2 - y1, 0.0
    if x2 > width - 1:
        x1, x2 = x1 - (x2 - width + 1), float(width - 1)
    if y2 > height - 1:
        y1, y2 = y1 - (y2 - height + 1), float(height - 1)
    return Box(max(x1, 0.0), max(y1, 0.0), x2, y2)


class LivenessModel:
    """Wraps ``fr_liveness.onnx``; ``score`` is the probability that each face is a live capture."""

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads)
        self._input = check_contract(self._session, model_path, INPUT_SHAPE)

    def score(self, rgb: np.ndarray, face_boxes: Sequence[Box]) -> np.ndarray:
        """``[N]`` live probabilities for the (square) face boxes in ``rgb``."""
        h, w = rgb.shape[:2]
        out = np.empty(len(face_boxes), dtype=np.float32)
        for i, face_box in enumerate(face_boxes):
            crop = crop_resized(rgb, context_box(face_box.square(), w, h), (INPUT_SIZE, INPUT_SIZE))
            tensor = np.ascontiguousarray(crop.astype(np.float32).transpose(2, 0, 1)[None])
            (logits,) = run(self._session, {self._input: tensor})
            out[i] = _softmax(logits.reshape(-1))[LIVE_CLASS]
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()
