"""Eye state (open / closed) with faceplugin's ``fr_eye.onnx``.

Contract, as ``package/lib/fr_eye.js`` uses it: per eye, a square centred on the mean of
landmarks 37, 38, 40, 41 (left) or 43, 44, 46, 47 (right), side 1.6 × the eye's width
(landmark 39 − 36, resp. 45 − 42), resized to 24×24, grey, ``x / 255``, input ``[1,1,24,24]``;
output 2 logits, softmax.  ``OPEN_CLASS`` names which one means open.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from enrollment.face._onnx import check_contract, open_session, run
from enrollment.face.align import Box, crop_resized

INPUT_SIZE = 24
INPUT_SHAPE = (1, 1, INPUT_SIZE, INPUT_SIZE)
COLOUR_ORDER = "GRAY"
PIXEL_SCALE = 1.0 / 255.0
PADDING_RATE = 1.6
# Measured: mean P(class 1) is 0.86–0.98 per eye on att_orl, faceapi_bbt and five_celebrities,
# where nearly every subject has open eyes, so class 1 is "open".
OPEN_CLASS = 1

_EYES = (((37, 38, 40, 41), 36, 39), ((43, 44, 46, 47), 42, 45))


class EyeStateModel:
    """Wraps ``fr_eye.onnx``; ``predict`` returns ``[N, 2]`` probabilities that the left/right eye is open."""

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads)
        self._input = check_contract(self._session, model_path, INPUT_SHAPE)

    def predict(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 68, 2)
        out = np.empty((len(landmarks), 2), dtype=np.float32)
        for i, points in enumerate(landmarks):
            for k, (centre_idx, corner_a, corner_b) in enumerate(_EYES):
                cx, cy = points[list(centre_idx)].mean(axis=0)
                side = max(float(points[corner_b, 0] - points[corner_a, 0]) * PADDING_RATE, 2.0)
                box = Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
                crop = crop_resized(gray, box, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32) * PIXEL_SCALE
                (logits,) = run(self._session, {self._input: crop[None, None]})
                z = np.exp(logits.reshape(-1) - logits.max())
                out[i, k] = (z / z.sum())[OPEN_CLASS]
        return out
