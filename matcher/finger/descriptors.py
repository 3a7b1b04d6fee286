"""Minutia Cylinder-Code (Cappelli, Ferrara & Maltoni, IEEE TPAMI 2010), bit version.

Each minutia gets a cylinder of 16×16 spatial cells × 6 direction cells (1,536 bits) centred on
it and rotated with it, so the descriptor is invariant to translation and rotation of the
print.  A bit is set when the neighbours near that cell, with that relative direction, add up
to more than μψ; a cell is *valid* when it lies within radius R and inside the convex hull of
the print's minutiae grown by Ω — cells outside it carry no evidence either way, and the
similarity compares only cells valid in both cylinders.

Parameters are the paper's (R = 70, NS = 16, ND = 6, σS = 28/3, σD = 2π/9, μψ = 0.01, Ω = 50,
minVC = 0.75, minM = 2), for 500-dpi coordinates.  Coordinates are turned y-up internally
because angles are counter-clockwise on screen (the template's convention).

``prepare_reference`` defines the cylinders in NumPy; ``prepare`` computes the same bits with
the Cython kernel ``native.cylinders`` (≈ 10× faster, without the GIL, so bulk enrolment
prepares on every core).  The two agree bit for bit: the kernel sums each cell's neighbours in
the reference's order, and the few cells whose value lies within 1e-10 of μψ — where NumPy's
vectorised ``exp`` and libm's could round apart — are recomputed the reference's way
(``tests/native/test_cylinders.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from matcher.finger.template import ANGLE_UNIT as _ANGLE_UNIT  # private here: module constants are score provenance
from matcher.finger.template import FingerTemplate

RADIUS = 70.0
NS = 16
ND = 6
SIGMA_S = 28.0 / 3.0
SIGMA_D = 2.0 * math.pi / 9.0
MU_PSI = 0.01
OMEGA = 50.0
MIN_VALID_CELLS = 0.75
MIN_NEIGHBOURS = 2
CELLS = NS * NS
BITS = CELLS * ND
WORDS = BITS // 64  # uint64 words per cylinder
DELTA_S = 2.0 * RADIUS / NS
DELTA_D = 2.0 * math.pi / ND


@dataclass(frozen=True, eq=False)
class PreparedTemplate:
    """A template ready for matching: minutiae (y-up floats) and their cylinders, packed in uint64.

    Only minutiae with a valid cylinder are kept (others carry too little neighbourhood to
    compare); ``source`` indexes them in the original template.
    """

    x: np.ndarray  # float64 [n]
    y: np.ndarray  # float64 [n], y-up (= −row)
    theta: np.ndarray  # float64 [n], radians
    bits: np.ndarray  # uint64 [n, WORDS]
    valid: np.ndarray  # uint64 [n, WORDS]
    bit_counts: np.ndarray  # int32 [n], popcount(bits)
    source: np.ndarray  # int32 [n]
    total: int  # minutiae in the original template
    cells: np.ndarray | None = None  # uint8 [n, CELLS/8]: cell validity, bit c (little-endian) = cell c; from ``valid`` if None

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    def cell_mask(self) -> np.ndarray:
        """``uint8 [n, CELLS/8]``: one validity bit per spatial cell (``valid`` repeats each over its ND direction bits)."""
        if self.cells is not None:
            return self.cells
        per_bit = np.unpackbits(np.ascontiguousarray(self.valid).view(np.uint8).reshape(self.size, BITS // 8), axis=1, bitorder="little")
        return np.packbits(per_bit[:, ::ND], axis=1, bitorder="little")

    def angle_codes(self) -> np.ndarray:
        """``uint8 [n]``: the ISO angle codes the angles came from (θ = code · 2π/256)."""
        return np.mod(np.rint(self.theta / _ANGLE_UNIT), 256).astype(np.uint8)

    def index_codes(self) -> np.ndarray:
        """``uint8 [n, BITS/8]``: the cylinders as FAISS binary codes (invalid cells read as 0)."""
        return np.ascontiguousarray(self.bits).view(np.uint8).reshape(self.size, BITS // 8)


def _cell_offsets() -> np.ndarray:
    idx = np.arange(NS, dtype=np.float64) - (NS - 1) / 2.0
    ii, jj = np.meshgrid(idx, idx, indexing="xy")
    return np.stack([ii.ravel(), jj.ravel()], axis=1) * DELTA_S  # [CELLS, 2]


_OFFSETS = _cell_offsets()
_DIR_CENTRES = -math.pi + (np.arange(ND) + 0.5) * DELTA_D


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a − b wrapped to [−π, π)."""
    return np.mod(a - b + math.pi, 2 * math.pi) - math.pi


def _hull_distance(x: np.ndarray, y_down: np.ndarray, width: int, height: int):
    """A function (px, py_down) → distance outside the minutiae's convex hull (0 inside)."""
    pad = int(OMEGA + RADIUS + 2)
    canvas = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
    pts = np.stack([x + pad, y_down + pad], axis=1).astype(np.int32)
    if len(pts) >= 3:
        cv2.fillConvexPoly(canvas, cv2.convexHull(pts), 1)
    else:
        canvas[pts[:, 1], pts[:, 0]] = 1
    dist = cv2.distanceTransform((1 - canvas).astype(np.uint8), cv2.DIST_L2, 3)

    def lookup(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        cx = np.clip(np.rint(px).astype(np.intp) + pad, 0, canvas.shape[1] - 1)
        cy = np.clip(np.rint(py).astype(np.intp) + pad, 0, canvas.shape[0] - 1)
        return dist[cy, cx]

    return lookup


def _erf(v: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(v)


# The kernel's hull canvas: the hull's bounding box and this margin; farther out the (chamfer,
# 0.955 px per straight step) distance exceeds Ω, so a cell there is invalid without looking.
_HULL_MARGIN = int(math.ceil(OMEGA / 0.955)) + 4
_IN_RADIUS = (np.hypot(_OFFSETS[:, 0], _OFFSETS[:, 1]) <= RADIUS).astype(np.uint8)
_AMBIGUOUS = 1e-10  # |value − μψ| below this: recomputed the reference's way (an ulp of exp moves a value ≪ this)


def _hull_canvas(x: np.ndarray, y_down: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``_hull_distance``'s distances on the hull's bounding box grown by ``_HULL_MARGIN``, and its origin.

    A chamfer distance transform's value at a pixel is its shortest step path to the hull, which
    stays in the box of the two: within the crop every value is the full canvas's.
    """
    xi, yi = x.astype(np.int64), y_down.astype(np.int64)
    ox, oy = int(xi.min()) - _HULL_MARGIN, int(yi.min()) - _HULL_MARGIN
    w, h = int(xi.max()) - ox + _HULL_MARGIN + 1, int(yi.max()) - oy + _HULL_MARGIN + 1
    canvas = np.zeros((h, w), np.uint8)
    pts = np.stack([xi - ox, yi - oy], axis=1).astype(np.int32)
    if len(pts) >= 3:
        cv2.fillConvexPoly(canvas, cv2.convexHull(pts), 1)
    else:
        canvas[pts[:, 1], pts[:, 0]] = 1
    return cv2.distanceTransform((1 - canvas).astype(np.uint8), cv2.DIST_L2, 3), ox, oy


def _reference_value(x, y, theta, cos, sin, m: int, c: int, k: int) -> float:
    """One cell value exactly as ``prepare_reference`` computes it (NumPy's exp, math.erf, sum in neighbour order)."""
    cx = x[m] + cos[m] * _OFFSETS[c, 0] - sin[m] * _OFFSETS[c, 1]
    cy = y[m] + sin[m] * _OFFSETS[c, 0] + cos[m] * _OFFSETS[c, 1]
    dx, dy = cx - x, cy - y
    dist2 = dx * dx + dy * dy
    spatial = np.exp(-dist2 / (2 * SIGMA_S**2)) / (SIGMA_S * math.sqrt(2 * math.pi))
    spatial[dist2 > (3 * SIGMA_S) ** 2] = 0.0
    spatial[m] = 0.0
    rel = _angle_diff(theta[m], theta)
    d = _angle_diff(_DIR_CENTRES[k], rel)
    half = DELTA_D / 2.0
    directional = 0.5 * (_erf((d + half) / (SIGMA_D * math.sqrt(2))) - _erf((d - half) / (SIGMA_D * math.sqrt(2))))
    value = 0.0
    for s_t, d_t in zip(spatial.tolist(), directional.tolist()):
        value += s_t * d_t
    return value


def prepare(template: FingerTemplate) -> PreparedTemplate:
    """``prepare_reference``'s cylinders, bit for bit, by the Cython kernel (``native.cylinders``; releases the GIL)."""
    from native import cylinders as _cylinders

    n = template.size
    x = template.x.astype(np.float64)
    y_down = template.y.astype(np.float64)
    y = -y_down
    theta = template.theta
    if n == 0:
        return prepare_reference(template)
    cos, sin = np.cos(theta), np.sin(theta)
    dist, ox, oy = _hull_canvas(x, y_down)
    bits, valid, cells, valid_counts, counts, ambiguous = _cylinders.cylinders(
        x, y, theta, cos, sin, _OFFSETS, _IN_RADIUS, _DIR_CENTRES, dist, ox, oy,
        OMEGA, 2 * SIGMA_S**2, SIGMA_S * math.sqrt(2 * math.pi), (3 * SIGMA_S) ** 2,
        DELTA_D / 2.0, SIGMA_D * math.sqrt(2), MU_PSI, _AMBIGUOUS,
    )
    if len(ambiguous):
        flat = bits.view(np.uint8).reshape(n, BITS // 8)
        for m, c, k in ambiguous.tolist():
            b = c * ND + k
            on = _reference_value(x, y, theta, cos, sin, m, c, k) >= MU_PSI
            if on != bool((flat[m, b >> 3] >> (b & 7)) & 1):
                flat[m, b >> 3] ^= np.uint8(1 << (b & 7))
                counts[m] += 1 if on else -1
    neighbour = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) <= RADIUS + 3 * SIGMA_S
    neighbours = neighbour.sum(axis=1) - 1
    keep = (valid_counts >= MIN_VALID_CELLS * _IN_RADIUS.sum()) & (neighbours >= MIN_NEIGHBOURS)
    source = np.flatnonzero(keep).astype(np.int32)
    return PreparedTemplate(
        np.ascontiguousarray(x[keep]), np.ascontiguousarray(y[keep]), np.ascontiguousarray(theta[keep]),
        np.ascontiguousarray(bits[keep]), np.ascontiguousarray(valid[keep]), counts[keep], source, n,
        np.ascontiguousarray(cells[keep]),
    )


def prepare_reference(template: FingerTemplate) -> PreparedTemplate:
    """Cylinders of every minutia with enough valid neighbourhood; see the module docstring (the NumPy reference)."""
    n = template.size
    x = template.x.astype(np.float64)
    y_down = template.y.astype(np.float64)
    y = -y_down
    theta = template.theta
    if n == 0:
        empty = np.zeros((0, WORDS), np.uint64)
        return PreparedTemplate(x, y, theta, empty, empty.copy(), np.zeros(0, np.int32), np.zeros(0, np.int32), 0)
    cos, sin = np.cos(theta), np.sin(theta)
    # Cell centres, rotated with each minutia (y-up frame): [n, CELLS]
    cx = x[:, None] + cos[:, None] * _OFFSETS[None, :, 0] - sin[:, None] * _OFFSETS[None, :, 1]
    cy = y[:, None] + sin[:, None] * _OFFSETS[None, :, 0] + cos[:, None] * _OFFSETS[None, :, 1]
    in_radius = np.hypot(_OFFSETS[:, 0], _OFFSETS[:, 1]) <= RADIUS  # [CELLS]
    hull = _hull_distance(x, y_down, template.width, template.height)
    valid_cells = in_radius[None, :] & (hull(cx, -cy) <= OMEGA)  # [n, CELLS]

    # Spatial contribution of neighbour t to cell c of minutia m: Gaussian of the distance.
    dx = cx[:, :, None] - x[None, None, :]
    dy = cy[:, :, None] - y[None, None, :]
    dist2 = dx * dx + dy * dy  # [n, CELLS, n]
    spatial = np.exp(-dist2 / (2 * SIGMA_S**2)) / (SIGMA_S * math.sqrt(2 * math.pi))
    spatial[dist2 > (3 * SIGMA_S) ** 2] = 0.0
    spatial[np.arange(n), :, np.arange(n)] = 0.0  # a minutia does not describe itself
    # Directional contribution: area of the Gaussian of the relative direction over each cell.
    rel = _angle_diff(theta[:, None], theta[None, :])  # [m, t]
    d = _angle_diff(_DIR_CENTRES[None, None, :], rel[:, :, None])  # [m, t, ND]
    half = DELTA_D / 2.0
    directional = 0.5 * (_erf((d + half) / (SIGMA_D * math.sqrt(2))) - _erf((d - half) / (SIGMA_D * math.sqrt(2))))
    value = np.einsum("mct,mtk->mck", spatial, directional)  # [n, CELLS, ND]
    on = (value >= MU_PSI) & valid_cells[:, :, None]

    neighbour = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) <= RADIUS + 3 * SIGMA_S
    neighbours = neighbour.sum(axis=1) - 1
    keep = (valid_cells.sum(axis=1) >= MIN_VALID_CELLS * in_radius.sum()) & (neighbours >= MIN_NEIGHBOURS)

    bits = np.packbits(on[keep].reshape(-1, BITS), axis=1, bitorder="little").view(np.uint64)
    valid = np.packbits(np.repeat(valid_cells[keep], ND, axis=1), axis=1, bitorder="little").view(np.uint64)
    cells = np.packbits(valid_cells[keep], axis=1, bitorder="little")
    counts = np.unpackbits(bits.view(np.uint8), axis=1).sum(axis=1).astype(np.int32)
    source = np.flatnonzero(keep).astype(np.int32)
    return PreparedTemplate(
        np.ascontiguousarray(x[keep]), np.ascontiguousarray(y[keep]), np.ascontiguousarray(theta[keep]),
        np.ascontiguousarray(bits), np.ascontiguousarray(valid), counts, source, n, cells,
    )
