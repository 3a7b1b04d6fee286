# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""MCC cylinders of one template without the GIL: what ``matcher.finger.descriptors.prepare_reference`` computes.

Same operations in the same order as the NumPy reference (cell centres, hull lookups, the
spatial Gaussian, the directional erf terms, the sum over neighbours in neighbour order), so
every cell value is the reference's up to the last bits of ``exp``: NumPy's vectorised ``exp``
(AVX-512 on this machine) and libm's may differ by an ulp.  A cell whose value lies within
``ambiguous`` of the threshold is therefore reported, and the caller recomputes it the NumPy
way (``matcher.finger.descriptors``); an ulp cannot move a value by 1e-10, so every other bit
is the reference's.  Only neighbours within 3σ of a cell add to it (the reference zeroes the
others), which makes the kernel ~n times cheaper than the dense reference.
"""

import numpy as np

from libc.math cimport exp, erf, rint, fmod, sqrt, M_PI
from libc.stdint cimport uint64_t, uint8_t, int32_t
from libc.stdlib cimport malloc, free

cdef extern from "stdlib.h":
    void* realloc(void* ptr, size_t size) nogil


cdef inline void* realloc_int(int32_t* ptr, Py_ssize_t count) noexcept nogil:
    return realloc(ptr, count * sizeof(int32_t))


cdef extern from *:
    int __builtin_popcountll(unsigned long long) nogil


cdef inline double _angle_diff(double a, double b) noexcept nogil:
    # (a − b) wrapped to [−π, π), as numpy.mod does it.
    cdef double two_pi = 2.0 * M_PI
    cdef double m = fmod(a - b + M_PI, two_pi)
    if m != 0.0 and m < 0.0:
        m += two_pi
    return m - M_PI


def cylinders(
    const double[::1] x, const double[::1] y, const double[::1] theta,
    const double[::1] cos_t, const double[::1] sin_t,
    const double[:, ::1] offsets, const uint8_t[::1] in_radius, const double[::1] dir_centres,
    const float[:, ::1] hull_distance, Py_ssize_t origin_x, Py_ssize_t origin_y,
    double omega, double spatial_divisor, double spatial_norm, double cutoff2,
    double half_cell, double erf_divisor, double mu_psi, double ambiguous,
):
    """(bits uint64 [n, words], valid uint64 [n, words], cells uint8 [n, cells/8], valid cell counts int32 [n],
    bit counts int32 [n], ambiguous int32 [k, 3] as (minutia, cell, direction)).

    ``hull_distance`` is the distance outside the minutiae's hull on a canvas whose pixel (0, 0)
    is image pixel (``origin_x``, ``origin_y``) (y down); a lookup outside the canvas is farther
    than ``omega``.
    """
    cdef Py_ssize_t n = x.shape[0], cells = offsets.shape[0], nd = dir_centres.shape[0]
    cdef Py_ssize_t bits_per = cells * nd, words = (bits_per + 63) // 64, cell_bytes = (cells + 7) // 8
    bits_arr = np.zeros((n, words), np.uint64)
    valid_arr = np.zeros((n, words), np.uint64)
    cells_arr = np.zeros((n, cell_bytes), np.uint8)
    valid_count_arr = np.zeros(n, np.int32)
    bit_count_arr = np.zeros(n, np.int32)
    cdef uint64_t[:, ::1] bits = bits_arr
    cdef uint64_t[:, ::1] valid = valid_arr
    cdef uint8_t[:, ::1] cellmask = cells_arr
    cdef int32_t[::1] valid_count = valid_count_arr
    cdef int32_t[::1] bit_count = bit_count_arr
    if n == 0:
        return bits_arr, valid_arr, cells_arr, valid_count_arr, bit_count_arr, np.zeros((0, 3), np.int32)
    cdef Py_ssize_t height = hull_distance.shape[0], width = hull_distance.shape[1]
    # directional[(m * n + t) * nd + k], computed on first use (flag per pair)
    cdef double* directional = <double*>malloc(n * n * nd * sizeof(double))
    cdef char* have = <char*>malloc(n * n)
    cdef double* acc = <double*>malloc(nd * sizeof(double))
    cdef Py_ssize_t cap = 64, n_amb = 0
    cdef int32_t* amb = <int32_t*>malloc(cap * 3 * sizeof(int32_t))
    cdef int32_t* grown
    # Per minutia, the neighbours (ascending) that can reach one of its cells: within the farthest
    # cell centre's distance plus the 3σ cutoff.  Others add nothing (the reference zeroes them).
    cdef int32_t* near = <int32_t*>malloc(n * n * sizeof(int32_t))
    cdef int32_t* n_near = <int32_t*>malloc(n * sizeof(int32_t))
    if directional == NULL or have == NULL or acc == NULL or amb == NULL or near == NULL or n_near == NULL:
        free(directional); free(have); free(acc); free(amb); free(near); free(n_near)
        raise MemoryError()
    cdef double reach = 0.0, reach2, r2
    cdef Py_ssize_t j, m, c, t, k, ix, iy, b
    for c in range(cells):
        r2 = offsets[c, 0] * offsets[c, 0] + offsets[c, 1] * offsets[c, 1]
        if in_radius[c] and r2 > reach:
            reach = r2
    reach = sqrt(reach) + sqrt(cutoff2) + 1.0
    reach2 = reach * reach
    cdef double cx, cy, dx, dy, d2, s, rel, d, v
    cdef bint ok, failed = False
    with nogil:
        for m in range(n * n):
            have[m] = 0
        for m in range(n):
            n_near[m] = 0
            for t in range(n):
                dx = x[m] - x[t]
                dy = y[m] - y[t]
                if t != m and dx * dx + dy * dy <= reach2:
                    near[m * n + n_near[m]] = <int32_t>t
                    n_near[m] += 1
        for m in range(n):
            for c in range(cells):
                cx = x[m] + cos_t[m] * offsets[c, 0] - sin_t[m] * offsets[c, 1]
                cy = y[m] + sin_t[m] * offsets[c, 0] + cos_t[m] * offsets[c, 1]
                ok = in_radius[c] != 0
                if ok:
                    ix = <Py_ssize_t>rint(cx) - origin_x
                    iy = <Py_ssize_t>rint(-cy) - origin_y
                    ok = 0 <= ix < width and 0 <= iy < height and hull_distance[iy, ix] <= omega
                if not ok:
                    continue
                cellmask[m, c >> 3] |= <uint8_t>(1 << (c & 7))
                valid_count[m] += 1
                for k in range(nd):
                    acc[k] = 0.0
                for j in range(n_near[m]):
                    t = near[m * n + j]
                    dx = cx - x[t]
                    dy = cy - y[t]
                    d2 = dx * dx + dy * dy
                    if d2 > cutoff2:
                        continue
                    s = exp(-d2 / spatial_divisor) / spatial_norm
                    if not have[m * n + t]:
                        have[m * n + t] = 1
                        rel = _angle_diff(theta[m], theta[t])
                        for k in range(nd):
                            d = _angle_diff(dir_centres[k], rel)
                            directional[(m * n + t) * nd + k] = 0.5 * (erf((d + half_cell) / erf_divisor) - erf((d - half_cell) / erf_divisor))
                    for k in range(nd):
                        acc[k] += s * directional[(m * n + t) * nd + k]
                for k in range(nd):
                    b = c * nd + k
                    valid[m, b >> 6] |= (<uint64_t>1) << (b & 63)
                    v = acc[k]
                    if v - mu_psi <= ambiguous and mu_psi - v <= ambiguous:
                        if n_amb == cap:
                            cap *= 2
                            grown = <int32_t*>realloc_int(amb, cap * 3)
                            if grown == NULL:
                                failed = True
                                break
                            amb = grown
                        amb[n_amb * 3] = <int32_t>m
                        amb[n_amb * 3 + 1] = <int32_t>c
                        amb[n_amb * 3 + 2] = <int32_t>k
                        n_amb += 1
                    if v >= mu_psi:
                        bits[m, b >> 6] |= (<uint64_t>1) << (b & 63)
                if failed:
                    break
            if failed:
                break
            for k in range(words):
                bit_count[m] += __builtin_popcountll(bits[m, k])
    ambiguous_arr = np.zeros((n_amb, 3), np.int32)
    cdef int32_t[:, ::1] av = ambiguous_arr
    for k in range(n_amb):
        av[k, 0] = amb[k * 3]
        av[k, 1] = amb[k * 3 + 1]
        av[k, 2] = amb[k * 3 + 2]
    free(directional); free(have); free(acc); free(amb); free(near); free(n_near)
    if failed:
        raise MemoryError()
    return bits_arr, valid_arr, cells_arr, valid_count_arr, bit_count_arr, ambiguous_arr


