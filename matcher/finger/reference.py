"""Pure-NumPy reference of the Cython minutiae matcher (``native/minutiae.pyx``), with the matcher's parameters.

Defines the score; the tests check that the Cython kernel returns the same value on real
template pairs.  Clear rather than fast (≈ 100× slower than the kernel).

Score of probe A against candidate B (both ``PreparedTemplate``-like: y-up x, y, θ, packed
MCC bits, validity, bit counts):

1. **Local similarity** of every minutia pair: the binary MCC similarity
   ``1 − √|a⊕b| / (√|a| + √|b|)`` over the cells valid in both cylinders, or 0 when the
   minutiae directions differ by more than π/2 or fewer than 60 % of the cells are comparable.
2. **Seeds**: the ``SEEDS`` most similar pairs (ties by index), each one a candidate alignment
   (the rotation and translation that puts the seed's A minutia on its B minutia).
3. **Consolidation**: under each alignment, pairs (a, b) that land within ``DIST_TOL`` px (more
   far from the seed: skin stretches) and ``ANGLE_TOL`` of direction are paired one-to-one,
   greedily by local similarity; the alignment's evidence S is the sum of the paired similarities.
4. **Score** of each alignment: ``100 · S² / (nA · nB)``, with nA, nB the minutiae counts to
   expect in common — ``OVERLAP_BLEND`` of the way from the template's total to the number of
   its minutiae that have a minutia of the other print within ``OVERLAP_RADIUS`` px under this
   alignment (i.e. lie in the overlap of the two prints) — clamped from below by ``MIN_COUNT``
   so that a few strong pairs between small templates do not outrank many pairs between large
   ones.  Minutiae outside the overlap cannot be paired, so counting them all penalised genuine
   pairs of prints that overlap little; counting only the overlap would let an impostor with a
   tiny chance overlap score high, hence the blend.  The match score is the best alignment's.
"""

from __future__ import annotations

import math

import numpy as np

from matcher.finger.parameters import (
    ANGLE_TOL,
    CELLS_IN_RADIUS_BITS,
    DIST_GROWTH,
    DIST_TOL,
    GEOMETRY_WEIGHT,
    MAX_DIRECTION_DIFF,
    MIN_COMMON_FRACTION,
    MIN_COUNT,
    OVERLAP_BLEND,
    OVERLAP_RADIUS,
    SEEDS,
)

def _popcount(words: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=-1).sum(axis=-1).astype(np.int64)


def angle_diff(a, b):
    return np.mod(a - b + math.pi, 2 * math.pi) - math.pi


def local_similarities(a, b) -> np.ndarray:
    """``float64 [nA, nB]`` binary MCC similarities (step 1)."""
    na, nb = a.size, b.size
    out = np.zeros((na, nb), dtype=np.float64)
    min_common = MIN_COMMON_FRACTION * CELLS_IN_RADIUS_BITS
    for i in range(na):
        common = a.valid[i][None, :] & b.valid  # [nB, W]
        nc = _popcount(common)
        ca = _popcount(a.bits[i][None, :] & common)
        cb = _popcount(b.bits & common)
        xo = _popcount((a.bits[i][None, :] ^ b.bits) & common)
        dir_ok = np.abs(angle_diff(a.theta[i], b.theta)) <= MAX_DIRECTION_DIFF
        for j in range(nb):
            if not dir_ok[j] or nc[j] < min_common or ca[j] + cb[j] == 0:
                continue
            out[i, j] = 1.0 - math.sqrt(float(xo[j])) / (math.sqrt(float(ca[j])) + math.sqrt(float(cb[j])))
    return out


def seed_pairs(sim: np.ndarray, seeds: int = SEEDS) -> list[tuple[int, int]]:
    """The ``seeds`` most similar pairs with similarity > 0, ties broken by (a, b)."""
    na, nb = sim.shape
    flat = [(-sim[i, j], i, j) for i in range(na) for j in range(nb) if sim[i, j] > 0.0]
    flat.sort()
    return [(i, j) for _, i, j in flat[:seeds]]


def consolidate(a, b, sim: np.ndarray, i: int, j: int) -> tuple[float, int, int, int]:
    """(evidence, pairs, A in overlap, B in overlap) of the alignment mapping minutia i of A onto j of B."""
    dtheta = float(angle_diff(b.theta[j], a.theta[i]))
    c, s = math.cos(dtheta), math.sin(dtheta)
    overlap2 = OVERLAP_RADIUS * OVERLAP_RADIUS
    near_a, near_b = set(), set()
    candidates = []
    for p in range(a.size):
        rx, ry = a.x[p] - a.x[i], a.y[p] - a.y[i]
        tx = b.x[j] + (c * rx - s * ry)
        ty = b.y[j] + (s * rx + c * ry)
        tol = DIST_TOL + DIST_GROWTH * math.sqrt(rx * rx + ry * ry)
        tol2 = tol * tol
        tt = a.theta[p] + dtheta
        for q in range(b.size):
            dx, dy = tx - b.x[q], ty - b.y[q]
            d2 = dx * dx + dy * dy
            if d2 <= overlap2:
                near_a.add(p)
                near_b.add(q)
            if d2 > tol2:
                continue
            if abs(float(angle_diff(tt, b.theta[q]))) > ANGLE_TOL:
                continue
            candidates.append((-(sim[p, q] + GEOMETRY_WEIGHT), p, q))
    candidates.sort()
    used_a, used_b = set(), set()
    evidence, pairs = 0.0, 0
    for negw, p, q in candidates:
        if p in used_a or q in used_b:
            continue
        used_a.add(p)
        used_b.add(q)
        evidence += -negw
        pairs += 1
    return evidence, pairs, len(near_a), len(near_b)


def final_score(evidence: float, na: int, nb: int, overlap_a: int, overlap_b: int) -> float:
    ea = OVERLAP_BLEND * overlap_a + (1.0 - OVERLAP_BLEND) * na
    eb = OVERLAP_BLEND * overlap_b + (1.0 - OVERLAP_BLEND) * nb
    fa = ea if ea > MIN_COUNT else float(MIN_COUNT)
    fb = eb if eb > MIN_COUNT else float(MIN_COUNT)
    return 100.0 * evidence * evidence / (fa * fb)


def match(a, b) -> float:
    """The matcher's raw score of A against B (0 = nothing in common; higher = more alike)."""
    if a.size == 0 or b.size == 0:
        return 0.0
    sim = local_similarities(a, b)
    best = 0.0
    for i, j in seed_pairs(sim):
        evidence, _, overlap_a, overlap_b = consolidate(a, b, sim, i, j)
        score = final_score(evidence, a.size, b.size, overlap_a, overlap_b)
        if score > best:
            best = score
    return best
