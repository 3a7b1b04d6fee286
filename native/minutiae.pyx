# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Minutiae matcher kernel: MCC local similarities, seed alignments, greedy consolidation, overlap-aware normalisation.

Computes exactly what ``native.finger_reference.match`` defines (same operations in the same
order, so the same float64 score); the tests compare both on real template pairs.  Runs
without the GIL, so concurrent 1:N re-ranking threads do not serialise here.
"""

import numpy as np

from libc.math cimport sqrt, cos, sin, fmod, fabs, M_PI
from libc.stdlib cimport malloc, free, qsort
from libc.stdint cimport uint64_t, int64_t


cdef extern from *:
    int __builtin_popcountll(unsigned long long) nogil


ctypedef struct Candidate:
    double weight
    int p
    int q


cdef inline double _angle_diff(double a, double b) noexcept nogil:
    # (a − b) wrapped to [−π, π), as numpy.mod does it.
    cdef double two_pi = 2.0 * M_PI
    cdef double m = fmod(a - b + M_PI, two_pi)
    if m != 0.0 and m < 0.0:
        m += two_pi
    return m - M_PI


cdef int _by_weight(const void* left, const void* right) noexcept nogil:
    # Descending weight, then ascending (p, q): the reference's sort key.
    cdef const Candidate* l = <const Candidate*>left
    cdef const Candidate* r = <const Candidate*>right
    if l.weight > r.weight:
        return -1
    if l.weight < r.weight:
        return 1
    if l.p != r.p:
        return -1 if l.p < r.p else 1
    if l.q != r.q:
        return -1 if l.q < r.q else 1
    return 0


cdef void _local_similarities(
    const uint64_t[:, :] abits, const uint64_t[:, :] avalid, const double[:] at,
    const uint64_t[:, :] bbits, const uint64_t[:, :] bvalid, const double[:] bt,
    double max_dir, double min_common, double* out,
) noexcept nogil:
    cdef Py_ssize_t na = abits.shape[0], nb = bbits.shape[0], words = abits.shape[1]
    cdef Py_ssize_t i, j, w
    cdef long nc, ca, cb, xo
    cdef uint64_t common
    for i in range(na):
        for j in range(nb):
            out[i * nb + j] = 0.0
            if fabs(_angle_diff(at[i], bt[j])) > max_dir:
                continue
            nc = 0
            ca = 0
            cb = 0
            xo = 0
            for w in range(words):
                common = avalid[i, w] & bvalid[j, w]
                nc += __builtin_popcountll(common)
                ca += __builtin_popcountll(abits[i, w] & common)
                cb += __builtin_popcountll(bbits[j, w] & common)
                xo += __builtin_popcountll((abits[i, w] ^ bbits[j, w]) & common)
            if nc < min_common or ca + cb == 0:
                continue
            out[i * nb + j] = 1.0 - sqrt(<double>xo) / (sqrt(<double>ca) + sqrt(<double>cb))


def match(
    const double[:] ax, const double[:] ay, const double[:] at, const uint64_t[:, :] abits, const uint64_t[:, :] avalid,
    const double[:] bx, const double[:] by, const double[:] bt, const uint64_t[:, :] bbits, const uint64_t[:, :] bvalid,
    int seeds, double dist_tol, double dist_growth, double angle_tol, double max_dir, double min_common,
    int min_count, double geometry_weight, double overlap_radius, double overlap_blend,
):
    """Raw score of A against B; see ``native.finger_reference`` for the definition."""
    cdef Py_ssize_t na = ax.shape[0], nb = bx.shape[0]
    if na == 0 or nb == 0:
        return 0.0
    if abits.shape[1] != bbits.shape[1] or abits.shape[0] != na or bbits.shape[0] != nb:
        raise ValueError("cylinder arrays do not match the minutiae arrays")
    cdef double* sim = <double*>malloc(na * nb * sizeof(double))
    cdef Candidate* cand = <Candidate*>malloc(na * nb * sizeof(Candidate))
    cdef Candidate* top = <Candidate*>malloc((seeds + 1) * sizeof(Candidate))
    cdef char* used_a = <char*>malloc(na)
    cdef char* used_b = <char*>malloc(nb)
    cdef char* near_a = <char*>malloc(na)
    cdef char* near_b = <char*>malloc(nb)
    if sim == NULL or cand == NULL or top == NULL or used_a == NULL or used_b == NULL or near_a == NULL or near_b == NULL:
        free(sim); free(cand); free(top); free(used_a); free(used_b); free(near_a); free(near_b)
        raise MemoryError()
    cdef Py_ssize_t i, j, p, q, k, n_top = 0, n_cand, ov_a, ov_b
    cdef double best = 0.0, evidence, dtheta, c, s, rx, ry, tx, ty, tol, tol2, tt, dx, dy, value, d2
    cdef double fa, fb, ea, eb, score
    cdef double ov2 = overlap_radius * overlap_radius
    with nogil:
        _local_similarities(abits, avalid, at, bbits, bvalid, bt, max_dir, min_common, sim)
        # Seeds: the best `seeds` pairs; strict comparison keeps earlier (i, j) first on ties.
        for i in range(na):
            for j in range(nb):
                value = sim[i * nb + j]
                if value <= 0.0:
                    continue
                if n_top == seeds and value <= top[n_top - 1].weight:
                    continue
                k = n_top if n_top < seeds else seeds - 1
                while k > 0 and top[k - 1].weight < value:
                    top[k] = top[k - 1]
                    k -= 1
                top[k].weight = value
                top[k].p = <int>i
                top[k].q = <int>j
                if n_top < seeds:
                    n_top += 1
        for k in range(n_top):
            i = top[k].p
            j = top[k].q
            dtheta = _angle_diff(bt[j], at[i])
            c = cos(dtheta)
            s = sin(dtheta)
            n_cand = 0
            for p in range(na):
                used_a[p] = 0
                near_a[p] = 0
            for q in range(nb):
                used_b[q] = 0
                near_b[q] = 0
            for p in range(na):
                rx = ax[p] - ax[i]
                ry = ay[p] - ay[i]
                tx = bx[j] + (c * rx - s * ry)
                ty = by[j] + (s * rx + c * ry)
                tol = dist_tol + dist_growth * sqrt(rx * rx + ry * ry)
                tol2 = tol * tol
                tt = at[p] + dtheta
                for q in range(nb):
                    dx = tx - bx[q]
                    dy = ty - by[q]
                    d2 = dx * dx + dy * dy
                    if d2 <= ov2:
                        near_a[p] = 1
                        near_b[q] = 1
                    if d2 > tol2:
                        continue
                    if fabs(_angle_diff(tt, bt[q])) > angle_tol:
                        continue
                    cand[n_cand].weight = sim[p * nb + q] + geometry_weight
                    cand[n_cand].p = <int>p
                    cand[n_cand].q = <int>q
                    n_cand += 1
            qsort(cand, n_cand, sizeof(Candidate), _by_weight)
            evidence = 0.0
            for p in range(n_cand):
                if used_a[cand[p].p] or used_b[cand[p].q]:
                    continue
                used_a[cand[p].p] = 1
                used_b[cand[p].q] = 1
                evidence += cand[p].weight
            ov_a = 0
            ov_b = 0
            for p in range(na):
                ov_a += near_a[p]
            for q in range(nb):
                ov_b += near_b[q]
            # Minutiae counts to normalise by: those in the overlap of the two prints under this
            # alignment, blended with the totals, clamped from below.
            ea = overlap_blend * ov_a + (1.0 - overlap_blend) * na
            eb = overlap_blend * ov_b + (1.0 - overlap_blend) * nb
            fa = ea if ea > min_count else <double>min_count
            fb = eb if eb > min_count else <double>min_count
            score = 100.0 * evidence * evidence / (fa * fb)
            if score > best:
                best = score
    free(sim); free(cand); free(top); free(used_a); free(used_b); free(near_a); free(near_b)
    return best


def similarity_matrix(
    const uint64_t[:, :] abits, const uint64_t[:, :] avalid, const double[:] at,
    const uint64_t[:, :] bbits, const uint64_t[:, :] bvalid, const double[:] bt,
    double max_dir, double min_common,
):
    """The local-similarity matrix alone (for tests and diagnostics)."""
    out = np.zeros((abits.shape[0], bbits.shape[0]), dtype=np.float64)
    cdef double[:, ::1] view = out
    if out.size:
        with nogil:
            _local_similarities(abits, avalid, at, bbits, bvalid, bt, max_dir, min_common, &view[0, 0])
    return out
