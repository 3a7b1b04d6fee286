"""The in-memory FAISS index of one gallery and modality, its id mapping, and snapshots.

FAISS ids are the store's template ids, so a change-log entry maps directly onto the index.
Subjects get dense integer codes; a dense array maps template id → subject code, so that a
whole batch of FAISS hits turns into subject codes with one NumPy gather.  The index knows
nothing of storage or gRPC.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

import native
from matcher.batching import MicroBatcher

SNAPSHOT_FORMAT = 1


class ReadWriteLock:
    """Many concurrent searches, or one writer: FAISS may not be searched while it is mutated."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self):
        with self._cond:
            # Writers first, or a steady stream of searches would starve enrolment and deletion.
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self):
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass(frozen=True)
class SubjectHits:
    """Search result for one query: subjects best first, with their best template's similarity."""

    subject_ids: list[str]
    similarities: np.ndarray


class VectorIndex:
    """Exact inner-product search over unit vectors (``IndexIDMap2(IndexFlatIP)``).

    Thread-safe: searches share a read lock, mutations take the write lock.
    """

    def __init__(self, dimension: int, model_id: str, micro_batch: int = 32, batch_threads: int = 0) -> None:
        self.dimension = dimension
        self.model_id = model_id
        self.micro_batch = micro_batch
        # A lone query is fastest on one thread; a batch uses every core (0: all of them).
        self.batch_threads = batch_threads or len(os.sched_getaffinity(0))
        self.applied_sequence = 0
        self._batcher: MicroBatcher[SubjectHits] | None = (
            MicroBatcher(self._search_many, _trim_hits, micro_batch) if micro_batch > 1 else None
        )
        self._faiss = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._lock = ReadWriteLock()
        self._code_of_subject: dict[str, int] = {}
        self._subject_of_code: list[str | None] = []
        self._templates_of_code: dict[int, np.ndarray] = {}
        self._code_of_template = np.full(1024, -1, dtype=np.int64)

    # -- mutation -------------------------------------------------------------------------
    def _code(self, subject_id: str) -> int:
        code = self._code_of_subject.get(subject_id)
        if code is None:
            code = len(self._subject_of_code)
            self._code_of_subject[subject_id] = code
            self._subject_of_code.append(subject_id)
        return code

    def _grow_to(self, max_template_id: int) -> None:
        if max_template_id < self._code_of_template.size:
            return
        size = self._code_of_template.size
        while size <= max_template_id:
            size *= 2
        grown = np.full(size, -1, dtype=np.int64)
        grown[: self._code_of_template.size] = self._code_of_template
        self._code_of_template = grown

    def _remove_locked(self, subject_id: str) -> int:
        code = self._code_of_subject.pop(subject_id, None)
        if code is None:
            return 0
        self._subject_of_code[code] = None
        ids = self._templates_of_code.pop(code, np.empty(0, dtype=np.int64))
        if ids.size:
            self._faiss.remove_ids(ids)
            self._code_of_template[ids] = -1
        return int(ids.size)

    def set_subject(self, subject_id: str, template_ids: np.ndarray, vectors: np.ndarray, sequence: int = 0) -> None:
        """Make ``subject_id``'s templates exactly these (idempotent: replay applies it again safely)."""
        ids = np.ascontiguousarray(template_ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(ids.size, self.dimension)
        with self._lock.writing():
            self._remove_locked(subject_id)
            if ids.size:
                code = self._code(subject_id)
                self._grow_to(int(ids.max()))
                self._faiss.add_with_ids(vectors, ids)
                self._code_of_template[ids] = code
                self._templates_of_code[code] = ids
            self.applied_sequence = max(self.applied_sequence, sequence)

    def add_many(self, subject_ids: list[str], template_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Bulk-add templates of subjects not yet indexed (rebuild from the store)."""
        ids = np.ascontiguousarray(template_ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock.writing():
            codes = np.fromiter((self._code(s) for s in subject_ids), dtype=np.int64, count=len(subject_ids))
            self._grow_to(int(ids.max()) if ids.size else 0)
            self._faiss.add_with_ids(vectors, ids)
            self._code_of_template[ids] = codes
            order = np.argsort(codes, kind="stable")
            sorted_codes = codes[order]
            starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
            for start, group in zip(starts, np.split(ids[order], starts[1:])):
                code = int(sorted_codes[start])
                previous = self._templates_of_code.get(code)
                self._templates_of_code[code] = group if previous is None else np.concatenate([previous, group])

    def remove_subject(self, subject_id: str, sequence: int = 0) -> int:
        """Remove every template of a subject; returns how many were removed."""
        with self._lock.writing():
            removed = self._remove_locked(subject_id)
            self.applied_sequence = max(self.applied_sequence, sequence)
            return removed

    def mark_applied(self, sequence: int) -> None:
        with self._lock.writing():
            self.applied_sequence = max(self.applied_sequence, sequence)

    # -- queries --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self._faiss.ntotal)

    @property
    def subject_count(self) -> int:
        return len(self._code_of_subject)

    def contains(self, subject_id: str) -> bool:
        return subject_id in self._code_of_subject

    def search(self, queries: np.ndarray, top_subjects: int) -> list[SubjectHits]:
        """The ``top_subjects`` best subjects per query, one (best) template each.

        A lone query joins concurrent ones in one FAISS call (``matcher.batching``).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if self._batcher is not None and queries.shape[0] == 1:
            return [self._batcher.search(queries[0], top_subjects)]
        return self._search_many(queries, top_subjects)

    def _search_many(self, queries: np.ndarray, top_subjects: int) -> list[SubjectHits]:
        """Exact search of a batch of queries.

        A subject may own several templates, so we ask FAISS for more hits than subjects and
        widen until enough distinct subjects are found or the index is exhausted: any subject
        not seen among the top k templates ranks below every subject that was.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        with self._lock.reading(), _threads_for(queries.shape[0], self.batch_threads):
            total = self.size
            if total == 0 or top_subjects <= 0:
                return [SubjectHits([], np.empty(0, dtype=np.float32)) for _ in range(queries.shape[0])]
            k = min(total, max(2 * top_subjects, 16))
            while True:
                similarities, template_ids = self._faiss.search(queries, k)
                codes = np.where(template_ids >= 0, self._code_of_template[np.maximum(template_ids, 0)], -1)
                best_sims, best_codes = native.best_per_subject(similarities, codes, top_subjects)
                found = (best_codes >= 0).sum(axis=1)
                if k >= total or found.min() >= min(top_subjects, self.subject_count):
                    break
                k = min(total, k * 4)
            names = self._subject_of_code
            hits = []
            for row in range(queries.shape[0]):
                n = int(found[row])
                hits.append(SubjectHits([names[c] for c in best_codes[row, :n]], best_sims[row, :n].copy()))
            return hits

    def subject_vectors(self, subject_id: str) -> np.ndarray:
        """The subject's template vectors (for 1:1 verification), shape ``[n, d]``."""
        with self._lock.reading():
            code = self._code_of_subject.get(subject_id)
            if code is None:
                return np.empty((0, self.dimension), dtype=np.float32)
            ids = self._templates_of_code[code]
            return np.vstack([self._faiss.reconstruct(int(i)) for i in ids])

    def memory_bytes(self) -> int:
        """Bytes held per the index's own structures: vectors, FAISS id map, our id map."""
        return self.size * (self.dimension * 4 + 8 + 8) + self._code_of_template.nbytes

    # -- snapshots ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write a snapshot atomically (temp file, fsync, rename), consistent with ``applied_sequence``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with self._lock.reading():
            codes = list(self._templates_of_code)
            payload = {
                "format": np.array(SNAPSHOT_FORMAT),
                "dimension": np.array(self.dimension),
                "model_id": np.array(self.model_id),
                "sequence": np.array(self.applied_sequence),
                "index": faiss.serialize_index(self._faiss),
                "subjects": np.array([self._subject_of_code[c] for c in codes], dtype=str),
                "counts": np.array([self._templates_of_code[c].size for c in codes], dtype=np.int64),
                "template_ids": (
                    np.concatenate([self._templates_of_code[c] for c in codes]) if codes else np.empty(0, np.int64)
                ),
            }
        with open(tmp, "wb") as handle:
            np.savez(handle, **payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @classmethod
    def load(cls, path: Path, dimension: int, model_id: str, micro_batch: int = 32) -> "VectorIndex | None":
        """Load a snapshot, or ``None`` when it is absent, unreadable or for another model."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != SNAPSHOT_FORMAT:
                    return None
                if int(data["dimension"]) != dimension or str(data["model_id"]) != model_id:
                    return None
                index = cls(dimension, model_id, micro_batch)
                index._faiss = faiss.deserialize_index(data["index"])
                index.applied_sequence = int(data["sequence"])
                subjects = [str(s) for s in data["subjects"]]
                counts = data["counts"]
                template_ids = data["template_ids"]
        except (OSError, KeyError, ValueError, RuntimeError):
            return None
        owners = np.repeat(np.arange(len(subjects)), counts)
        codes = [index._code(s) for s in subjects]
        index._grow_to(int(template_ids.max()) if template_ids.size else 0)
        index._code_of_template[template_ids] = np.asarray(codes, dtype=np.int64)[owners]
        for code, group in zip(codes, np.split(template_ids, np.cumsum(counts)[:-1])):
            index._templates_of_code[code] = group
        if index._faiss.ntotal != template_ids.size:
            return None
        return index


def _trim_hits(hits: SubjectHits, top: int) -> SubjectHits:
    return SubjectHits(hits.subject_ids[:top], hits.similarities[:top])


@contextmanager
def _threads_for(queries: int, batch_threads: int):
    """OpenMP thread count for one FAISS call, restored afterwards (the setting is per thread)."""
    if queries < 2 or batch_threads <= 1:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(batch_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
