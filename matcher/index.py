"""The in-memory FAISS index of one gallery and modality, its id mapping, and snapshots.

FAISS ids are the store's template ids, so a change-log entry maps directly onto the index.
Subjects get dense integer codes; a dense array maps template id → subject code, so that a
whole batch of FAISS hits turns into subject codes with one NumPy gather.  The index knows
nothing of storage or gRPC.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

import native
from matcher.backends import ApproximateBackend, ExactBackend, VectorSlots
from matcher.batching import MicroBatcher
from matcher.locks import ReadWriteLock
from matcher.policy import IndexPolicy
from matcher.rebuild import BackgroundRebuild, RebuildingIndex, RebuildSteps

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 3  # 3: IVF-PQ fast scan with tombstones


@dataclass(frozen=True)
class SubjectHits:
    """Search result for one query: subjects best first, with their best template's similarity."""

    subject_ids: list[str]
    similarities: np.ndarray


@dataclass(frozen=True, slots=True)
class _Write:
    """A write made while an approximate build runs, replayed into the new backend before the swap."""

    ids: np.ndarray
    vectors: np.ndarray | None  # None: a removal


@dataclass(frozen=True)
class _Contents:
    """What an approximate build starts from: the live backend, and its template ids and vectors.

    ``vectors`` is ``None`` when the live backend is approximate: the retrain reads them from its
    shared slots, in chunks, off the lock.
    """

    current: ExactBackend | ApproximateBackend
    ids: np.ndarray
    vectors: np.ndarray | None


class VectorIndex(RebuildingIndex):
    """Search over unit vectors by inner product, exact or approximate as ``IndexPolicy`` says.

    Thread-safe: searches share a read lock, mutations take the write lock.  Crossing the
    policy's size threshold builds an approximate backend on a background thread from a copy;
    mutations made meanwhile are journaled and replayed before the swap (``matcher.rebuild``), so
    searches never wait for a build and nothing written during it is lost.
    """

    def __init__(self, dimension: int, model_id: str, policy: IndexPolicy = IndexPolicy(), vector_dir: Path | None = None) -> None:
        self.dimension = dimension
        self.model_id = model_id
        self.policy = policy
        # Where approximate backends keep their float32 vectors (None: in memory).  Each build
        # writes a new file, so a snapshot never names a file that a later build rewrote.
        self.vector_dir = vector_dir
        self._building_file: Path | None = None
        self.batch_threads = policy.batch_threads or len(os.sched_getaffinity(0))
        self.applied_sequence = 0
        self._batcher: MicroBatcher[SubjectHits] | None = (
            MicroBatcher(self._search_many, _trim_hits, policy.micro_batch) if policy.micro_batch > 1 else None
        )
        self._backend: ExactBackend | ApproximateBackend = ExactBackend(dimension)
        self._lock = ReadWriteLock()
        self._code_of_subject: dict[str, int] = {}
        self._subject_of_code: list[str | None] = []
        self._templates_of_code: dict[int, np.ndarray] = {}
        self._code_of_template = np.full(1024, -1, dtype=np.int64)
        self.builds = 0
        self._rebuild: BackgroundRebuild[_Contents, ApproximateBackend, _Write] = BackgroundRebuild(
            self._lock,
            RebuildSteps(
                self._needs_build, self._contents_locked, self._train, _replay, self._swap_locked, finished=self._built
            ),
            background=lambda: self.policy.background_build,
            name="index-build",
            failure="building the approximate index failed; staying on the current one",
            catch_up_above=1_000,
            logger=log,
        )

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

    # Writes run on one OpenMP thread whatever thread calls them: an IVF add on two threads
    # of a busy 2-core machine measured 24 ms instead of 0.8 ms (the threads spin for each other).
    def _add_vectors(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with _omp_threads(1):
            self._backend.add(ids, vectors)
        self._rebuild.record(_Write(ids, vectors))

    def _remove_vectors(self, ids: np.ndarray) -> None:
        with _omp_threads(1):
            self._backend.remove(ids)
        self._rebuild.record(_Write(ids, None))

    def _remove_locked(self, subject_id: str) -> int:
        code = self._code_of_subject.pop(subject_id, None)
        if code is None:
            return 0
        self._subject_of_code[code] = None
        ids = self._templates_of_code.pop(code, np.empty(0, dtype=np.int64))
        if ids.size:
            self._remove_vectors(ids)
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
                self._add_vectors(ids, vectors)
                self._code_of_template[ids] = code
                self._templates_of_code[code] = ids
            self.applied_sequence = max(self.applied_sequence, sequence)
        self._rebuild.request()

    def add_many(self, subject_ids: list[str], template_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Bulk-add templates of subjects not yet indexed (rebuild from the store, bulk loads)."""
        ids = np.ascontiguousarray(template_ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock.writing():
            codes = np.fromiter((self._code(s) for s in subject_ids), dtype=np.int64, count=len(subject_ids))
            self._grow_to(int(ids.max()) if ids.size else 0)
            self._add_vectors(ids, vectors)
            self._code_of_template[ids] = codes
            order = np.argsort(codes, kind="stable")
            sorted_codes = codes[order]
            starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
            for start, group in zip(starts, np.split(ids[order], starts[1:])):
                code = int(sorted_codes[start])
                previous = self._templates_of_code.get(code)
                self._templates_of_code[code] = group if previous is None else np.concatenate([previous, group])
        self._rebuild.request()

    # -- approximate builds ---------------------------------------------------------------
    def _needs_build(self) -> bool:
        backend = self._backend
        if isinstance(backend, ApproximateBackend):
            # Retrain at each growth step, and to shed tombstones once they are a tenth of the lists.
            return backend.ntotal >= self.policy.regrow_factor * backend.trained_on or backend.dead > max(10_000, backend.ntotal // 10)
        return self.policy.wants_approximate(backend.ntotal)

    @contextmanager
    def bulk_loading(self) -> Iterator[VectorIndex]:
        """Defer approximate builds until a bulk load is complete: one build instead of one per doubling."""
        with self._rebuild.deferred():
            yield self

    def apply_policy(self) -> None:
        """Start the approximate build the policy asks for, if any (after loading an exact snapshot)."""
        self._rebuild.request()

    def _contents_locked(self) -> _Contents:
        current = self._backend
        if isinstance(current, ApproximateBackend):
            return _Contents(current, np.flatnonzero(self._code_of_template >= 0).astype(np.int64), None)
        ids, vectors = current.contents()
        return _Contents(current, ids, vectors)

    def _train(self, contents: _Contents) -> ApproximateBackend:
        """Train and fill a new approximate backend off the lock (``BackgroundRebuild`` then swaps it in)."""
        current, ids, vectors = contents.current, contents.ids, contents.vectors
        with _omp_threads(self.policy.build_threads):
            if isinstance(current, ApproximateBackend):
                vectors = np.vstack([current.vectors(ids[i : i + 65_536]) for i in range(0, ids.size, 65_536)])
                return ApproximateBackend.train(self.dimension, ids, vectors, self.policy, current.slots, shared_slots=True)
            self._building_file = self._new_vector_file()
            slots = VectorSlots(self.dimension, self._building_file, capacity=ids.size + ids.size // 4)
            return ApproximateBackend.train(self.dimension, ids, vectors, self.policy, slots)

    def _swap_locked(self, fresh: ApproximateBackend) -> None:
        self._backend = fresh
        self.builds += 1

    def _built(self, fresh: ApproximateBackend | None, seconds: float) -> None:
        """After each build: its vector file is the live backend's now (or garbage); a swap frees the old copies."""
        self._building_file = None
        if fresh is None:
            return
        _return_freed_memory()
        log.info(
            "approximate index swapped in",
            extra={"model": self.model_id, "templates": fresh.ntotal, "index": fresh.kind, "build_s": round(seconds, 1)},
        )

    def _new_vector_file(self) -> Path | None:
        if self.vector_dir is None:
            return None
        return self.vector_dir / f"{self.model_id.replace('/', '_')}-{secrets.token_hex(6)}.vectors"

    def _remove_stale_vector_files(self, keep: Path | None) -> None:
        """After a snapshot: vector files neither it nor a running build refers to are garbage."""
        if self.vector_dir is None or not self.vector_dir.is_dir():
            return
        for path in self.vector_dir.glob("*.vectors"):
            if path not in (keep, self._building_file):
                path.unlink(missing_ok=True)

    # -- queries --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._backend.ntotal

    @property
    def index_type(self) -> str:
        return self._backend.kind

    @property
    def subject_count(self) -> int:
        return len(self._code_of_subject)

    def contains(self, subject_id: str) -> bool:
        return subject_id in self._code_of_subject

    def subject_ids(self) -> list[str]:
        """Every subject with a template here (a copy: counting a gallery's people at start-up)."""
        with self._lock.reading():
            return list(self._code_of_subject)

    def search(self, queries: np.ndarray, top_subjects: int) -> list[SubjectHits]:
        """The ``top_subjects`` best subjects per query, one (best) template each.

        On an exact index a lone query joins concurrent ones in one FAISS call
        (``matcher.batching``).  An approximate index gains nothing from batches (each query
        scans its own lists; fast scan was slower per query in batches), so concurrent queries
        run side by side under the shared read lock instead of queueing behind one leader.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if self._batcher is not None and queries.shape[0] == 1 and isinstance(self._backend, ExactBackend):
            return [self._batcher.search(queries[0], top_subjects)]
        return self._search_many(queries, top_subjects)

    def search_bulk(self, queries: np.ndarray, top_subjects: int, threads: int = 1) -> list[SubjectHits]:
        """``search`` for large batches (gallery-wide de-duplication): one FAISS call per batch on ``threads`` OpenMP threads.

        Callers run several such batches side by side, one thread each, rather than one batch on
        every core: a busy 2-core machine's OpenMP threads spin for each other.
        """
        return self._search_many(queries, top_subjects, bulk_threads=threads)

    def _search_many(self, queries: np.ndarray, top_subjects: int, bulk_threads: int = 0) -> list[SubjectHits]:
        """Search a batch of queries.

        A subject may own several templates, so we ask for more hits than subjects and widen
        until enough distinct subjects are found or the index is exhausted: any subject not
        seen among the top k templates ranks below every subject that was.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        threads = _threads_for(queries.shape[0], self.batch_threads) if not bulk_threads else _omp_threads(bulk_threads)
        with self._lock.reading(), threads:
            backend = self._backend
            total = backend.ntotal
            if total == 0 or top_subjects <= 0:
                return [SubjectHits([], np.empty(0, dtype=np.float32)) for _ in range(queries.shape[0])]
            k = min(total, max(2 * top_subjects, 16))
            wanted = min(top_subjects, self.subject_count)
            while True:
                similarities, template_ids = backend.search(queries, k, bulk=bulk_threads > 0)
                best_sims, best_codes = native.best_per_subject(similarities, template_ids, top_subjects, self._code_of_template)
                found = (best_codes >= 0).sum(axis=1).tolist()
                # Done when every query has its subjects or has seen all the index can give it
                # (an approximate search returns fewer hits than asked once its probed lists run out).
                if k >= total or all(f >= wanted or last < 0 for f, last in zip(found, template_ids[:, -1].tolist())):
                    break
                k = min(total, k * 4)
            names = self._subject_of_code
            return [
                SubjectHits([names[c] for c in best_codes[row, :n].tolist()], best_sims[row, :n].copy()) for row, n in enumerate(found)
            ]

    def stack(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """Templates as the ``[n, d]`` float32 matrix every method here takes."""
        return np.array(vectors, dtype=np.float32).reshape(-1, self.dimension)

    def best_similarity(self, queries: np.ndarray, subject_id: str) -> float | None:
        """1:1: the highest similarity of any query to any of the subject's templates (``None``: unknown)."""
        enrolled = self.subject_vectors(subject_id)
        if enrolled.size == 0 or len(queries) == 0:
            return None
        return float(np.max(queries @ enrolled.T))

    def subject_vectors(self, subject_id: str) -> np.ndarray:
        """The subject's template vectors (for 1:1 verification), shape ``[n, d]``."""
        with self._lock.reading():
            code = self._code_of_subject.get(subject_id)
            if code is None:
                return np.empty((0, self.dimension), dtype=np.float32)
            return self._backend.vectors(self._templates_of_code[code])

    def memory_bytes(self) -> int:
        """Bytes of process memory the index holds: the backend's structures and our id map."""
        return self._backend.memory_bytes() + self._code_of_template.nbytes

    # -- snapshots ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write a snapshot atomically (temp file, fsync, rename), consistent with ``applied_sequence``.

        An approximate index refers to its vector file rather than copying it: the file holds
        every vector the snapshot names, and replaying the log tail rewrites any slot reused since.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with self._lock.reading():
            codes = list(self._templates_of_code)
            backend = self._backend
            payload = {
                "format": np.array(SNAPSHOT_FORMAT),
                "dimension": np.array(self.dimension),
                "model_id": np.array(self.model_id),
                "sequence": np.array(self.applied_sequence),
                "subjects": np.array([self._subject_of_code[c] for c in codes], dtype=str),
                "counts": np.array([self._templates_of_code[c].size for c in codes], dtype=np.int64),
                "template_ids": (
                    np.concatenate([self._templates_of_code[c] for c in codes]) if codes else np.empty(0, np.int64)
                ),
            }
            vector_file = backend.slots.path if isinstance(backend, ApproximateBackend) else None
            if isinstance(backend, ApproximateBackend):
                backend.slots.flush()
                payload.update(backend.slots.state())
                payload["vector_file"] = np.array(vector_file.name if vector_file else "")
                payload["approximate"] = faiss.serialize_index(backend.ivf)
                payload["trained_on"] = np.array(backend.trained_on)
                payload["tombstones"] = backend.tombstones()
            else:
                payload["index"] = faiss.serialize_index(backend.faiss)
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
        self._remove_stale_vector_files(keep=vector_file)

    @classmethod
    def load(
        cls, path: Path, dimension: int, model_id: str, policy: IndexPolicy = IndexPolicy(), vector_dir: Path | None = None
    ) -> "VectorIndex | None":
        """Load a snapshot, or ``None`` when it is absent, unreadable, for another model or missing its vectors."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != SNAPSHOT_FORMAT:
                    return None
                if int(data["dimension"]) != dimension or str(data["model_id"]) != model_id:
                    return None
                if "approximate" in data and policy.approximate_from == 0:
                    return None  # the operator asked for exact search: rebuild from the store
                index = cls(dimension, model_id, policy, vector_dir)
                if "approximate" in data:
                    name = str(data["vector_file"])
                    vector_file = vector_dir / name if vector_dir is not None and name else None
                    slots = VectorSlots.restore(dimension, vector_file, data)
                    if slots is None:
                        return None
                    ivf = faiss.deserialize_index(data["approximate"])
                    index._backend = ApproximateBackend(ivf, slots, policy, int(data["trained_on"]), tombstones=data["tombstones"])
                else:
                    index._backend = ExactBackend(dimension, faiss.deserialize_index(data["index"]))
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
        if index.size != template_ids.size:
            return None
        return index


def _replay(backend: ApproximateBackend, journal: list[_Write]) -> None:
    """Apply journaled writes in order, runs of the same kind in one FAISS call each."""
    with _omp_threads(1):
        for removal, group in itertools.groupby(journal, key=lambda write: write.vectors is None):
            writes = list(group)
            ids = np.concatenate([w.ids for w in writes])
            if removal:
                backend.replay_remove(ids)
            else:
                backend.replay_add(ids, np.concatenate([w.vectors for w in writes]))


def _return_freed_memory() -> None:
    """Hand the build's freed copies (the float32 matrix, the old index) back to the kernel.

    glibc keeps freed blocks in its arenas: after a 1M bulk load the server held 2.2 GB of
    anonymous memory against 0.8 GB after a restart with the same index (RESULTS.md, "Scale").
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _trim_hits(hits: SubjectHits, top: int) -> SubjectHits:
    return SubjectHits(hits.subject_ids[:top], hits.similarities[:top])


def use_blas_from(queries: int, dimension: int) -> None:
    """Exhaustive search switches from FAISS's SIMD loop to BLAS at ``queries`` queries of ``dimension``.

    FAISS 1.15 compares ``queries × dimension`` with ``distance_compute_blas_threshold``; older
    versions compared the query count alone.  Set as a query count (8), every call used BLAS,
    and a lone query paid for it: the IVF coarse quantiser's search took the fast-scan search
    at 200k templates from 0.41 to 0.87 ms.  BLAS does pay off for micro-batches: over 100k × 512
    (one thread) 7.4 ms a query in batches of 8 against 22.8 ms one by one.
    """
    faiss.cvar.distance_compute_blas_threshold = max(1, queries) * dimension


@contextmanager
def _omp_threads(threads: int):
    """OpenMP thread count for the FAISS calls inside, restored afterwards (the setting is per thread)."""
    previous, wanted = faiss.omp_get_max_threads(), max(1, threads)
    if wanted == previous:  # the common case on the request path; each set costs a call into OpenMP
        yield
        return
    faiss.omp_set_num_threads(wanted)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _threads_for(queries: int, batch_threads: int):
    """A lone query on one thread, whatever thread it arrives on; a batch on ``batch_threads``."""
    return _omp_threads(batch_threads if queries >= 2 else 1)
