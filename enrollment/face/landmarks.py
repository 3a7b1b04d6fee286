"""68-point landmarks with faceplugin's ``fr_landmark.onnx``.

Contract, as ``package/lib/fr_landmark.js`` uses it: the detector's box made square (side = box
height, same centre), cropped, resized to 64×64, grey, ``x / 256``, input ``[1, 1, 64, 64]``;
output 136 values, 68 (x, y) pairs normalised to that square, iBUG 68-point order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from enrollment.face._onnx import check_contract, open_session, run
from enrollment.face.align import Box, crop_resized

INPUT_SIZE = 64
INPUT_SHAPE = (1, 1, INPUT_SIZE, INPUT_SIZE)
COLOUR_ORDER = "GRAY"
PIXEL_SCALE = 1.0 / 256.0
NUM_POINTS = 68


class LandmarkModel:
    """Wraps ``fr_landmark.onnx``; ``predict`` returns landmarks in original-image pixels."""

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads)
        self._input = check_contract(self._session, model_path, INPUT_SHAPE)

    @staticmethod
    def crop_box(face_box: Box) -> Box:
        """The square the model expects, derived from a detector (or whole-image) box."""
        return face_box.square()

    def predict(self, rgb: np.ndarray, face_boxes: Sequence[Box]) -> np.ndarray:
        """Landmarks ``[N, 68, 2]`` (x, y) in pixels of ``rgb`` for each face box."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        out = np.empty((len(face_boxes), NUM_POINTS, 2), dtype=np.float32)
        for i, face_box in enumerate(face_boxes):
            square = self.crop_box(face_box)
            crop = crop_resized(gray, square, (INPUT_SIZE, INPUT_SIZE))
            tensor = (crop.astype(np.float32) * PIXEL_SCALE)[None, None]
            (points,) = run(self._session, {self._input: tensor})
            points = points.reshape(NUM_POINTS, 2)
            out[i, :, 0] = square.x1 + points[:, 0] * square.width
            out[i, :, 1] = square.y1 + points[:, 1] * square.height
        return out
