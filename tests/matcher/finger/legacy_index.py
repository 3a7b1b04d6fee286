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
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from matcher.finger.template import FingerTemplate
from matcher.errors import InvalidArgument
from matcher.finger.descriptors import BITS, WORDS, PreparedTemplate, prepare
from matcher.finger.index import _trained_ivf
from matcher.finger.matching import match
from matcher.locks import ReadWriteLock
from matcher.rebuild import BackgroundRebuild, RebuildingIndex, RebuildSteps

SNAPSHOT_FORMAT = 2  # 2: finger positions
MINUTIA_BITS = 8
MAX_TEMPLATE_ID = (1 << (63 - MINUTIA_BITS)) - 1

log = logging.getLogger(__name__)


def _cylinder_ids(template_ids: Iterable[int], sizes: Iterable[int]) -> np.ndarray:
    parts = [(np.int64(t) << MINUTIA_BITS) | np.arange(n, dtype=np.int64) for t, n in zip(template_ids, sizes)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _binary_ivf(codes: np.ndarray, ids: np.ndarray, nprobe: int) -> faiss.IndexBinary:
    """The product's trained IVF (same lists and quantizer: this oracle checks storage), filled by FAISS's ``add_with_ids``."""
    index = _trained_ivf(codes, nprobe)
    index.add_with_ids(codes, ids)
    return index


@dataclass(frozen=True)
class _Retrieval:
    """A binary IVF built aside, and how many cylinders it was trained on (the next rebuild comes at twice that)."""

    index: faiss.IndexBinary
    trained_on: int


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
        self._templates: dict[int, PreparedTemplate] = {}
        self._subject_of_template: dict[int, str] = {}
        self._templates_of_subject: dict[str, list[int]] = {}
        self._position: dict[int, int] = {}  # ISO finger position of a template, 0 unknown
        self._faiss = self._new_flat()
        self._trained_at = 0
        self.last_penetration = 0.0
        # Journals the ids of the templates written while a build runs: their codes are redone before the swap.
        self._rebuild: BackgroundRebuild[tuple[np.ndarray, np.ndarray], _Retrieval, int] = BackgroundRebuild(
            self._lock,
            RebuildSteps(self._wants_ivf, self._all_codes_locked, self._train, self._redo_locked, self._swap_locked),
            background=lambda: self.background_build,
            name="finger-index-build",
            failure="rebuilding the finger retrieval index failed; staying on the current one",
            logger=log,
        )

    # -- mutation -------------------------------------------------------------------------
    @staticmethod
    def _new_flat() -> faiss.IndexBinary:
        return faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(BITS))

    def set_subject(
        self,
        subject_id: str,
        templates: Iterable[tuple[int, FingerTemplate | PreparedTemplate]],
        sequence: int = 0,
    ) -> None:
        """Make ``subject_id``'s finger templates exactly these (idempotent on replay)."""
        self._put(subject_id, templates, sequence, replace=True)

    def add(self, subject_id: str, templates: Iterable[tuple[int, FingerTemplate | PreparedTemplate]]) -> None:
        """Add templates to a subject's (a rebuild from the store streams a subject's rows in batches)."""
        self._put(subject_id, templates, 0, replace=False)

    def _put(self, subject_id: str, templates, sequence: int, replace: bool) -> None:
        prepared = []
        for template_id, template in templates:
            if not 0 <= int(template_id) <= MAX_TEMPLATE_ID:
                raise InvalidArgument("template_id", f"{template_id} is out of range 0–{MAX_TEMPLATE_ID}")
            position = template.position if isinstance(template, FingerTemplate) else 0
            prepared.append((int(template_id), template if isinstance(template, PreparedTemplate) else prepare(template), position))
        with self._lock.writing():
            if replace:
                self._remove_locked(subject_id)
            for template_id, p, position in prepared:
                if template_id in self._subject_of_template:
                    self._remove_template_locked(template_id)
                self._templates[template_id] = p
                self._position[template_id] = position
                self._subject_of_template[template_id] = subject_id
                self._templates_of_subject.setdefault(subject_id, []).append(template_id)
                self._add_codes_locked(template_id, p)
            self.applied_sequence = max(self.applied_sequence, sequence)
        self._rebuild.request()

    def _add_codes_locked(self, template_id: int, p: PreparedTemplate) -> None:
        self._rebuild.record(template_id)
        if p.size:
            self._faiss.add_with_ids(p.index_codes(), _cylinder_ids([template_id], [p.size]))

    def _remove_template_locked(self, template_id: int) -> None:
        p = self._templates.pop(template_id)
        self._position.pop(template_id, None)
        subject = self._subject_of_template.pop(template_id)
        self._templates_of_subject[subject].remove(template_id)
        if not self._templates_of_subject[subject]:
            del self._templates_of_subject[subject]
        self._rebuild.record(template_id)
        if p.size:
            self._faiss.remove_ids(_cylinder_ids([template_id], [p.size]))

    def _remove_locked(self, subject_id: str) -> int:
        ids = list(self._templates_of_subject.get(subject_id, ()))
        for template_id in ids:
            self._remove_template_locked(template_id)
        return len(ids)

    def _wants_ivf(self) -> bool:
        """IVF from the threshold on, retrained at each doubling: the lists must follow the gallery."""
        n = self._faiss.ntotal
        return n >= self.ivf_threshold and n >= 2 * self._trained_at

    def _train(self, contents: tuple[np.ndarray, np.ndarray]) -> _Retrieval:
        """Train and fill off the lock; ``BackgroundRebuild`` then redoes the templates written meanwhile and swaps."""
        codes, ids = contents
        return _Retrieval(_binary_ivf(codes, ids, self.nprobe), len(codes))

    def _redo_locked(self, fresh: _Retrieval, changed_ids: list[int]) -> None:
        """Templates written during the build: drop whatever codes the copy had of them, add those still enrolled."""
        changed = sorted(set(changed_ids))
        if changed:
            fresh.index.remove_ids(_cylinder_ids(changed, [1 << MINUTIA_BITS] * len(changed)))
        present = [t for t in changed if t in self._templates and self._templates[t].size]
        if present:
            fresh.index.add_with_ids(
                np.ascontiguousarray(np.concatenate([self._templates[t].index_codes() for t in present])),
                _cylinder_ids(present, [self._templates[t].size for t in present]),
            )

    def _swap_locked(self, fresh: _Retrieval) -> None:
        self._faiss, self._trained_at = fresh.index, fresh.trained_on

    def _rebuild_locked(self, ivf: bool) -> None:
        codes, ids = self._all_codes_locked()
        if ivf and len(codes) >= self.ivf_threshold:
            self._swap_locked(self._train((codes, ids)))
        else:
            self._faiss, self._trained_at = self._new_flat(), 0
            if len(codes):
                self._faiss.add_with_ids(codes, ids)

    def _all_codes_locked(self) -> tuple[np.ndarray, np.ndarray]:
        filled = [(t, p) for t, p in self._templates.items() if p.size]
        if not filled:
            return np.zeros((0, BITS // 8), np.uint8), np.zeros(0, np.int64)
        codes = np.ascontiguousarray(np.concatenate([p.index_codes() for _, p in filled]))
        return codes, _cylinder_ids([t for t, _ in filled], [p.size for _, p in filled])

    # -- queries --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._templates)

    @property
    def subjects(self) -> int:
        return len(self._templates_of_subject)

    @property
    def retrieval_type(self) -> str:
        return "BinaryIVF" if self._trained_at else "BinaryFlat"

    def contains(self, subject_id: str) -> bool:
        return subject_id in self._templates_of_subject

    def subject_ids(self) -> list[str]:
        """Every subject with a finger template here (a copy)."""
        with self._lock.reading():
            return list(self._templates_of_subject)

    def minutiae_count(self) -> int:
        """Minutiae with a cylinder, over every template (what memory scales with)."""
        return int(self._faiss.ntotal)

    def candidates(self, probe: PreparedTemplate) -> list[str]:
        """Stage 1: the shortlist of subjects, most votes first."""
        with self._lock.reading():
            return self._candidates_locked(probe)

    def _candidates_locked(self, probe: PreparedTemplate) -> list[str]:
        if probe.size == 0 or self._faiss.ntotal == 0:
            return []
        k = min(self.neighbours, self._faiss.ntotal)
        _, hits = self._faiss.search(probe.index_codes(), k)
        rows = np.repeat(np.arange(hits.shape[0]), k)
        templates = (hits.reshape(-1) >> MINUTIA_BITS)
        valid = hits.reshape(-1) >= 0
        subject_codes: dict[str, int] = {}
        codes = np.fromiter(
            (subject_codes.setdefault(self._subject_of_template.get(int(t), ""), len(subject_codes)) for t in templates[valid]),
            dtype=np.int64,
        )
        names = list(subject_codes)
        # One vote per (probe minutia, subject): a subject with many similar cylinders near one
        # probe minutia is not more likely, only more repetitive.
        pairs = np.unique(rows[valid] * (len(names) + 1) + codes)
        votes = np.bincount(pairs % (len(names) + 1), minlength=len(names))
        order = np.lexsort((np.arange(len(names)), -votes))[: self.shortlist]
        return [names[i] for i in order if names[i]]

    def _comparable(self, template_id: int, position: int) -> bool:
        """A probe of a known finger meets only the same finger (or prints of unknown position).

        Ten-print records would otherwise cost ten matches per candidate and ten chances of a
        false match.
        """
        return not position or self._position.get(template_id, 0) in (0, position)

    def _best_locked(self, p: PreparedTemplate, subject: str, position: int) -> tuple[float, int]:
        best, best_id = -1.0, -1
        for template_id in self._templates_of_subject.get(subject, ()):
            if self._comparable(template_id, position):
                score = match(p, self._templates[template_id])
                if score > best:
                    best, best_id = score, template_id
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
            self.last_penetration = len(shortlist) / max(1, len(self._templates_of_subject))
            results = []
            for subject in shortlist:
                best, best_id = self._best_locked(p, subject, position)
                if best_id >= 0:
                    results.append((subject, best, best_id))
        results.sort(key=lambda r: (-r[1], r[0]))
        return results[:top]

    def verify(self, probe: FingerTemplate | PreparedTemplate, subject_id: str, position: int = 0) -> tuple[float, int]:
        """1:1 against one subject's templates (of the same finger): (best raw score, template id), (0, -1) if none."""
        position = position or (probe.position if isinstance(probe, FingerTemplate) else 0)
        p = probe if isinstance(probe, PreparedTemplate) else prepare(probe)
        with self._lock.reading():
            best, best_id = self._best_locked(p, subject_id, position)
            return (best, best_id) if best_id >= 0 else (0.0, -1)

    # -- snapshots ------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write a snapshot atomically (temporary file, fsync, rename); no pickle inside."""
        path = Path(path)
        with self._lock.reading():
            ids = np.array(sorted(self._templates), dtype=np.int64)
            preps = [self._templates[int(t)] for t in ids]
            sizes = np.array([p.size for p in preps], dtype=np.int64)
            cat = lambda name, shape: np.concatenate([getattr(p, name) for p in preps]) if preps else np.zeros(shape)  # noqa: E731
            arrays = {
                "format": np.array([SNAPSHOT_FORMAT]),
                "applied_sequence": np.array([self.applied_sequence]),
                "template_ids": ids,
                "subjects": np.array([self._subject_of_template[int(t)] for t in ids], dtype=str),
                "positions": np.array([self._position.get(int(t), 0) for t in ids], dtype=np.int64),
                "sizes": sizes,
                "totals": np.array([p.total for p in preps], dtype=np.int64),
                "x": cat("x", (0,)), "y": cat("y", (0,)), "theta": cat("theta", (0,)),
                "bits": cat("bits", (0, WORDS)).astype(np.uint64), "valid": cat("valid", (0, WORDS)).astype(np.uint64),
                "bit_counts": cat("bit_counts", (0,)).astype(np.int32), "source": cat("source", (0,)).astype(np.int32),
            }
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | str, **options) -> "FingerIndex":
        """Rebuild an index from a snapshot written by :meth:`save`."""
        index = cls(**options)
        with np.load(Path(path), allow_pickle=False) as z:
            if int(z["format"][0]) != SNAPSHOT_FORMAT:
                raise ValueError(f"finger index snapshot format {int(z['format'][0])} is not {SNAPSHOT_FORMAT}")
            offsets = np.concatenate([[0], np.cumsum(z["sizes"])])
            data = {k: z[k] for k in ("x", "y", "theta", "bits", "valid", "bit_counts", "source")}
            with index._lock.writing():
                for k, (template_id, subject) in enumerate(zip(z["template_ids"], z["subjects"])):
                    s, e = offsets[k], offsets[k + 1]
                    p = PreparedTemplate(
                        data["x"][s:e].copy(), data["y"][s:e].copy(), data["theta"][s:e].copy(),
                        np.ascontiguousarray(data["bits"][s:e]), np.ascontiguousarray(data["valid"][s:e]),
                        data["bit_counts"][s:e].copy(), data["source"][s:e].copy(), int(z["totals"][k]),
                    )
                    index._templates[int(template_id)] = p
                    index._position[int(template_id)] = int(z["positions"][k])
                    index._subject_of_template[int(template_id)] = str(subject)
                    index._templates_of_subject.setdefault(str(subject), []).append(int(template_id))
                index._rebuild_locked(ivf=True)
                index.applied_sequence = int(z["applied_sequence"][0])
        return index
