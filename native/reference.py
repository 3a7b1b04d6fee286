"""NumPy reference implementations of the Cython kernels.

They define what the kernels must compute; the tests compare both on random and edge-case
inputs.  Clear rather than fast.
"""

from __future__ import annotations

import numpy as np


def best_per_subject(
    similarities: np.ndarray, subject_codes: np.ndarray, top: int, code_of: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Collapse ranked template hits to each subject's best hit, keeping ``top`` subjects per row.

    Rows are FAISS results, already sorted best first; code -1 marks an empty slot.  Output rows
    are padded with similarity -inf and code -1.  With ``code_of``, ``subject_codes`` holds
    template ids, read as ``code_of[id]`` (-1 for an id that is negative or past the map).
    """
    if code_of is not None:
        ids = subject_codes
        inside = (ids >= 0) & (ids < code_of.size)
        subject_codes = np.where(inside, code_of[np.where(inside, ids, 0)], -1) if code_of.size else np.full_like(ids, -1)
    n_rows = similarities.shape[0]
    out_sims = np.full((n_rows, top), -np.inf, dtype=np.float32)
    out_codes = np.full((n_rows, top), -1, dtype=np.int64)
    for row in range(n_rows):
        codes = subject_codes[row]
        valid = np.flatnonzero(codes >= 0)
        _, first = np.unique(codes[valid], return_index=True)
        keep = valid[np.sort(first)][:top]
        out_sims[row, : keep.size] = similarities[row, keep]
        out_codes[row, : keep.size] = codes[keep]
    return out_sims, out_codes


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties keep their input order."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    return order[:k].astype(np.int64)


def rescore(queries: np.ndarray, candidates: np.ndarray, slot_of: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate ids exactly against their float32 vectors; best ``k`` per row, best first.

    Ids that are −1, beyond ``slot_of`` or without a slot are skipped; ties keep input order;
    rows are padded with similarity −inf and id −1.
    """
    n = queries.shape[0]
    out_sims = np.full((n, k), -np.inf, dtype=np.float32)
    out_ids = np.full((n, k), -1, dtype=np.int64)
    for row in range(n):
        ids = candidates[row]
        ok = (ids >= 0) & (ids < slot_of.size)
        ids = ids[ok]
        slots = slot_of[ids]
        ids, slots = ids[slots >= 0], slots[slots >= 0]
        sims = (vectors[slots] @ queries[row]).astype(np.float32)
        order = np.argsort(-sims.astype(np.float64), kind="stable")[:k]
        out_sims[row, : order.size] = sims[order]
        out_ids[row, : order.size] = ids[order]
    return out_sims, out_ids
