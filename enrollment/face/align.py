"""Geometry: boxes, crops, and the similarity warp to the 112×112 ArcFace template.

The embedder was trained on faces warped so that eyes, nose tip and mouth corners land on fixed
points; how well we hit those points matters more than any other step after detection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

ALIGNED_SIZE = 112
# Left eye, right eye, nose tip, left mouth corner, right mouth corner, in the 112×112 crop
# (the template faceplugin's fr_feature.js and insightface use).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

# iBUG 68-point indices (0-based).
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP = 30
MOUTH_LEFT = 48
MOUTH_RIGHT = 54


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of some image: ``x1, y1`` inclusive corner, ``x2, y2`` exclusive."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    def square(self, scale: float = 1.0) -> "Box":
        """Square of side ``height × scale`` about the centre.

        faceplugin's JS turns every detection into this square before cropping for the landmark,
        liveness and pose models, so their training crops looked like this.
        """
        cx, cy = self.centre
        half = self.height * scale / 2.0
        return Box(cx - half, cy - half, cx + half, cy + half)

    def shifted(self, dx: float, dy: float) -> "Box":
        return Box(self.x1 + dx, self.y1 + dy, self.x2 + dx, self.y2 + dy)

    def clipped(self, width: int, height: int) -> "Box":
        return Box(
            min(max(self.x1, 0.0), float(width)),
            min(max(self.y1, 0.0), float(height)),
            min(max(self.x2, 0.0), float(width)),
            min(max(self.y2, 0.0), float(height)),
        )

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


def crop_resized(image: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """Crop ``box`` (may extend past the image: the outside is black) and resize to ``size`` = (w, h).

    Padding instead of clipping keeps the crop's geometry exact, so outputs normalised to the box
    map back to the right pixels.  Shrinking uses area interpolation to avoid aliasing.
    """
    h, w = image.shape[:2]
    x1, y1 = int(np.floor(box.x1)), int(np.floor(box.y1))
    x2, y2 = int(np.ceil(box.x2)), int(np.ceil(box.y2))
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 <= sx1 or sy2 <= sy1:
        return np.zeros((size[1], size[0]) + image.shape[2:], dtype=image.dtype)
    crop = image[sy1:sy2, sx1:sx2]
    if (sx1, sy1, sx2, sy2) != (x1, y1, x2, y2):
        crop = cv2.copyMakeBorder(
            crop, sy1 - y1, y2 - sy2, sx1 - x1, x2 - sx2, cv2.BORDER_CONSTANT, value=0
        )
    shrinking = crop.shape[1] > size[0] or crop.shape[0] > size[1]
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """ArcFace's five points from iBUG 68 landmarks: eye centres, nose tip, mouth corners."""
    points = np.asarray(landmarks, dtype=np.float32).reshape(68, 2)
    return np.stack(
        [
            points[LEFT_EYE].mean(axis=0),
            points[RIGHT_EYE].mean(axis=0),
            points[NOSE_TIP],
            points[MOUTH_LEFT],
            points[MOUTH_RIGHT],
        ]
    ).astype(np.float32)


def similarity_to_template(points: np.ndarray, template: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """2×3 similarity transform (rotation, uniform scale, translation) taking ``points`` to ``template``.

    ``cv2.estimateAffinePartial2D`` with LMEDS: with five points a single bad landmark (an
    occluded mouth corner) is outvoted instead of dragging the whole fit; the result is refined
    on the inliers.
    """
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(points, dtype=np.float32).reshape(-1, 1, 2),
        np.asarray(template, dtype=np.float32).reshape(-1, 1, 2),
        method=cv2.LMEDS,
    )
    if matrix is None:  # degenerate points (all equal); fall back to least squares
        matrix = _umeyama(np.asarray(points, np.float64), np.asarray(template, np.float64))
    return matrix.astype(np.float64)


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991), used only when OpenCV gives up."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var = (s**2).sum() / len(src)
    if var == 0:
        scale, rot = 1.0, np.eye(2)
    else:
        u, sig, vt = np.linalg.svd(d.T @ s / len(src))
        fix = np.eye(2)
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            fix[1, 1] = -1
        rot = u @ fix @ vt
        scale = float((sig * np.diag(fix)).sum() / var)
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def warp_to_template(image: np.ndarray, points: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The ``size``×``size`` aligned crop for the embedder.

    When the face is larger than the crop (warp scale < 0.8), the image is first shrunk with area
    interpolation: a bilinear warp from a 1000-pixel face to 112 pixels aliases, and the
    embedder sees the difference (obama-1080p vs its 480p copy: cosine 0.994 with, 0.991 without).
    """
    matrix = similarity_to_template(points, ARCFACE_TEMPLATE * (size / ALIGNED_SIZE))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.8:
        # Region of the source that maps into the crop, with a margin, shrunk by ~1/scale.
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
        src = corners @ inverse.T
        margin = 2.0 / scale
        region = Box(src[:, 0].min() - margin, src[:, 1].min() - margin, src[:, 0].max() + margin, src[:, 1].max() + margin)
        factor = scale * 1.25  # keep a little more than the crop's resolution
        out_w = max(int(round(region.width * factor)), 1)
        out_h = max(int(round(region.height * factor)), 1)
        small = crop_resized(image, region, (out_w, out_h))
        fx, fy = out_w / region.width, out_h / region.height
        pre = np.array([[fx, 0, -region.x1 * fx], [0, fy, -region.y1 * fy]], dtype=np.float64)
        # matrix ∘ pre⁻¹ : small-image coordinates → crop.
        pre_inv = cv2.invertAffineTransform(pre)
        matrix = matrix[:, :2] @ pre_inv[:, :2], matrix[:, :2] @ pre_inv[:, 2] + matrix[:, 2]
        matrix = np.hstack([matrix[0], matrix[1][:, None]])
        image = small
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def inter_eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the eye centres, in the pixels of the image the landmarks refer to."""
    points = five_points(landmarks)
    return float(np.linalg.norm(points[1] - points[0]))


def clip_boxes(boxes: Sequence[Box], width: int, height: int) -> list[Box]:
    return [b.clipped(width, height) for b in boxes]
