"""Head pose (yaw, pitch, roll in degrees) with faceplugin's ``fr_pose.onnx`` (a Hopenet).

Contract, as ``package/lib/fr_pose.js`` uses it: the square face box grown by a quarter of its
size on every side, resized to 224×224, RGB, ImageNet mean/std, NCHW; three outputs of 66 bin
logits (yaw, pitch, roll); angle = 3 × (softmax-weighted bin index) − 99.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from enrollment.face._onnx import check_contract, open_session, run
from enrollment.face.align import Box, crop_resized

INPUT_SIZE = 224
INPUT_SHAPE = (1, 3, INPUT_SIZE, INPUT_SIZE)
COLOUR_ORDER = "RGB"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MARGIN = 0.25
BINS = 66
BIN_DEGREES = 3.0
OFFSET_DEGREES = -99.0


class PoseModel:
    """Wraps ``fr_pose.onnx``; ``predict`` returns ``[N, 3]`` yaw, pitch, roll in degrees."""

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads)
        self._input = check_contract(self._session, model_path, INPUT_SHAPE)
        self._outputs = [o.name for o in self._session.get_outputs()]

    def predict(self, rgb: np.ndarray, face_boxes: Sequence[Box]) -> np.ndarray:
        out = np.empty((len(face_boxes), 3), dtype=np.float32)
        idx = np.arange(BINS, dtype=np.float32)
        for i, face_box in enumerate(face_boxes):
            square = face_box.square()
            grown = Box(
                square.x1 - square.width * MARGIN,
                square.y1 - square.height * MARGIN,
                square.x2 + square.width * MARGIN,
                square.y2 + square.height * MARGIN,
            )
            crop = crop_resized(rgb, grown, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32) / 255.0
            tensor = np.ascontiguousarray(((crop - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None])
            logits = run(self._session, {self._input: tensor}, self._outputs)  # yaw, pitch, roll
            for k, bins in enumerate(logits):
                z = np.exp(bins.reshape(-1) - bins.max())
                out[i, k] = float((z / z.sum()) @ idx) * BIN_DEGREES + OFFSET_DEGREES
        return out
