# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Minutiae matcher kernel: MCC local similarities, seed alignments, greedy consolidation, overlap-aware normalisation.

Computes exactly what ``native.finger_reference.match`` defines (same operations in the same
order, so the same float64 score); the tests compare both on real template pairs.  Runs
without the GIL, so concurrent 1:N re-ranking threads do not serialise here.
"""

import numpy as np

from libc.math cimport sqrt, cos, sin, fmod, fabs, M_PI
from libc.stdlib cimport malloc, free, qsort
from libc.stdint cimport uint64_t, int64_t, int32_t, uint16_t, uint8_t
from libc.string cimport memcpy


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


ctypedef struct Params:
    int seeds
    double dist_tol
    double dist_growth
    double angle_tol
    double max_dir
    double min_common
    int min_count
    double geometry_weight
    double overlap_radius
    double overlap_blend


cdef void _local_similarities(
    Py_ssize_t na, const uint64_t* abits, const uint64_t* avalid, const double* at,
    Py_ssize_t nb, const uint64_t* bbits, const uint64_t* bvalid, const double* bt,
    Py_ssize_t words, double max_dir, double min_common, double* out,
) noexcept nogil:
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
                common = avalid[i * words + w] & bvalid[j * words + w]
                nc += __builtin_popcountll(common)
                ca += __builtin_popcountll(abits[i * words + w] & common)
                cb += __builtin_popcountll(bbits[j * words + w] & common)
                xo += __builtin_popcountll((abits[i * words + w] ^ bbits[j * words + w]) & common)
            if nc < min_common or ca + cb == 0:
                continue
            out[i * nb + j] = 1.0 - sqrt(<double>xo) / (sqrt(<double>ca) + sqrt(<double>cb))


cdef double _match(
    Py_ssize_t na, const double* ax, const double* ay, const double* at, const uint64_t* abits, const uint64_t* avalid,
    Py_ssize_t nb, const double* bx, const double* by, const double* bt, const uint64_t* bbits, const uint64_t* bvalid,
    Py_ssize_t words, const Params* prm,
) noexcept nogil:
    """The score; −1 when out of memory."""
    if na == 0 or nb == 0:
        return 0.0
    cdef int seeds = prm.seeds
    cdef double* sim = <double*>malloc(na * nb * sizeof(double))
    cdef Candidate* cand = <Candidate*>malloc(na * nb * sizeof(Candidate))
    cdef Candidate* top = <Candidate*>malloc((seeds + 1) * sizeof(Candidate))
    cdef char* used_a = <char*>malloc(na)
    cdef char* used_b = <char*>malloc(nb)
    cdef char* near_a = <char*>malloc(na)
    cdef char* near_b = <char*>malloc(nb)
    if sim == NULL or cand == NULL or top == NULL or used_a == NULL or used_b == NULL or near_a == NULL or near_b == NULL:
        free(sim); free(cand); free(top); free(used_a); free(used_b); free(near_a); free(near_b)
        return -1.0
    cdef Py_ssize_t i, j, p, q, k, n_top = 0, n_cand, ov_a, ov_b
    cdef double best = 0.0, evidence, dtheta, c, s, rx, ry, tx, ty, tol, tol2, tt, dx, dy, value, d2
    cdef double fa, fb, ea, eb, score
    cdef double ov2 = prm.overlap_radius * prm.overlap_radius
    cdef double dist_tol = prm.dist_tol, dist_growth = prm.dist_growth, angle_tol = prm.angle_tol
    cdef double geometry_weight = prm.geometry_weight, overlap_blend = prm.overlap_blend
    cdef int min_count = prm.min_count
    _local_similarities(na, abits, avalid, at, nb, bbits, bvalid, bt, words, prm.max_dir, prm.min_common, sim)
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


cdef Params _params(int seeds, double dist_tol, double dist_growth, double angle_tol, double max_dir, double min_common,
                    int min_count, double geometry_weight, double overlap_radius, double overlap_blend):
    cdef Params prm
    prm.seeds = seeds
    prm.dist_tol = dist_tol
    prm.dist_growth = dist_growth
    prm.angle_tol = angle_tol
    prm.max_dir = max_dir
    prm.min_common = min_common
    prm.min_count = min_count
    prm.geometry_weight = geometry_weight
    prm.overlap_radius = overlap_radius
    prm.overlap_blend = overlap_blend
    return prm


def match(
    ax, ay, at, abits, avalid, bx, by, bt, bbits, bvalid,
    int seeds, double dist_tol, double dist_growth, double angle_tol, double max_dir, double min_common,
    int min_count, double geometry_weight, double overlap_radius, double overlap_blend,
):
    """Raw score of A against B; see ``native.finger_reference`` for the definition."""
    cdef const double[::1] vax = np.ascontiguousarray(ax, dtype=np.float64)
    cdef const double[::1] vay = np.ascontiguousarray(ay, dtype=np.float64)
    cdef const double[::1] vat = np.ascontiguousarray(at, dtype=np.float64)
    cdef const double[::1] vbx = np.ascontiguousarray(bx, dtype=np.float64)
    cdef const double[::1] vby = np.ascontiguousarray(by, dtype=np.float64)
    cdef const double[::1] vbt = np.ascontiguousarray(bt, dtype=np.float64)
    cdef const uint64_t[:, ::1] vab = np.ascontiguousarray(abits, dtype=np.uint64)
    cdef const uint64_t[:, ::1] vav = np.ascontiguousarray(avalid, dtype=np.uint64)
    cdef const uint64_t[:, ::1] vbb = np.ascontiguousarray(bbits, dtype=np.uint64)
    cdef const uint64_t[:, ::1] vbv = np.ascontiguousarray(bvalid, dtype=np.uint64)
    cdef Py_ssize_t na = vax.shape[0], nb = vbx.shape[0]
    if na == 0 or nb == 0:
        return 0.0
    if vab.shape[1] != vbb.shape[1] or vab.shape[0] != na or vbb.shape[0] != nb or vav.shape[0] != na or vbv.shape[0] != nb:
        raise ValueError("cylinder arrays do not match the minutiae arrays")
    cdef Params prm = _params(seeds, dist_tol, dist_growth, angle_tol, max_dir, min_common, min_count,
                              geometry_weight, overlap_radius, overlap_blend)
    cdef double best
    with nogil:
        best = _match(na, &vax[0], &vay[0], &vat[0], &vab[0, 0], &vav[0, 0],
                      nb, &vbx[0], &vby[0], &vbt[0], &vbb[0, 0], &vbv[0, 0], vab.shape[1], &prm)
    if best < 0:
        raise MemoryError()
    return best


cdef inline void _expand_cells(const uint8_t* cells, const int32_t* cell_of_bit, Py_ssize_t n_bits, uint64_t* out, Py_ssize_t words) noexcept nogil:
    # Stored bit j is cell cell_of_bit[j]'s validity (only in-radius cells are stored), repeated
    # over its ND = 6 direction bits: bits 6c … 6c + 5 of the cylinder.
    cdef Py_ssize_t j, c, b, w
    for w in range(words):
        out[w] = 0
    for j in range(n_bits):
        if (cells[j >> 3] >> (j & 7)) & 1:
            c = cell_of_bit[j]
            b = c * 6
            out[b >> 6] |= (<uint64_t>0x3F) << (b & 63)
            if (b & 63) > 58:
                out[(b >> 6) + 1] |= (<uint64_t>0x3F) >> (64 - (b & 63))


def match_stored(
    px, py, pt, pbits, pvalid,
    const int64_t[::1] bounds, const int64_t[::1] rows, const uint64_t[::1] code_address,
    const uint16_t[::1] sx, const uint16_t[::1] sy, const uint8_t[::1] sa, const uint8_t[:, ::1] cells,
    const int32_t[::1] cell_of_bit, double angle_unit,
    int seeds, double dist_tol, double dist_growth, double angle_tol, double max_dir, double min_common,
    int min_count, double geometry_weight, double overlap_radius, double overlap_blend,
):
    """Scores of one probe against many stored templates, in one call without the GIL.

    Template t is rows ``rows[bounds[t]:bounds[t + 1]]`` of the store: integer minutiae (x, y down,
    ISO angle code), cell validity (one bit per cell) and the address of its packed cylinder
    (``code_address``, aligned with ``rows``).  Validity is stored for the in-radius cells only:
    bit j of a row is cell ``cell_of_bit[j]``.  Each is turned into what ``match`` takes (x, −y,
    code · ``angle_unit``, validity repeated over the direction bits) and scored by the same code.
    """
    cdef const double[::1] vax = np.ascontiguousarray(px, dtype=np.float64)
    cdef const double[::1] vay = np.ascontiguousarray(py, dtype=np.float64)
    cdef const double[::1] vat = np.ascontiguousarray(pt, dtype=np.float64)
    cdef const uint64_t[:, ::1] vab = np.ascontiguousarray(pbits, dtype=np.uint64)
    cdef const uint64_t[:, ::1] vav = np.ascontiguousarray(pvalid, dtype=np.uint64)
    cdef Py_ssize_t na = vax.shape[0], n_templates = bounds.shape[0] - 1, words = vab.shape[1]
    if rows.shape[0] != code_address.shape[0] or n_templates < 0 or (n_templates > 0 and bounds[n_templates] > rows.shape[0]):
        raise ValueError("rows, addresses and bounds disagree")
    if cells.shape[1] * 8 < cell_of_bit.shape[0]:
        raise ValueError("cell validity rows too short for cell_of_bit")
    out_arr = np.zeros(max(n_templates, 0), dtype=np.float64)
    cdef double[::1] out = out_arr
    cdef Params prm = _params(seeds, dist_tol, dist_growth, angle_tol, max_dir, min_common, min_count,
                              geometry_weight, overlap_radius, overlap_blend)
    cdef Py_ssize_t most = 0, t, r, nb, k
    for k in range(cell_of_bit.shape[0]):
        if not 0 <= cell_of_bit[k] < words * 64 // 6:
            raise ValueError("cell_of_bit names a cell outside the cylinder")
    for t in range(n_templates):
        if bounds[t + 1] - bounds[t] > most:
            most = bounds[t + 1] - bounds[t]
    if n_templates <= 0:
        return out_arr
    cdef double* bx = <double*>malloc((most + 1) * 3 * sizeof(double))
    cdef uint64_t* bb = <uint64_t*>malloc((most + 1) * 2 * words * sizeof(uint64_t))
    if bx == NULL or bb == NULL:
        free(bx); free(bb)
        raise MemoryError()
    cdef double* by = bx + (most + 1)
    cdef double* bt = by + (most + 1)
    cdef uint64_t* bv = bb + (most + 1) * words
    cdef double score
    cdef bint failed = False
    with nogil:
        for t in range(n_templates):
            nb = bounds[t + 1] - bounds[t]
            for k in range(nb):
                r = rows[bounds[t] + k]
                bx[k] = <double>sx[r]
                by[k] = -(<double>sy[r])
                bt[k] = (<double>sa[r]) * angle_unit
                memcpy(&bb[k * words], <const void*>code_address[bounds[t] + k], words * sizeof(uint64_t))
                _expand_cells(&cells[r, 0], &cell_of_bit[0], cell_of_bit.shape[0], &bv[k * words], words)
            if na == 0:
                score = 0.0
            else:
                score = _match(na, &vax[0], &vay[0], &vat[0], &vab[0, 0], &vav[0, 0], nb, bx, by, bt, bb, bv, words, &prm)
            if score < 0:
                failed = True
                break
            out[t] = score
    free(bx); free(bb)
    if failed:
        raise MemoryError()
    return out_arr


def similarity_matrix(
    const uint64_t[:, :] abits, const uint64_t[:, :] avalid, const double[:] at,
    const uint64_t[:, :] bbits, const uint64_t[:, :] bvalid, const double[:] bt,
    double max_dir, double min_common,
):
    """The local-similarity matrix alone (for tests and diagnostics)."""
    out = np.zeros((abits.shape[0], bbits.shape[0]), dtype=np.float64)
    cdef double[:, ::1] view = out
    cdef const uint64_t[:, ::1] ab = np.ascontiguousarray(abits), av = np.ascontiguousarray(avalid)
    cdef const uint64_t[:, ::1] bb = np.ascontiguousarray(bbits), bv = np.ascontiguousarray(bvalid)
    cdef const double[::1] ta = np.ascontiguousarray(at), tb = np.ascontiguousarray(bt)
    if out.size:
        with nogil:
            _local_similarities(ab.shape[0], &ab[0, 0], &av[0, 0], &ta[0], bb.shape[0], &bb[0, 0], &bv[0, 0], &tb[0],
                                ab.shape[1], max_dir, min_common, &view[0, 0])
    return out
