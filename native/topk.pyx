# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Kernels on the identify path: collapsing FAISS hits per subject and selecting top-k.

Both run without the GIL, so concurrent searches on the thread pool do not serialise here.
``native.reference`` holds the NumPy definitions the tests compare against.
"""

import numpy as np

cimport cython
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.stdint cimport int64_t, uint64_t


cdef inline uint64_t _mix(int64_t key) noexcept nogil:
    # splitmix64 finaliser: spreads sequential subject codes over the table.
    cdef uint64_t z = <uint64_t>key + 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def best_per_subject(const float[:, :] similarities, const int64_t[:, :] subject_codes, Py_ssize_t top,
                     const int64_t[:] code_of=None):
    """Each subject's best hit per row, at most ``top`` per row, best first (see reference).

    With ``code_of``, ``subject_codes`` holds template ids and each is read as ``code_of[id]``:
    the id → subject lookup costs NumPy four array operations per search, and nothing here.
    """
    cdef bint mapped = code_of is not None
    cdef Py_ssize_t n_map = code_of.shape[0] if mapped else 0
    cdef Py_ssize_t n_rows = similarities.shape[0]
    cdef Py_ssize_t k = similarities.shape[1]
    if subject_codes.shape[0] != n_rows or subject_codes.shape[1] != k:
        raise ValueError("similarities and subject_codes must have the same shape")
    if top < 0:
        raise ValueError("top must be >= 0")
    out_sims_arr = np.full((n_rows, top), -np.inf, dtype=np.float32)
    out_codes_arr = np.full((n_rows, top), -1, dtype=np.int64)
    cdef float[:, :] out_sims = out_sims_arr
    cdef int64_t[:, :] out_codes = out_codes_arr
    if n_rows == 0 or top == 0 or k == 0:
        return out_sims_arr, out_codes_arr

    cdef Py_ssize_t capacity = 16
    while capacity < 2 * k:
        capacity <<= 1
    cdef uint64_t mask = <uint64_t>(capacity - 1)
    cdef int64_t* table = <int64_t*>malloc(capacity * sizeof(int64_t))
    if table == NULL:
        raise MemoryError()
    cdef Py_ssize_t row, j, filled
    cdef int64_t code
    cdef uint64_t slot
    cdef bint seen
    try:
        with nogil:
            for row in range(n_rows):
                # -1 is never a valid code, so it marks an empty slot.
                memset(table, 0xFF, capacity * sizeof(int64_t))
                filled = 0
                for j in range(k):
                    code = subject_codes[row, j]
                    if mapped:
                        code = code_of[code] if 0 <= code < n_map else -1
                    if code < 0:
                        continue
                    slot = _mix(code) & mask
                    seen = False
                    while table[slot] != -1:
                        if table[slot] == code:
                            seen = True
                            break
                        slot = (slot + 1) & mask
                    if seen:
                        continue
                    table[slot] = code
                    out_sims[row, filled] = similarities[row, j]
                    out_codes[row, filled] = code
                    filled += 1
                    if filled == top:
                        break
    finally:
        free(table)
    return out_sims_arr, out_codes_arr


cdef inline bint _better(const float[:] scores, int64_t a, int64_t b) noexcept nogil:
    # True when index a ranks before index b: higher score, then earlier position.
    return scores[a] > scores[b] or (scores[a] == scores[b] and a < b)


cdef void _sift_down(const float[:] scores, int64_t* heap, Py_ssize_t size, Py_ssize_t pos) noexcept nogil:
    # Min-heap by rank: the root is the worst of the kept k.
    cdef Py_ssize_t child
    cdef int64_t item = heap[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _better(scores, heap[child], heap[child + 1]):
            child += 1
        if _better(scores, heap[child], item):
            break
        heap[pos] = heap[child]
        pos = child
    heap[pos] = item


def top_k(const float[:] scores, Py_ssize_t k):
    """Indices of the ``k`` largest scores, best first, ties in input order (see reference)."""
    cdef Py_ssize_t n = scores.shape[0]
    if k < 0:
        raise ValueError("k must be >= 0")
    if k > n:
        k = n
    out_arr = np.empty(k, dtype=np.int64)
    if k == 0:
        return out_arr
    cdef int64_t[:] out = out_arr
    cdef int64_t* heap = <int64_t*>malloc(k * sizeof(int64_t))
    if heap == NULL:
        raise MemoryError()
    cdef Py_ssize_t i, size = 0
    cdef int64_t tmp
    try:
        with nogil:
            for i in range(n):
                if size < k:
                    heap[size] = i
                    size += 1
                    if size == k:
                        for tmp in range(k // 2 - 1, -1, -1):
                            _sift_down(scores, heap, k, tmp)
                elif _better(scores, i, heap[0]):
                    heap[0] = i
                    _sift_down(scores, heap, k, 0)
            # Pop worst-first into the output from the back.
            while size > 0:
                out[size - 1] = heap[0]
                size -= 1
                heap[0] = heap[size]
                if size > 0:
                    _sift_down(scores, heap, size, 0)
    finally:
        free(heap)
    return out_arr
