"""Where an index's vectors live and how they are searched.

``ExactBackend``: every float32 vector in RAM, exhaustive inner product.
``ApproximateBackend``: IVF with 4-bit product-quantised codes in RAM (1/64 of float32) to
find candidates, and the float32 vectors in ``VectorSlots`` (a file-backed map when the gallery
has a data directory) to re-score those candidates exactly, so ranking and scores are those of
exact search on whatever the IVF probe found.

Backends are not thread-safe on their own; ``matcher.index.VectorIndex`` locks around them.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

import native
from matcher.policy import IndexPolicy


class ExactBackend:
    """``IndexIDMap2(IndexFlatIP)``: exact, and fastest below ~100k templates."""

    kind = "IDMap2,Flat"

    def __init__(self, dimension: int, index: faiss.Index | None = None) -> None:
        self.dimension = dimension
        self.faiss = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    @property
    def ntotal(self) -> int:
        return int(self.faiss.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.faiss.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        self.faiss.remove_ids(ids)

    def search(self, queries: np.ndarray, k: int, bulk: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return self.faiss.search(queries, k)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return np.vstack([self.faiss.reconstruct(int(i)) for i in ids]) if len(ids) else np.empty((0, self.dimension), np.float32)

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (template id, vector), as copies: the input of an approximate build."""
        n = self.ntotal
        ids = faiss.vector_to_array(self.faiss.id_map).copy()
        flat = faiss.downcast_index(self.faiss.index)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), n * self.dimension).reshape(n, self.dimension).copy()
        return ids, vectors

    def memory_bytes(self) -> int:
        # vectors + FAISS id map + its reverse hash map (≈ 3 words a node).
        return self.ntotal * (self.dimension * 4 + 8 + 24)


class VectorSlots:
    """Float32 vectors by template id, in reusable slots; in RAM, or in a file mapped into memory.

    A file keeps the vectors out of the process's own memory (the kernel pages them in for the
    few candidates each query re-scores) and lets a snapshot refer to them instead of copying.
    """

    def __init__(self, dimension: int, path: Path | None, capacity: int = 1024) -> None:
        self.dimension = dimension
        self.path = path
        self._slot_of = np.full(1024, -1, dtype=np.int64)
        self._free: list[int] = []
        self.used = 0  # slots ever handed out (high-water mark)
        self._data = self._allocate(max(capacity, 1024), fresh=True)

    def _allocate(self, capacity: int, fresh: bool = False) -> np.ndarray:
        if self.path is None:
            grown = np.zeros((capacity, self.dimension), dtype=np.float32)
            if not fresh:
                grown[: self.used] = self._data[: self.used]
            return grown
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w+b" if fresh else "r+b") as handle:
            handle.truncate(capacity * self.dimension * 4)
        return np.memmap(self.path, dtype=np.float32, mode="r+", shape=(capacity, self.dimension))

    @property
    def capacity(self) -> int:
        return int(self._data.shape[0])

    def put(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store (or overwrite) the vectors of these template ids."""
        if ids.size == 0:
            return
        top = int(ids.max())
        if top >= self._slot_of.size:
            grown = np.full(max(top + 1, 2 * self._slot_of.size), -1, dtype=np.int64)
            grown[: self._slot_of.size] = self._slot_of
            self._slot_of = grown
        slots = self._slot_of[ids]
        for j in np.flatnonzero(slots < 0):
            slots[j] = self._free.pop() if self._free else self._next_slot()
        self._slot_of[ids] = slots
        self._data[slots] = vectors

    def _next_slot(self) -> int:
        if self.used == self.capacity:
            self._data = self._allocate(2 * self.capacity)
        self.used += 1
        return self.used - 1

    def free(self, ids: np.ndarray) -> None:
        ids = ids[ids < self._slot_of.size]
        slots = self._slot_of[ids]
        self._free.extend(int(s) for s in slots[slots >= 0])
        self._slot_of[ids] = -1

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Vectors of these ids; ids without a vector (−1, removed) read as zeros."""
        safe = np.where((ids >= 0) & (ids < self._slot_of.size), ids, 0)
        slots = np.where(ids >= 0, self._slot_of[safe], -1)
        out = self._data[np.maximum(slots, 0)]
        out[slots < 0] = 0.0
        return out

    def rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` candidates per query by exact inner product (``native.rescore``)."""
        return native.rescore(queries, candidates, self._slot_of, self._data, k)

    def flush(self) -> None:
        if isinstance(self._data, np.memmap):
            self._data.flush()

    def state(self) -> dict[str, np.ndarray]:
        live = np.flatnonzero(self._slot_of >= 0)
        payload = {
            "slot_ids": live.astype(np.int64),
            "slots": self._slot_of[live],
            "slots_used": np.array(self.used),
            "slots_free": np.array(self._free, dtype=np.int64),
        }
        if self.path is None:
            payload["slot_vectors"] = np.asarray(self._data[: self.used])
        return payload

    @classmethod
    def restore(cls, dimension: int, path: Path | None, state) -> "VectorSlots | None":
        """Reopen slots from a snapshot's state; ``None`` if the vector file cannot back it."""
        used = int(state["slots_used"])
        slots = cls.__new__(cls)
        slots.dimension, slots.path, slots.used = dimension, path, used
        slots._free = [int(s) for s in state["slots_free"]]
        ids = state["slot_ids"]
        slots._slot_of = np.full(max(1024, int(ids.max()) + 1 if ids.size else 0), -1, dtype=np.int64)
        slots._slot_of[ids] = state["slots"]
        if path is None:
            if "slot_vectors" not in state:
                return None
            slots._data = np.array(state["slot_vectors"], dtype=np.float32).reshape(used, dimension)
            if used == 0:
                slots._data = np.zeros((1024, dimension), dtype=np.float32)
            return slots
        try:
            size = os.path.getsize(path)
        except OSError:
            return None
        rows = size // (dimension * 4)
        if rows < max(used, 1):
            return None
        slots._data = np.memmap(path, dtype=np.float32, mode="r+", shape=(rows, dimension))
        return slots

    def memory_bytes(self) -> int:
        """Anonymous memory only: a file-backed map is page cache, not the process's own."""
        own = self._slot_of.nbytes + 8 * len(self._free)
        return own if self.path is not None else own + self._data.nbytes


RESCORE_MIN = 32


class ApproximateBackend:
    """IVF-PQ fast-scan candidates, re-scored exactly against the float32 vectors.

    4-bit PQ codes (``d/32`` bytes a template) are scanned with SIMD lookup tables about ten
    times faster than 8-bit scalar codes, so a query can probe many more lists for the same
    time: the lists probed, not the code's precision, decide recall here, because the exact
    re-scoring fixes the order.  Measured at 1M × 512 on this machine: SQ8 at 1/32 of the lists
    gave rank-1 agreement 0.959 in 5.6 ms, PQ fast scan at 1/8 gave 0.998 in 0.84 ms.  Probing
    1/8 of 3,577 lists, 64, 32 and 16 sub-vectors agreed alike (0.997, 0.997, 0.996) in 1.72, 0.99
    and 0.80 ms: 32 (16 dimensions each) halves the scan, below that the fixed costs dominate.

    Deletion is a tombstone: the vector's slot is freed at once (re-scoring skips ids without a
    slot, so the template is gone from every result from then on) and the dead entry stays in
    its list until the next background rebuild.  FAISS 1.15's ``remove_ids`` on fast-scan lists
    corrupts codes added after it (measured: 20% of later additions still findable), so it is
    never called.
    """

    def __init__(
        self, ivf: faiss.IndexIVF, slots: VectorSlots, policy: IndexPolicy, trained_on: int, shared_slots: bool = False,
        tombstones: np.ndarray | None = None,
    ) -> None:
        self.ivf = ivf
        self.slots = slots
        self.policy = policy
        self.trained_on = trained_on
        # A retrain reuses the live backend's slots: they already hold every vector.
        self.shared_slots = shared_slots
        self.ivf.nprobe = policy.probes_for(ivf.nlist)
        self.kind = f"IVF{ivf.nlist},PQ{self.ivf.pq.M}x4fs+rescore(nprobe={ivf.nprobe})"
        self._tombstones: list[np.ndarray] = [] if tombstones is None or tombstones.size == 0 else [tombstones]
        self._dead = sum(t.size for t in self._tombstones)

    @staticmethod
    def subquantizers(dimension: int) -> int:
        """PQ sub-vectors of 16 dimensions, at least 16 of them (16 codes of 4 bits are too coarse below).

        The nearest even divisor of ``dimension`` at or below that (fast scan packs codes in pairs).
        """
        for m in range(max(2, dimension // 16, min(16, dimension // 2)), 1, -1):
            if dimension % m == 0 and m % 2 == 0:
                return m
        return 2 if dimension % 2 == 0 else 1

    @classmethod
    def train(
        cls, dimension: int, ids: np.ndarray, vectors: np.ndarray, policy: IndexPolicy, slots: VectorSlots, shared_slots: bool = False
    ) -> "ApproximateBackend":
        """Train the coarse quantiser and the product quantiser on a sample, then add everything."""
        lists = policy.lists_for(ids.size)
        ivf = faiss.IndexIVFPQFastScan(
            faiss.IndexFlatIP(dimension), dimension, lists, cls.subquantizers(dimension), 4, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.niter = 10  # k-means converges well enough for coarse lists; 25 costs 2.5× the build
        ivf.cp.max_points_per_centroid = 64
        rng = np.random.default_rng(0)
        sample = vectors if ids.size <= 64 * lists else vectors[np.sort(rng.choice(ids.size, 64 * lists, replace=False))]
        ivf.train(np.ascontiguousarray(sample))
        backend = cls(ivf, slots, policy, int(ids.size), shared_slots)
        for start in range(0, ids.size, 65_536):
            backend.replay_add(ids[start : start + 65_536], vectors[start : start + 65_536])
        return backend

    @property
    def ntotal(self) -> int:
        return int(self.ivf.ntotal) - self._dead

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.slots.put(ids, vectors)
        self.ivf.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        self.slots.free(ids)
        self._bury(ids)

    def replay_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Apply a journaled add; with shared slots the live backend has written them already."""
        if not self.shared_slots:
            self.slots.put(ids, vectors)
        self.ivf.add_with_ids(vectors, ids)

    def replay_remove(self, ids: np.ndarray) -> None:
        if not self.shared_slots:
            self.slots.free(ids)
        self._bury(ids)

    def _bury(self, ids: np.ndarray) -> None:
        self._tombstones.append(np.array(ids, dtype=np.int64))
        self._dead += ids.size

    @property
    def dead(self) -> int:
        """Tombstoned entries still in the lists (``VectorIndex`` rebuilds when they pile up)."""
        return self._dead

    def tombstones(self) -> np.ndarray:
        return np.concatenate(self._tombstones) if self._tombstones else np.empty(0, np.int64)

    def search(self, queries: np.ndarray, k: int, bulk: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``bulk``: one FAISS call for the whole batch (de-duplication's hundreds of queries: 0.12 against
        0.28 ms a query one by one at 200k × 704, one thread), else one call per query (small batches)."""
        # 4-bit codes rank coarsely: re-score at least RESCORE_MIN candidates (≈ 10 µs at 1M), and
        # the tombstones' worth more, so dead entries never crowd out live ones.
        wanted = max(RESCORE_MIN, int(k * self.policy.rescore_factor)) + min(self._dead, 64)
        if queries.shape[0] == 1 or bulk:
            _, candidates = self.ivf.search(queries, wanted)
        else:  # one at a time: 1.0 ms a query alone against 2.6–3.0 ms in batches of 4–8 (1M, one thread)
            candidates = np.vstack([self.ivf.search(queries[i : i + 1], wanted)[1] for i in range(queries.shape[0])])
        return self.slots.rescore(queries, candidates, k)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.slots.get(np.asarray(ids, dtype=np.int64))

    def memory_bytes(self) -> int:
        # PQ codes (4 bits a sub-vector) + list ids, centroids, PQ tables, and the slots' own arrays.
        per_template = self.ivf.pq.M // 2 + 8
        return int(self.ivf.ntotal) * per_template + self.ivf.nlist * self.ivf.d * 4 + self.slots.memory_bytes()
