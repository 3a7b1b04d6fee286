"""``FingerIndex``: fingerprint 1:N in two stages.

1. **Candidate retrieval** — every enrolled minutia's MCC cylinder (1,536 bits) sits in a FAISS
   binary index.  Each probe cylinder asks for its ``neighbours`` nearest cylinders (Hamming) and
   votes once for every subject among them; the ``shortlist`` subjects with most votes go on.
   Cylinders are rotation/translation invariant, so no alignment is needed at this stage.
2. **Re-ranking** — the shortlist's templates are matched in full by the Cython minutiae matcher
   (local pairing + global consolidation); a subject's score is its best template's.

Exact (``IndexBinaryFlat``) up to ``ivf_threshold`` cylinders, then ``IndexBinaryIVF`` trained on
the enrolled cylinders (rebuilt at each doubling of the size, on a background thread by
``matcher.rebuild``: at millions of cylinders training and filling take minutes, and searches
must not wait).  FAISS ids are ``template_id << 8 | minutia`` (at most 255 minutiae per
template), so a hit maps to its template with a shift.  Thread-safe like
``matcher.index.VectorIndex``: searches share a read lock.

**Storage.**  A million fingers must fit in RAM, so nothing is kept per template as Python
objects beyond a dictionary entry, and every cylinder is stored once: in the FAISS index itself
(the flat index's code array, or the IVF's inverted lists).  What re-ranking needs besides —
minutiae as small integers (x, y down, ISO angle code) and each cylinder's cell validity (one
bit per spatial cell; the direction bits repeat it) — sits in contiguous row arrays, a
template's minutiae in consecutive rows; each row also records where its cylinder lives (list,
offset), and the kernel reads it there (``native.minutiae.match_stored``).  Additions go
through the inverted lists directly (``add_entries``, what ``add_with_ids`` does), removals
replay FAISS's own swap-with-last on the affected lists only, so the lists' contents and order
— hence every search — are those the plain FAISS calls would give.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from matcher.errors import InvalidArgument
from matcher.finger import parameters as spec
from matcher.finger.descriptors import _OFFSETS, BITS, CELLS, RADIUS, WORDS, PreparedTemplate, prepare
from matcher.finger.template import ANGLE_UNIT, FingerTemplate
from matcher.locks import ReadWriteLock
from matcher.rebuild import BackgroundRebuild, RebuildingIndex, RebuildSteps
from native import minutiae as _kernel

SNAPSHOT_FORMAT = 3  # 2: finger positions; 3: compact rows, cylinders once, the trained IVF beside
MINUTIA_BITS = 8
MAX_TEMPLATE_ID = (1 << (63 - MINUTIA_BITS)) - 1
CODE_BYTES = BITS // 8
COMPACT_AFTER_ROWS = 100_000
#: Validity is stored for the in-radius cells only (the others are never valid): bit j is cell _CELL_OF_BIT[j].
_CELL_OF_BIT = np.flatnonzero(np.hypot(_OFFSETS[:, 0], _OFFSETS[:, 1]) <= RADIUS).astype(np.int32)
CELL_BYTES = (len(_CELL_OF_BIT) + 7) // 8


def _stored_cells(full: np.ndarray) -> np.ndarray:
    """``uint8 [n, CELLS/8]`` cell masks → the in-radius bits only, ``uint8 [n, CELL_BYTES]``."""
    bits = np.unpackbits(np.asarray(full, np.uint8), axis=1, bitorder="little")[:, _CELL_OF_BIT]
    return np.packbits(bits, axis=1, bitorder="little")


def _full_cells(stored: np.ndarray) -> np.ndarray:
    """Inverse of ``_stored_cells``."""
    bits = np.unpackbits(np.asarray(stored, np.uint8), axis=1, bitorder="little")[:, : len(_CELL_OF_BIT)]
    full = np.zeros((len(stored), CELLS), np.uint8)
    full[:, _CELL_OF_BIT] = bits
    return np.packbits(full, axis=1, bitorder="little")
_MATCH_PARAMS = (
    spec.SEEDS, spec.DIST_TOL, spec.DIST_GROWTH, spec.ANGLE_TOL, spec.MAX_DIRECTION_DIFF,
    spec.MIN_COMMON_FRACTION * spec.CELLS_IN_RADIUS_BITS, spec.MIN_COUNT, spec.GEOMETRY_WEIGHT,
    spec.OVERLAP_RADIUS, spec.OVERLAP_BLEND,
)

log = logging.getLogger(__name__)


def _cylinder_ids(template_ids: Iterable[int], sizes: Iterable[int]) -> np.ndarray:
    parts = [(np.int64(t) << MINUTIA_BITS) | np.arange(n, dtype=np.int64) for t, n in zip(template_ids, sizes)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the loop."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    out = np.ones(total, np.int64)
    nonzero = counts > 0
    firsts = (ends - counts)[nonzero]
    s = np.asarray(starts, np.int64)[nonzero]
    out[firsts[0]] = s[0]
    if len(firsts) > 1:
        prev_end = (s + counts[nonzero])[:-1]
        out[firsts[1:]] = s[1:] - prev_end + 1
    return np.cumsum(out)


def _address(pointer) -> int:
    return int(pointer)


class _Column:
    """A growable NumPy array (amortised doubling), viewed as ``data[:n]``."""

    def __init__(self, dtype, width: int = 0, capacity: int = 16) -> None:
        self._shape_tail = (width,) if width else ()
        self.data = np.zeros((capacity, *self._shape_tail), dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> int:
        start, m = self.n, len(values)
        if start + m > len(self.data):
            grown = np.zeros((max(2 * len(self.data), start + m), *self._shape_tail), self.data.dtype)
            grown[:start] = self.data[:start]
            self.data = grown
        self.data[start : start + m] = values
        self.n = start + m
        return start

    def view(self) -> np.ndarray:
        return self.data[: self.n]

    def replace(self, values: np.ndarray) -> None:
        self.data = np.array(values, dtype=self.data.dtype, copy=True)
        if len(self.data) == 0:
            self.data = np.zeros((16, *self._shape_tail), self.data.dtype)
            self.n = 0
        else:
            self.n = len(values)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def _ivf_quantizer_assign(index: faiss.IndexBinaryIVF, codes: np.ndarray) -> np.ndarray:
    _, labels = index.quantizer.search(codes, 1)
    return labels[:, 0]


#: Inverted lists: 4·√(cylinders), as before, but at most this many.  Training (float k-means) and
#: filling (each cylinder's nearest centroid) both grow with the number of lists; beyond 8,192 a
#: million-finger gallery (≈ 21 M cylinders) would train for hours on two cores, while longer
#: lists only cost the scan of nprobe of them.  At 200,000 fingers the rule gives 8,198: the cap
#: starts there.
MAX_LISTS = 8192
#: k-means sample per list: FAISS asks for at least 39 points per centroid.
TRAINING_POINTS_PER_LIST = 40
#: The centroids live in a binary HNSW graph (links per node, and candidates kept while searching):
#: assigning 21 M cylinders to the nearest of 8,192 centroids exhaustively is 10¹¹ Hamming
#: distances; the graph needs a few hundred per cylinder.
QUANTIZER_LINKS = 32
QUANTIZER_EF_SEARCH = 128


def _trained_ivf(codes: np.ndarray, nprobe: int) -> faiss.IndexBinaryIVF:
    """An empty ``IndexBinaryIVF`` trained on a sample of ``codes``, its centroids in an HNSW graph.

    FAISS trains the lists with an exact quantizer; the centroids then move into
    ``IndexBinaryHNSW``, built on one thread so that the graph, hence every list assignment and
    search, does not depend on thread timing.  The inverted lists store our ids themselves.  Not
    inside an ``IndexBinaryIDMap``: its ``remove_ids`` compacts the id map as if the inner index
    renumbered (only flat indexes do), which mislabels every later hit or aborts the process on
    FAISS's assertion.
    """
    nlist = min(int(4 * np.sqrt(len(codes))), MAX_LISTS)
    exact = faiss.IndexBinaryFlat(BITS)
    trainer = faiss.IndexBinaryIVF(exact, BITS, nlist)
    rng = np.random.default_rng(0)
    sample = min(len(codes), TRAINING_POINTS_PER_LIST * nlist)
    trainer.train(codes[rng.choice(len(codes), size=sample, replace=False)])
    centroids = faiss.rev_swig_ptr(exact.xb.data(), nlist * CODE_BYTES).reshape(nlist, CODE_BYTES).copy()
    quantizer = faiss.IndexBinaryHNSW(BITS, QUANTIZER_LINKS)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        quantizer.add(centroids)
    finally:
        faiss.omp_set_num_threads(threads)
    quantizer.hnsw.efSearch = QUANTIZER_EF_SEARCH
    index = faiss.IndexBinaryIVF(quantizer, BITS, nlist)
    index.own_fields = True
    quantizer.this.disown()
    index.is_trained = True
    index.nprobe = nprobe
    return index


class _Retrieval:
    """The FAISS index holding every cylinder (once), and where each one is: (list, offset).

    Flat: one "list", the ``IndexBinaryFlat``'s code array, with ``ids[position]`` our ids.
    IVF: the inverted lists, which hold our ids.  ``bases[list]`` is the address of a list's
    codes, refreshed whenever an addition may have moved them.
    """

    def __init__(self, index: faiss.IndexBinary, trained_on: int) -> None:
        self.index = index
        self.trained_on = trained_on
        self.ivf = trained_on > 0
        if self.ivf:
            self.invlists = index.invlists
            self.bases = np.zeros(index.nlist, np.uint64)
            self.refresh(np.arange(index.nlist))
            self.flat_ids = None
        else:
            self.invlists = None
            self.flat_ids = _Column(np.int64)
            self.bases = np.zeros(1, np.uint64)
            self.refresh(None)

    @classmethod
    def flat(cls) -> "_Retrieval":
        return cls(faiss.IndexBinaryFlat(BITS), 0)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def refresh(self, lists: np.ndarray | None) -> None:
        if not self.ivf:
            self.bases[0] = _address(self.index.xb.data()) if self.index.ntotal else 0
            return
        for list_no in lists:
            list_no = int(list_no)
            self.bases[list_no] = _address(self.invlists.get_codes(list_no)) if self.invlists.list_size(list_no) else 0

    def add(self, codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append ``codes`` (in order); their (list, offset)."""
        n = len(codes)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if n == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        if not self.ivf:
            start = self.ntotal
            self.index.add(codes)
            self.flat_ids.extend(ids)
            self.refresh(None)
            return np.zeros(n, np.int32), np.arange(start, start + n, dtype=np.int64)
        assign = _ivf_quantizer_assign(self.index, codes).astype(np.int64)
        order = np.argsort(assign, kind="stable")  # within a list, the input order: add_with_ids's own
        lists, firsts, counts = np.unique(assign[order], return_index=True, return_counts=True)
        offsets = np.zeros(n, np.int64)
        for list_no, first, count in zip(lists.tolist(), firsts.tolist(), counts.tolist()):
            chosen = order[first : first + count]
            c = np.ascontiguousarray(codes[chosen])
            i = np.ascontiguousarray(ids[chosen])
            offset = self.invlists.add_entries(list_no, count, faiss.swig_ptr(i), faiss.swig_ptr(c))
            offsets[chosen] = offset + np.arange(count)
        self.index.ntotal = self.ntotal + n
        self.refresh(lists)
        return assign.astype(np.int32), offsets

    def remove(self, lists: np.ndarray, offsets: np.ndarray) -> list[tuple[int, int, int]]:
        """Remove these entries; the entries moved meanwhile as (id, list, new offset).

        Flat: FAISS's compaction (the caller shifts every offset).  IVF: FAISS's ``remove_ids``
        loop (an entry removed takes the list's last entry, which is examined again), run on
        the affected lists only.
        """
        if len(offsets) == 0:
            return []
        if not self.ivf:
            positions = np.unique(offsets)
            self.index.remove_ids(positions.astype(np.int64))
            self.flat_ids.replace(np.delete(self.flat_ids.view(), positions))
            self.refresh(None)
            return []
        moved: list[tuple[int, int, int]] = []
        removed = 0
        order = np.lexsort((offsets, lists))
        lists, offsets = np.asarray(lists)[order], np.asarray(offsets)[order]
        bounds = np.flatnonzero(np.diff(lists)) + 1
        for group in np.split(np.arange(len(lists)), bounds):
            list_no = int(lists[group[0]])
            positions = [int(p) for p in offsets[group]]
            size = self.invlists.list_size(list_no)
            ids = faiss.rev_swig_ptr(self.invlists.get_ids(list_no), size)
            codes = faiss.rev_swig_ptr(self.invlists.get_codes(list_no), size * CODE_BYTES)
            members = set(positions)
            end = size
            for j in positions:
                if j >= end:
                    break
                end -= 1
                while end > j and end in members:  # the last entry is removed too: it goes, the next last comes
                    end -= 1
                if end > j:
                    moved_id = int(ids[end])
                    self.invlists.update_entry(list_no, j, moved_id, faiss.swig_ptr(codes[end * CODE_BYTES : (end + 1) * CODE_BYTES]))
                    moved.append((moved_id, list_no, j))
            self.invlists.resize(list_no, end)
            removed += size - end
        self.index.ntotal = self.ntotal - removed
        return moved

    def search(self, codes: np.ndarray, k: int) -> np.ndarray:
        _, hits = self.index.search(codes, k)
        if not self.ivf:
            flat_ids = self.flat_ids.view()
            hits = np.where(hits >= 0, flat_ids[np.maximum(hits, 0)], -1)
        return hits

    def addresses(self, lists: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return self.bases[lists] + offsets.astype(np.uint64) * np.uint64(CODE_BYTES)

    def codes(self, lists: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The cylinders at these places (a copy), ``uint8 [n, 192]``."""
        out = np.empty((len(offsets), CODE_BYTES), np.uint8)
        if len(offsets) == 0:
            return out
        if not self.ivf:
            every = faiss.rev_swig_ptr(self.index.xb.data(), self.ntotal * CODE_BYTES).reshape(-1, CODE_BYTES)
            out[:] = every[offsets]
            return out
        order = np.argsort(lists, kind="stable")
        sorted_lists = lists[order]
        bounds = np.flatnonzero(np.diff(sorted_lists)) + 1
        for group in np.split(order, bounds):
            list_no = int(lists[group[0]])
            size = self.invlists.list_size(list_no)
            every = faiss.rev_swig_ptr(self.invlists.get_codes(list_no), size * CODE_BYTES).reshape(-1, CODE_BYTES)
            out[group] = every[offsets[group]]
        return out

    def all_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(codes, ids, lists, offsets) of every entry, list by list in list order."""
        if not self.ivf:
            n = self.ntotal
            codes = faiss.rev_swig_ptr(self.index.xb.data(), n * CODE_BYTES).reshape(-1, CODE_BYTES).copy() if n else np.zeros((0, CODE_BYTES), np.uint8)
            return codes, self.flat_ids.view().copy(), np.zeros(n, np.int32), np.arange(n, dtype=np.int64)
        codes, ids, lists, offsets = [], [], [], []
        for list_no in range(self.index.nlist):
            size = self.invlists.list_size(list_no)
            if not size:
                continue
            codes.append(faiss.rev_swig_ptr(self.invlists.get_codes(list_no), size * CODE_BYTES).reshape(-1, CODE_BYTES).copy())
            ids.append(faiss.rev_swig_ptr(self.invlists.get_ids(list_no), size).copy())
            lists.append(np.full(size, list_no, np.int32))
            offsets.append(np.arange(size, dtype=np.int64))
        if not codes:
            return np.zeros((0, CODE_BYTES), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
        return np.concatenate(codes), np.concatenate(ids), np.concatenate(lists), np.concatenate(offsets)

    def memory_bytes(self) -> int:
        """Codes and ids as FAISS holds them (the IVF's centroids included; allocator slack not)."""
        n = self.ntotal
        if not self.ivf:
            return n * CODE_BYTES + self.flat_ids.nbytes
        return n * (CODE_BYTES + 8) + self.index.nlist * (CODE_BYTES + 64)


@dataclass(frozen=True)
class _Built:
    """A retrieval index built aside and the (list, offset) of every row of the copy it was built from."""

    retrieval: _Retrieval
    rows: np.ndarray
    lists: np.ndarray
    offsets: np.ndarray


class FingerIndex(RebuildingIndex):
    """Subjects' finger templates, searchable 1:N; ``size`` counts templates."""

    def __init__(
        self,
        neighbours: int = 16,
        shortlist: int = 40,
        ivf_threshold: int = 200_000,
        nprobe: int = 16,
        background_build: bool = True,
    ) -> None:
        self.neighbours, self.shortlist, self.ivf_threshold, self.nprobe = neighbours, shortlist, ivf_threshold, nprobe
        self.background_build = background_build
        self.applied_sequence = 0
        self._lock = ReadWriteLock()
        # Per template (a slot each; a removed template's slot stays, dead, until compaction).
        self._slot_of: dict[int, int] = {}
        self._slots_of_subject: dict[str, list[int]] = {}
        self._subject_of_slot: list[str | None] = []
        self._slot_tid = _Column(np.int64)
        self._slot_start = _Column(np.int64)
        self._slot_count = _Column(np.int16)
        self._slot_total = _Column(np.int16)
        self._slot_position = _Column(np.uint8)  # ISO finger position of a template, 0 unknown
        # Per minutia with a cylinder (rows; a template's are consecutive).
        self._x = _Column(np.uint16)
        self._y = _Column(np.uint16)  # y down, as in the template
        self._angle = _Column(np.uint8)
        self._cells = _Column(np.uint8, CELL_BYTES)
        self._list = _Column(np.uint16)  # nlist = 4·√cylinders < 65,536 up to 268 M cylinders
        self._offset = _Column(np.int32)  # < 2³¹ entries per list (and in a flat index)
        self._dead_rows = 0
        self._retrieval = _Retrieval.flat()
        self.last_penetration = 0.0
        # Journals the ids of the templates written while a build runs: their codes are redone before the swap.
        self._rebuild: BackgroundRebuild[tuple, _Built, int] = BackgroundRebuild(
            self._lock,
            RebuildSteps(self._wants_ivf, self._copy_locked, self._train, self._redo_locked, self._swap_locked),
            background=lambda: self.background_build,
            name="finger-index-build",
            failure="rebuilding the finger retrieval index failed; staying on the current one",
            logger=log,
        )

    # -- mutation -------------------------------------------------------------------------
    def set_subject(
        self,
        subject_id: str,
        templates: Iterable[tuple[int, FingerTemplate | PreparedTemplate]],
        sequence: int = 0,
    ) -> None:
        """Make ``subject_id``'s finger templates exactly these (idempotent on replay)."""
        self._put([(subject_id, *t) for t in templates], sequence, replace={subject_id})

    def add(self, subject_id: str, templates: Iterable[tuple[int, FingerTemplate | PreparedTemplate]]) -> None:
        """Add templates to a subject's (a rebuild from the store streams a subject's rows in batches)."""
        self._put([(subject_id, *t) for t in templates], 0, replace=set())

    def add_many(self, items: Sequence[tuple[str, int, FingerTemplate | PreparedTemplate]]) -> None:
        """Add (subject, template id, template) triples in one write: one FAISS addition for all of them."""
        self._put(list(items), 0, replace=set())

    @contextmanager
    def bulk_loading(self):
        """No retrieval rebuild until the block ends, then one if needed (a bulk load trains once)."""
        with self._rebuild.deferred():
            yield self

    def _put(self, items: list[tuple[str, int, FingerTemplate | PreparedTemplate]], sequence: int, replace: set[str]) -> None:
        prepared = []
        for subject_id, template_id, template in items:
            if not 0 <= int(template_id) <= MAX_TEMPLATE_ID:
                raise InvalidArgument("template_id", f"{template_id} is out of range 0–{MAX_TEMPLATE_ID}")
            if isinstance(template, tuple):  # (PreparedTemplate, finger position): prepared by the caller
                p, position = template
            else:
                position = template.position if isinstance(template, FingerTemplate) else 0
                p = template if isinstance(template, PreparedTemplate) else prepare(template)
            prepared.append((subject_id, int(template_id), p, position))
        with self._lock.writing():
            for subject_id in replace:
                self._remove_locked(subject_id)
            replaced = [tid for _, tid, _, _ in prepared if tid in self._slot_of]
            if replaced:
                self._remove_slots_locked([self._slot_of[t] for t in replaced])
            self._append_locked(prepared)
            self.applied_sequence = max(self.applied_sequence, sequence)
        self._rebuild.request()

    def _append_locked(self, prepared: list[tuple[str, int, PreparedTemplate, int]]) -> None:
        if not prepared:
            return
        # Later duplicates of a template id within one call replace earlier ones, as sequential puts would.
        last = {tid: k for k, (_, tid, _, _) in enumerate(prepared)}
        if len(last) != len(prepared):
            prepared = [prepared[k] for k in sorted(last.values())]
        sizes = np.array([p.size for _, _, p, _ in prepared], np.int64)
        first_row = self._x.n
        starts = first_row + np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else sizes
        nonempty = [p for _, _, p, _ in prepared if p.size]
        if nonempty:
            self._x.extend(np.concatenate([p.x for p in nonempty]).astype(np.uint16))
            self._y.extend((-np.concatenate([p.y for p in nonempty])).astype(np.uint16))
            self._angle.extend(np.concatenate([p.angle_codes() for p in nonempty]))
            self._cells.extend(_stored_cells(np.concatenate([p.cell_mask() for p in nonempty])))
        first_slot = self._slot_tid.n
        self._slot_tid.extend(np.array([tid for _, tid, _, _ in prepared], np.int64))
        self._slot_start.extend(starts)
        self._slot_count.extend(sizes.astype(np.int16))
        self._slot_total.extend(np.array([p.total for _, _, p, _ in prepared], np.int16))
        self._slot_position.extend(np.array([pos for _, _, _, pos in prepared], np.uint8))
        for k, (subject_id, tid, _, _) in enumerate(prepared):
            slot = first_slot + k
            self._slot_of[tid] = slot
            self._subject_of_slot.append(subject_id)
            self._slots_of_subject.setdefault(subject_id, []).append(slot)
            self._rebuild.record(tid)
        codes = np.concatenate([p.index_codes() for p in nonempty]) if nonempty else np.zeros((0, CODE_BYTES), np.uint8)
        ids = _cylinder_ids([tid for _, tid, p, _ in prepared if p.size], [p.size for p in nonempty])
        lists, offsets = self._retrieval.add(codes, ids)
        self._list.extend(lists)
        self._offset.extend(offsets)

    def _remove_slots_locked(self, slots: list[int]) -> None:
        """Drop these templates (their rows become dead) and their cylinders from retrieval."""
        if not slots:
            return
        slots_arr = np.array(slots, np.int64)
        starts = self._slot_start.data[slots_arr]
        counts = self._slot_count.data[slots_arr].astype(np.int64)
        rows = _ranges(starts, counts)
        for slot in slots:
            tid = int(self._slot_tid.data[slot])
            del self._slot_of[tid]
            subject = self._subject_of_slot[slot]
            own = self._slots_of_subject[subject]
            own.remove(slot)
            if not own:
                del self._slots_of_subject[subject]
            self._subject_of_slot[slot] = None
            self._slot_count.data[slot] = 0
            self._rebuild.record(tid)
        self._dead_rows += len(rows)
        lists, offsets = self._list.data[rows], self._offset.data[rows]
        moved = self._retrieval.remove(lists, offsets)
        row_offsets = self._offset.view()
        if not self._retrieval.ivf:  # compaction: every later position moves down by the removed ones before it
            row_offsets -= np.searchsorted(np.unique(offsets), row_offsets)
        for moved_id, _, offset in moved:  # swap-with-last: an entry moves within its list
            row_offsets[self._row_of_id(moved_id)] = offset
        # Churn leaves dead rows and slots behind: drop them once they outnumber the live ones (not
        # while a build holds row numbers of its copy).
        if self._dead_rows > max(COMPACT_AFTER_ROWS, self._x.n - self._dead_rows) and not self._rebuild.active:
            self._compact_locked()

    def _row_of_id(self, cylinder_id: int) -> int:
        slot = self._slot_of[cylinder_id >> MINUTIA_BITS]
        return int(self._slot_start.data[slot]) + (cylinder_id & ((1 << MINUTIA_BITS) - 1))

    def _remove_locked(self, subject_id: str) -> int:
        slots = list(self._slots_of_subject.get(subject_id, ()))
        self._remove_slots_locked(slots)
        return len(slots)

    # -- retrieval rebuilds ---------------------------------------------------------------
    def _wants_ivf(self) -> bool:
        """IVF from the threshold on, retrained at each doubling: the lists must follow the gallery."""
        n = self._retrieval.ntotal
        return n >= self.ivf_threshold and n >= 2 * self._retrieval.trained_on

    def _copy_locked(self) -> tuple:
        """Every template's rows (templates in enrolment order, as the old index's ``add_with_ids`` saw them), their cylinders and ids."""
        live = np.fromiter(self._slot_of.values(), np.int64, len(self._slot_of))
        live.sort()
        counts = self._slot_count.data[live].astype(np.int64)
        starts = self._slot_start.data[live]
        rows = _ranges(starts, counts)
        codes = self._retrieval.codes(self._list.data[rows], self._offset.data[rows])
        ids = (np.repeat(self._slot_tid.data[live], counts) << MINUTIA_BITS) | (rows - np.repeat(starts, counts))
        return rows, codes, ids

    def _train(self, contents: tuple) -> _Built:
        """Train and fill off the lock; ``BackgroundRebuild`` then redoes the templates written meanwhile and swaps."""
        rows, codes, ids = contents
        retrieval = _Retrieval(_trained_ivf(codes, self.nprobe), len(codes))
        lists, offsets = retrieval.add(codes, ids)
        return _Built(retrieval, rows, lists, offsets)

    def _redo_locked(self, fresh: _Built, changed_ids: list[int]) -> None:
        """Templates written during the build: drop whatever codes the copy had of them, add those still enrolled."""
        changed = set(changed_ids)
        if not changed:
            return
        stale = np.isin(fresh.rows, self._rows_of_templates_in_copy(fresh, changed))
        if stale.any():
            lists, offsets = fresh.lists[stale], fresh.offsets[stale]
            moved = fresh.retrieval.remove(lists, offsets)
            for moved_id, list_no, offset in moved:
                # The copy's rows are sorted; a moved entry is a template unchanged since (its slot then is its slot now).
                fresh.offsets[int(np.searchsorted(fresh.rows, self._row_of_id(moved_id)))] = offset
            fresh.lists[stale] = -1
        present = sorted(self._slot_of[t] for t in changed if t in self._slot_of and self._slot_count.data[self._slot_of[t]])
        if present:
            slots = np.array(present, np.int64)
            counts = self._slot_count.data[slots].astype(np.int64)
            rows = _ranges(self._slot_start.data[slots], counts)
            codes = self._retrieval.codes(self._list.data[rows], self._offset.data[rows])
            ids = (np.repeat(self._slot_tid.data[slots], counts) << MINUTIA_BITS) | (rows - np.repeat(self._slot_start.data[slots], counts))
            lists, offsets = fresh.retrieval.add(codes, ids)
            object.__setattr__(fresh, "rows", np.concatenate([fresh.rows, rows]))
            object.__setattr__(fresh, "lists", np.concatenate([fresh.lists, lists]))
            object.__setattr__(fresh, "offsets", np.concatenate([fresh.offsets, offsets]))

    def _rows_of_templates_in_copy(self, fresh: _Built, template_ids: set[int]) -> np.ndarray:
        """The rows the copy held for these templates (their slots then: a replaced template has a new slot now)."""
        # A template changed during the build had, in the copy, the rows of the slot it had then; slots
        # are never reused, so those rows are the copy's rows whose slot's template id is in the set.
        starts = self._slot_start.view()
        slot_of_row = np.searchsorted(starts, fresh.rows, side="right") - 1
        # Consecutive slots can share a start when a template had no rows: take the last one ≤ row
        # that has rows (empty slots own no row, so any slot whose range holds the row is it).
        tids = self._slot_tid.data[slot_of_row]
        wanted = np.isin(tids, np.fromiter(template_ids, np.int64, len(template_ids)))
        return fresh.rows[wanted]

    def _swap_locked(self, fresh: _Built) -> None:
        alive = fresh.lists >= 0
        self._list.data[fresh.rows[alive]] = fresh.lists[alive]
        self._offset.data[fresh.rows[alive]] = fresh.offsets[alive]
        self._retrieval = fresh.retrieval

    def _rebuild_locked(self, ivf: bool) -> None:
        rows, codes, ids = self._copy_locked()
        if ivf and len(codes) >= self.ivf_threshold:
            self._swap_locked(self._train((rows, codes, ids)))
        else:
            self._retrieval = _Retrieval.flat()
            lists, offsets = self._retrieval.add(codes, ids)
            self._list.data[rows], self._offset.data[rows] = lists, offsets

    def compact(self) -> None:
        """Drop the rows of removed templates (searches wait; no build may run)."""
        with self._lock.writing():
            if self._rebuild.active:
                return
            self._compact_locked()

    def _compact_locked(self) -> None:
        live = np.fromiter(self._slot_of.values(), np.int64, len(self._slot_of))
        live.sort()
        counts = self._slot_count.data[live].astype(np.int64)
        rows = _ranges(self._slot_start.data[live], counts)
        for column in (self._x, self._y, self._angle, self._cells, self._list, self._offset):
            column.replace(column.data[rows])
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        subjects = [self._subject_of_slot[s] for s in live.tolist()]
        tids = self._slot_tid.data[live]
        totals, positions = self._slot_total.data[live], self._slot_position.data[live]
        self._slot_tid.replace(tids)
        self._slot_start.replace(starts)
        self._slot_count.replace(counts.astype(np.int16))
        self._slot_total.replace(totals)
        self._slot_position.replace(positions)
        self._subject_of_slot = subjects
        self._slot_of = {int(t): k for k, t in enumerate(tids.tolist())}
        self._slots_of_subject = {}
        for k, subject in enumerate(subjects):
            self._slots_of_subject.setdefault(subject, []).append(k)
        self._dead_rows = 0

    # -- queries --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._slot_of)

    @property
    def subjects(self) -> int:
        return len(self._slots_of_subject)

    @property
    def retrieval_type(self) -> str:
        return "BinaryIVF" if self._retrieval.ivf else "BinaryFlat"

    def contains(self, subject_id: str) -> bool:
        return subject_id in self._slots_of_subject

    def subject_ids(self) -> list[str]:
        """Every subject with a finger template here (a copy)."""
        with self._lock.reading():
            return list(self._slots_of_subject)

    def minutiae_count(self) -> int:
        """Minutiae with a cylinder, over every template (what memory scales with)."""
        return self._retrieval.ntotal

    def stored_minutiae(self) -> int:
        """Minutiae with a cylinder of the templates enrolled, counted from the rows (checks ``minutiae_count``)."""
        with self._lock.reading():
            live = np.fromiter(self._slot_of.values(), np.int64, len(self._slot_of))
            return int(self._slot_count.data[live].astype(np.int64).sum())

    def memory_bytes(self) -> int:
        """What the index holds: FAISS's codes and ids, the rows, the per-template arrays and dictionaries."""
        rows = sum(c.nbytes for c in (self._x, self._y, self._angle, self._cells, self._list, self._offset))
        slots = sum(c.nbytes for c in (self._slot_tid, self._slot_start, self._slot_count, self._slot_total, self._slot_position))
        # dict entry + int key + list slot + subject's list share (CPython, measured ≈ 150 B a template)
        python = 150 * len(self._slot_of) + 8 * len(self._subject_of_slot)
        return self._retrieval.memory_bytes() + rows + slots + python

    def candidates(self, probe: PreparedTemplate) -> list[str]:
        """Stage 1: the shortlist of subjects, most votes first."""
        with self._lock.reading():
            return self._candidates_locked(probe)

    def _candidates_locked(self, probe: PreparedTemplate) -> list[str]:
        ntotal = self._retrieval.ntotal
        if probe.size == 0 or ntotal == 0:
            return []
        k = min(self.neighbours, ntotal)
        hits = self._retrieval.search(probe.index_codes(), k)
        rows = np.repeat(np.arange(hits.shape[0]), k)
        templates = hits.reshape(-1) >> MINUTIA_BITS
        valid = hits.reshape(-1) >= 0
        subject_codes: dict[str, int] = {}
        slot_of, subject_of_slot = self._slot_of, self._subject_of_slot
        codes = np.fromiter(
            (subject_codes.setdefault(subject_of_slot[slot_of[t]] if t in slot_of else "", len(subject_codes)) for t in templates[valid].tolist()),
            dtype=np.int64,
        )
        names = list(subject_codes)
        # One vote per (probe minutia, subject): a subject with many similar cylinders near one
        # probe minutia is not more likely, only more repetitive.
        pairs = np.unique(rows[valid] * (len(names) + 1) + codes)
        votes = np.bincount(pairs % (len(names) + 1), minlength=len(names))
        order = np.lexsort((np.arange(len(names)), -votes))[: self.shortlist]
        return [names[i] for i in order if names[i]]

    def _scores_locked(self, p: PreparedTemplate, slots: list[int]) -> np.ndarray:
        """The matcher's score of ``p`` against each of these templates, in one kernel call."""
        if not slots:
            return np.zeros(0)
        slots_arr = np.array(slots, np.int64)
        counts = self._slot_count.data[slots_arr].astype(np.int64)
        rows = _ranges(self._slot_start.data[slots_arr], counts)
        bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        addresses = self._retrieval.addresses(self._list.data[rows], self._offset.data[rows])
        return _kernel.match_stored(
            p.x, p.y, p.theta, p.bits, p.valid, bounds, rows, addresses,
            self._x.data, self._y.data, self._angle.data, self._cells.data, _CELL_OF_BIT, ANGLE_UNIT, *_MATCH_PARAMS,
        )

    def _comparable_slots(self, subject: str, position: int) -> list[int]:
        """A probe of a known finger meets only the same finger (or prints of unknown position).

        Ten-print records would otherwise cost ten matches per candidate and ten chances of a
        false match.
        """
        own = self._slots_of_subject.get(subject, ())
        if not position:
            return list(own)
        positions = self._slot_position.data
        return [s for s in own if positions[s] in (0, position)]

    def _best_of(self, slots: list[int], scores: np.ndarray) -> tuple[float, int]:
        best, best_id = -1.0, -1
        for slot, score in zip(slots, scores.tolist()):
            if score > best:
                best, best_id = score, int(self._slot_tid.data[slot])
        return best, best_id

    def search(self, probe: FingerTemplate | PreparedTemplate, top: int = 10, position: int = 0) -> list[tuple[str, float, int]]:
        """Best subjects for ``probe``: (subject_id, raw score, best template id), best first.

        ``position`` (1–10) restricts re-ranking to that finger; it defaults to a
        ``FingerTemplate``'s own position.
        """
        if top <= 0:
            return []
        position = position or (probe.position if isinstance(probe, FingerTemplate) else 0)
        p = probe if isinstance(probe, PreparedTemplate) else prepare(probe)
        with self._lock.reading():
            shortlist = self._candidates_locked(p)
            self.last_penetration = len(shortlist) / max(1, len(self._slots_of_subject))
            per_subject = [self._comparable_slots(s, position) for s in shortlist]
            scores = self._scores_locked(p, [slot for slots in per_subject for slot in slots])
            results, at = [], 0
            for subject, slots in zip(shortlist, per_subject):
                best, best_id = self._best_of(slots, scores[at : at + len(slots)])
                at += len(slots)
                if best_id >= 0:
                    results.append((subject, best, best_id))
        results.sort(key=lambda r: (-r[1], r[0]))
        return results[:top]

    def verify(self, probe: FingerTemplate | PreparedTemplate, subject_id: str, position: int = 0) -> tuple[float, int]:
        """1:1 against one subject's templates (of the same finger): (best raw score, template id), (0, -1) if none."""
        position = position or (probe.position if isinstance(probe, FingerTemplate) else 0)
        p = probe if isinstance(probe, PreparedTemplate) else prepare(probe)
        with self._lock.reading():
            slots = self._comparable_slots(subject_id, position)
            best, best_id = self._best_of(slots, self._scores_locked(p, slots))
            return (best, best_id) if best_id >= 0 else (0.0, -1)

    def prepared(self, template_id: int) -> PreparedTemplate:
        """A stored template as the matcher sees it (rebuilt from the rows; for tests and tools)."""
        with self._lock.reading():
            slot = self._slot_of[template_id]
            start, count = int(self._slot_start.data[slot]), int(self._slot_count.data[slot])
            rows = np.arange(start, start + count)
            return _prepared_from_rows(
                self._x.data[rows], self._y.data[rows], self._angle.data[rows], _full_cells(self._cells.data[rows]),
                self._retrieval.codes(self._list.data[rows], self._offset.data[rows]), int(self._slot_total.data[slot]),
            )

    # -- snapshots ------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write a snapshot atomically (temporary file, fsync, rename); no pickle inside.

        Templates and rows go to ``path`` (NumPy ``.npz``).  A trained IVF is written beside it
        (``<path>.<token>.ivf``, FAISS's own format, cylinders and ids inside) and named in the
        snapshot, so a restart reads it instead of retraining; a flat index's cylinders go into
        the snapshot in FAISS order.
        """
        path = Path(path)
        with self._lock.reading():
            live = np.fromiter(self._slot_of.values(), np.int64, len(self._slot_of))
            live.sort()
            counts = self._slot_count.data[live].astype(np.int64)
            rows = _ranges(self._slot_start.data[live], counts)
            arrays = {
                "format": np.array([SNAPSHOT_FORMAT]),
                "applied_sequence": np.array([self.applied_sequence]),
                "template_ids": self._slot_tid.data[live],
                "subjects": np.array([self._subject_of_slot[s] for s in live.tolist()], dtype=str),
                "positions": self._slot_position.data[live],
                "sizes": counts,
                "totals": self._slot_total.data[live],
                "x": self._x.data[rows], "y": self._y.data[rows], "angle": self._angle.data[rows], "cells": self._cells.data[rows],
                "lists": self._list.data[rows], "offsets": self._offset.data[rows],
                "trained_on": np.array([self._retrieval.trained_on]),
            }
            token = ""
            if self._retrieval.ivf:
                token = secrets.token_hex(8)
                ivf_path = path.with_name(f"{path.name}.{token}.ivf")
                tmp_ivf = ivf_path.with_name(ivf_path.name + ".tmp")
                faiss.write_index_binary(self._retrieval.index, str(tmp_ivf))
                with open(tmp_ivf, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp_ivf, ivf_path)
            else:
                codes, ids, _, _ = self._retrieval.all_entries()
                arrays["flat_codes"], arrays["flat_ids"] = codes, ids
            arrays["ivf_token"] = np.array([token])
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        for old in path.parent.glob(f"{path.name}.*.ivf"):
            if old.name != f"{path.name}.{token}.ivf":
                old.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path | str, **options) -> "FingerIndex":
        """Rebuild an index from a snapshot written by :meth:`save` (no training: a trained IVF is read back)."""
        path = Path(path)
        index = cls(**options)
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"][0]) != SNAPSHOT_FORMAT:
                raise ValueError(f"finger index snapshot format {int(z['format'][0])} is not {SNAPSHOT_FORMAT}")
            data = {k: z[k] for k in z.files}
        token = str(data["ivf_token"][0])
        with index._lock.writing():
            sizes = data["sizes"].astype(np.int64)
            n = len(sizes)
            index._slot_tid.replace(data["template_ids"].astype(np.int64))
            index._slot_start.replace(np.concatenate([[0], np.cumsum(sizes)[:-1]]) if n else sizes)
            index._slot_count.replace(sizes.astype(np.int16))
            index._slot_total.replace(data["totals"].astype(np.int16))
            index._slot_position.replace(data["positions"].astype(np.uint8))
            subjects = data["subjects"].tolist()
            interned: dict[str, str] = {}
            index._subject_of_slot = [interned.setdefault(s, s) for s in subjects]
            index._slot_of = {int(t): k for k, t in enumerate(data["template_ids"].tolist())}
            for k, subject in enumerate(index._subject_of_slot):
                index._slots_of_subject.setdefault(subject, []).append(k)
            index._x.replace(data["x"])
            index._y.replace(data["y"])
            index._angle.replace(data["angle"])
            index._cells.replace(data["cells"])
            if token:
                ivf_path = path.with_name(f"{path.name}.{token}.ivf")
                if not ivf_path.is_file():
                    raise ValueError(f"the snapshot's trained IVF {ivf_path.name} is missing")
                try:
                    ivf = faiss.read_index_binary(str(ivf_path))
                except RuntimeError as error:  # FAISS's own exception for a truncated or foreign file
                    raise ValueError(f"the snapshot's trained IVF {ivf_path.name} is unreadable: {error}") from None
                ivf.nprobe = index.nprobe
                index._retrieval = _Retrieval(ivf, int(data["trained_on"][0]))
                index._list.replace(data["lists"])
                index._offset.replace(data["offsets"])
            else:
                retrieval = _Retrieval.flat()
                flat_ids = data["flat_ids"]
                retrieval.add(data["flat_codes"], flat_ids)
                index._retrieval = retrieval
                # Row of each flat position: template's first row + minutia number.
                first_row = {t: int(s) for t, s in zip(data["template_ids"].tolist(), index._slot_start.view().tolist())}
                rows = np.array([first_row[i >> MINUTIA_BITS] + (i & 0xFF) for i in flat_ids.tolist()], np.int64)
                total_rows = int(sizes.sum())
                lists, offsets = np.zeros(total_rows, np.int32), np.zeros(total_rows, np.int64)
                offsets[rows] = np.arange(len(rows))
                index._list.replace(lists)
                index._offset.replace(offsets)
            index.applied_sequence = int(data["applied_sequence"][0])
        index._rebuild.request()  # a snapshot taken flat past the threshold (the build was deferred) builds now
        return index


def _prepared_from_rows(x, y_down, angle, cells, codes, total: int) -> PreparedTemplate:
    from matcher.finger.descriptors import ND

    n = len(x)
    bits = np.ascontiguousarray(codes).view(np.uint64).reshape(n, WORDS)
    cell_bits = np.unpackbits(np.asarray(cells, np.uint8), axis=1, bitorder="little")[:, :CELLS].astype(bool)
    valid = np.packbits(np.repeat(cell_bits, ND, axis=1), axis=1, bitorder="little").view(np.uint64).reshape(n, WORDS)
    counts = np.unpackbits(bits.view(np.uint8), axis=1).sum(axis=1).astype(np.int32)
    return PreparedTemplate(
        x.astype(np.float64), -(y_down.astype(np.float64)), angle.astype(np.float64) * ANGLE_UNIT,
        np.ascontiguousarray(bits), np.ascontiguousarray(valid), counts, np.arange(n, dtype=np.int32), total,
    )
