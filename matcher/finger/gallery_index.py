"""``FingerGalleryIndex``: a gallery's finger modality, behind the interface ``VectorIndex`` offers.

``matcher.gallery.Gallery`` keeps one index per modality and treats them alike: set or remove a
subject's templates, search, compare 1:1, snapshot.  Finger templates arrive as ISO/IEC 19794-2
records (the bytes the store keeps); this adapter parses them once and hands the minutiae to the
two-stage ``FingerIndex``.  Similarities are the minutiae matcher's raw scores, which the
gallery's finger calibration turns into ``-log10(FMR)`` like any other modality's.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from matcher.finger.descriptors import PreparedTemplate, prepare
from matcher.finger.index import FingerIndex
from matcher.finger.interchange import iso2005
from matcher.finger.interchange.common import InvalidIsoRecord
from matcher.finger.template import FingerTemplate
from matcher.index import SubjectHits

#: Prepared templates kept for records seen by ``prefetch`` and not yet indexed (a batch or two).
_PREFETCH_LIMIT = 4096


def parse_record(record: np.ndarray | bytes) -> FingerTemplate:
    """The one finger view of a stored (single-view ISO/IEC 19794-2:2005) record; ``InvalidIsoRecord`` otherwise.

    Records of several views never get here silently truncated: galleries split them into one
    stored record per view first (``FingerModality.split``).
    """
    views = iso2005.read(bytes(np.asarray(record, dtype=np.uint8)) if not isinstance(record, bytes) else record).views
    if len(views) != 1:
        raise InvalidIsoRecord(
            f"the record holds {len(views)} finger views; a stored template is one view (send it as a sample to have it split)",
            record_field="header.views",
        )
    return views[0]


def _of_index(name: str) -> property:
    """A read-only attribute of the wrapped ``FingerIndex``, under the name ``ModalityIndex`` gives it."""
    return property(lambda self: getattr(self.index, name), doc=f"``FingerIndex.{name}``")


class FingerGalleryIndex:
    """One gallery's finger templates, 1:N by MCC retrieval + minutiae re-ranking."""

    dimension = 0  # records are variable-length; nothing to check against

    def __init__(self, model_id: str, index: FingerIndex | None = None, background_build: bool = True) -> None:
        self.model_id = model_id
        self.index = index if index is not None else FingerIndex(background_build=background_build)
        self._prefetched: OrderedDict[bytes, Future] = OrderedDict()  # record → (template, prepared), being computed
        self._prefetch_lock = threading.Lock()

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def stack(records: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(records)

    def _prepare_all(self, records: Sequence[np.ndarray]) -> list[tuple[FingerTemplate, PreparedTemplate]]:
        """Parse and prepare records, the cylinder kernel on every core (it releases the GIL); prefetched ones reused."""
        keys = [bytes(np.asarray(r, dtype=np.uint8)) for r in records]
        with self._prefetch_lock:
            ready = [self._prefetched.pop(k, None) for k in keys]
        done: list = [None] * len(keys)
        for i, future in enumerate(ready):
            if future is not None:
                try:
                    done[i] = future.result()
                except Exception:  # parse or prepare failed there: redone below, raising here
                    done[i] = None
        missing = [i for i, d in enumerate(done) if d is None]
        if missing:
            templates = [parse_record(keys[i]) for i in missing]
            for i, t, p in zip(missing, templates, _prepare_parallel(templates)):
                done[i] = (t, p)
        return done

    def prefetch(self, records: Sequence[np.ndarray]) -> None:
        """Start parsing and preparing records about to be indexed (a batch being validated and stored), on every core.

        Returns at once: ``set_subject`` / ``add_many`` wait for the results, so the work
        overlaps the store's write.  A record never indexed drops out of the small cache in time.
        """
        pool = _pool()
        keys = [bytes(np.asarray(r, dtype=np.uint8)) for r in records]
        with self._prefetch_lock:
            for key in keys:
                if key not in self._prefetched:
                    self._prefetched[key] = pool.submit(_parse_and_prepare, key)
            while len(self._prefetched) > _PREFETCH_LIMIT:
                self._prefetched.popitem(last=False)

    def set_subject(self, subject_id: str, template_ids: np.ndarray, records: Sequence[np.ndarray], sequence: int = 0) -> None:
        prepared = self._prepare_all(records)
        self.index.set_subject(subject_id, [(t, _positioned(p, template)) for t, (template, p) in zip(template_ids.tolist(), prepared)], sequence)

    def add_many(self, subject_ids: list[str], template_ids: np.ndarray, records: Sequence[np.ndarray]) -> None:
        prepared = self._prepare_all(records)
        self.index.add_many(
            [(s, t, _positioned(p, template)) for s, t, (template, p) in zip(subject_ids, template_ids.tolist(), prepared)]
        )

    def remove_subject(self, subject_id: str, sequence: int = 0) -> int:
        return self.index.remove_subject(subject_id, sequence)

    def mark_applied(self, sequence: int) -> None:
        self.index.mark_applied(sequence)

    def bulk_loading(self):
        """No retrieval retraining inside the block (one build at its end, if the size calls for it)."""
        return self.index.bulk_loading()

    def apply_policy(self) -> None:
        """Nothing to decide: ``FingerIndex`` turns its retrieval stage into IVF by itself."""

    def wait_for_build(self, timeout: float | None = None) -> None:
        self.index.wait_for_build(timeout)

    # -- reads ----------------------------------------------------------------------------
    rebuilding = _of_index("rebuilding")
    applied_sequence = _of_index("applied_sequence")
    size = _of_index("size")
    subject_count = _of_index("subjects")

    @property
    def index_type(self) -> str:
        return f"MCC-{self.index.retrieval_type}+minutiae(shortlist={self.index.shortlist})"

    def contains(self, subject_id: str) -> bool:
        return self.index.contains(subject_id)

    def subject_ids(self) -> list[str]:
        return self.index.subject_ids()

    def search(self, probes: Sequence[np.ndarray], top_subjects: int) -> list[SubjectHits]:
        """One ``SubjectHits`` per probe record: subjects by their best template's raw score."""
        hits = []
        for record in probes:
            found = self.index.search(parse_record(record), top_subjects)
            hits.append(SubjectHits([s for s, _, _ in found], np.array([score for _, score, _ in found], dtype=np.float32)))
        return hits

    def best_similarity(self, probes: Sequence[np.ndarray], subject_id: str) -> float | None:
        """1:1: the best raw score of any probe against any of the subject's templates."""
        if not self.contains(subject_id) or not probes:
            return None
        return max(self.index.verify(parse_record(r), subject_id)[0] for r in probes)

    def memory_bytes(self) -> int:
        """The index's own accounting (FAISS codes and ids, row arrays, per-template arrays and dictionaries)."""
        return self.index.memory_bytes()

    # -- snapshots ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.index.save(path)

    @classmethod
    def load(cls, path: Path, model_id: str, background_build: bool = True) -> "FingerGalleryIndex | None":
        """The snapshot at ``path``, or ``None`` if there is none (or it is of another format)."""
        if not path.exists():
            return None
        try:
            return cls(model_id, FingerIndex.load(path, background_build=background_build))
        except (ValueError, KeyError, OSError):
            return None



def _positioned(prepared: PreparedTemplate, template: FingerTemplate) -> tuple[PreparedTemplate, int]:
    """A prepared template with its record's finger position (``FingerIndex`` takes the pair)."""
    return (prepared, template.position)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0))), thread_name_prefix="finger-prepare")
        return _POOL


def _parse_and_prepare(record: bytes) -> tuple[FingerTemplate, PreparedTemplate]:
    template = parse_record(record)
    return template, prepare(template)


def _prepare_parallel(templates: Sequence[FingerTemplate]) -> list[PreparedTemplate]:
    """``prepare`` of each, on up to one thread per core when there are several."""
    if len(templates) < 4:
        return [prepare(t) for t in templates]
    pool = _pool()
    chunk = max(1, len(templates) // (4 * pool._max_workers))
    parts = [templates[i : i + chunk] for i in range(0, len(templates), chunk)]
    return [p for part in pool.map(lambda ts: [prepare(t) for t in ts], parts) for p in part]
