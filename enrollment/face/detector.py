"""Face detection with faceplugin's ``fr_detect.onnx`` (an Ultra-Light RFB-320 style SSD).

Contract, as ``package/lib/fr_detect.js`` uses it: the whole image stretched to 320×240, RGB,
``(x − 127) / 128``, NCHW; outputs ``scores [1,4420,2]`` (softmax, column 1 = face) and
``boxes [1,4420,4]`` already decoded to corners normalised to 0–1.

Two lessons measured on ../shared/data are built in:

* the image is padded by about 25 % on each side before detection.  The model was trained on
  faces with context around them; on tight crops (mugshots, att_orl) that cut failures to
  acquire from ~10 % to well under 1 %;
* detections are ranked by score *and* size (see :func:`rank_key`), not size alone: a large
  low-score false positive was picked once on the deepface set when ranking by size.

When the padded pass finds nothing, the image is tried once more as it is: padding shrinks the
faces by a third in the 320×240 input, which loses the smallest ones (1 of 118 five_celebrities
photos).  The second pass costs one more 4 ms inference, on failures only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from enrollment.face._onnx import check_contract, open_session, run
from enrollment.face.align import Box

INPUT_WIDTH = 320
INPUT_HEIGHT = 240
INPUT_SHAPE = (1, 3, INPUT_HEIGHT, INPUT_WIDTH)
COLOUR_ORDER = "RGB"
PIXEL_MEAN = 127.0
PIXEL_SCALE = 1.0 / 128.0
SCORE_THRESHOLD = 0.65  # fr_detect.js confidence_threshold
NMS_IOU = 0.4  # fr_detect.js nms_threshold
TOP_K = 750  # fr_detect.js top_k before NMS
PAD_FRACTION = 0.4  # of the image's width (left/right) and height (top/bottom); benchmarks/tune_face.py derives it from tune photos
MIN_FACE_PX = 8.0  # boxes smaller than this (in original pixels) are noise at this input size


@dataclass(frozen=True)
class Detection:
    """One face found by the detector: box in original-image pixels and the detector's face probability."""

    box: Box
    score: float


LOGIT_CAP = 12.0


def rank_key(detection: Detection) -> float:
    """Detector log-odds × sqrt(area).

    Raw probabilities saturate (0.98 vs 0.99999 look alike), log-odds do not: on deepface img41
    a blurred bystander's box (p = 0.983) is 3 % larger than the subject's (p = 0.99999), and
    ranking by size or by probability × size picks the bystander.  Among confident faces the
    larger (the subject, not the crowd behind) still wins.
    """
    p = min(max(detection.score, 1e-6), 1.0 - 1e-6)
    logit = min(float(np.log(p / (1.0 - p))), LOGIT_CAP)
    return max(logit, 0.0) * float(np.sqrt(max(detection.box.area, 1.0)))


class FaceDetector:
    """Wraps ``fr_detect.onnx``; ``detect`` returns faces sorted best first."""

    def __init__(
        self,
        model_path: Path | str,
        threads: int = 1,
        score_threshold: float = SCORE_THRESHOLD,
        nms_iou: float = NMS_IOU,
        pad_fraction: float = PAD_FRACTION,
    ) -> None:
        self._session = open_session(model_path, threads)
        self._input = check_contract(self._session, model_path, INPUT_SHAPE)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.pad_fraction = pad_fraction

    def raw(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face probabilities ``[4420]`` and boxes ``[4420, 4]`` (normalised to ``rgb``) for one image as given."""
        resized = cv2.resize(rgb, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=_interpolation(rgb.shape))
        tensor = ((resized.astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE).transpose(2, 0, 1)[None]
        scores, boxes = run(self._session, {self._input: np.ascontiguousarray(tensor)}, ["scores", "boxes"])
        return scores[0, :, 1], boxes[0]

    def detect(self, rgb: np.ndarray, score_threshold: float | None = None) -> list[Detection]:
        """Faces in an ``[H, W, 3]`` uint8 RGB image, best first (see :func:`rank_key`)."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        found = self._detect(rgb, threshold, self.pad_fraction)
        if not found and self.pad_fraction > 0:
            found = self._detect(rgb, threshold, 0.0)
        return found

    def _detect(self, rgb: np.ndarray, threshold: float, pad_fraction: float) -> list[Detection]:
        h, w = rgb.shape[:2]
        pad_x, pad_y = int(round(w * pad_fraction)), int(round(h * pad_fraction))
        padded = cv2.copyMakeBorder(rgb, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        scores, boxes = self.raw(padded)
        keep = np.flatnonzero(scores >= threshold)
        if keep.size == 0:
            return []
        keep = keep[np.argsort(-scores[keep])][:TOP_K]
        scale = np.array([padded.shape[1], padded.shape[0]] * 2, dtype=np.float32)
        pixel_boxes = boxes[keep] * scale - np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
        chosen = _nms(pixel_boxes, scores[keep], self.nms_iou)
        found = []
        for i in chosen:
            box = Box(*(float(v) for v in pixel_boxes[i])).clipped(w, h)
            if box.width >= MIN_FACE_PX and box.height >= MIN_FACE_PX:
                found.append(Detection(box=box, score=float(scores[keep][i])))
        found.sort(key=rank_key, reverse=True)
        return found


def _interpolation(shape: tuple[int, ...]) -> int:
    return cv2.INTER_AREA if shape[1] > INPUT_WIDTH or shape[0] > INPUT_HEIGHT else cv2.INTER_LINEAR


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression by IoU; ``boxes`` ``[N, 4]`` corners, highest score kept first."""
    order = np.argsort(-scores)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    kept: list[int] = []
    while order.size:
        i = int(order[0])
        kept.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou < iou_threshold]
    return kept
