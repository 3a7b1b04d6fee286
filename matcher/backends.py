"""Where an index's vectors live and how they are searched.

``ExactBackend``: every float32 vector in RAM, exhaustive inner product.
``ApproximateBackend``: IVF with 8-bit scalar-quantised codes in RAM (a quarter of float32) to
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

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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


class ApproximateBackend:
    """IVF-SQ8 candidates, re-scored exactly against the float32 vectors."""

    def __init__(
        self, ivf: faiss.IndexIVFScalarQuantizer, slots: VectorSlots, policy: IndexPolicy, trained_on: int, shared_slots: bool = False
    ) -> None:
        self.ivf = ivf
        self.slots = slots
        self.policy = policy
        self.trained_on = trained_on
        # A retrain reuses the live backend's slots: they already hold every vector.
        self.shared_slots = shared_slots
        self.ivf.nprobe = policy.probes_for(ivf.nlist)
        self.kind = f"IVF{ivf.nlist},SQ8+rescore(nprobe={ivf.nprobe})"

    @classmethod
    def train(
        cls, dimension: int, ids: np.ndarray, vectors: np.ndarray, policy: IndexPolicy, slots: VectorSlots, shared_slots: bool = False
    ) -> "ApproximateBackend":
        """Train the coarse quantiser and the scalar quantiser on a sample, then add everything."""
        lists = policy.lists_for(ids.size)
        ivf = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dimension), dimension, lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.niter = 10  # k-means converges well enough for coarse lists; 25 costs 2.5× the build
        ivf.cp.max_points_per_centroid = 64
        rng = np.random.default_rng(0)
        sample = vectors if ids.size <= 64 * lists else vectors[np.sort(rng.choice(ids.size, 64 * lists, replace=False))]
        ivf.train(np.ascontiguousarray(sample))
        # A hash-table direct map: remove_ids finds a template's list at once (deletion stays cheap).
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        backend = cls(ivf, slots, policy, int(ids.size), shared_slots)
        for start in range(0, ids.size, 65_536):
            backend.replay_add(ids[start : start + 65_536], vectors[start : start + 65_536])
        return backend

    @property
    def ntotal(self) -> int:
        return int(self.ivf.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.slots.put(ids, vectors)
        self.ivf.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        self.ivf.remove_ids(ids)
        self.slots.free(ids)

    def replay_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Apply a journaled add; with shared slots the live backend has written them already."""
        if not self.shared_slots:
            self.slots.put(ids, vectors)
        self.ivf.add_with_ids(vectors, ids)

    def replay_remove(self, ids: np.ndarray) -> None:
        self.ivf.remove_ids(ids)
        if not self.shared_slots:
            self.slots.free(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        _, candidates = self.ivf.search(queries, max(k, k * self.policy.rescore_factor))
        return self.slots.rescore(queries, candidates, k)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.slots.get(np.asarray(ids, dtype=np.int64))

    def memory_bytes(self) -> int:
        # SQ8 codes + list ids + direct-map hash entries, centroids, and the slots' own arrays.
        per_template = self.ivf.d + 8 + 24
        return self.ntotal * per_template + self.ivf.nlist * self.ivf.d * 4 + self.slots.memory_bytes()
