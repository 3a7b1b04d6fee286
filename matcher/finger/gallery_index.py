"""``FingerGalleryIndex``: a gallery's finger modality, behind the interface ``VectorIndex`` offers.

``matcher.gallery.Gallery`` keeps one index per modality and treats them alike: set or remove a
subject's templates, search, compare 1:1, snapshot.  Finger templates arrive as ISO/IEC 19794-2
records (the bytes the store keeps); this adapter parses them once and hands the minutiae to the
two-stage ``FingerIndex``.  Similarities are the minutiae matcher's raw scores, which the
gallery's finger calibration turns into ``-log10(FMR)`` like any other modality's.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matcher.finger.index import FingerIndex
from matcher.finger.interchange import iso2005
from matcher.finger.interchange.common import InvalidIsoRecord
from matcher.finger.template import FingerTemplate
from matcher.index import SubjectHits

# Per minutia: cylinder bits + validity (2 × 192 B), x/y/θ (24 B), counts (8 B); in FAISS the
# 192-byte code, its id and the id map's reverse entry.
_BYTES_PER_MINUTIA = 2 * 192 + 24 + 8 + 192 + 8 + 24


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

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def stack(records: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(records)

    def set_subject(self, subject_id: str, template_ids: np.ndarray, records: Sequence[np.ndarray], sequence: int = 0) -> None:
        self.index.set_subject(subject_id, zip(template_ids.tolist(), map(parse_record, records)), sequence)

    def add_many(self, subject_ids: list[str], template_ids: np.ndarray, records: Sequence[np.ndarray]) -> None:
        grouped: dict[str, list] = defaultdict(list)
        for subject, template_id, record in zip(subject_ids, template_ids.tolist(), records):
            grouped[subject].append((template_id, parse_record(record)))
        for subject, templates in grouped.items():
            self.index.add(subject, templates)

    def remove_subject(self, subject_id: str, sequence: int = 0) -> int:
        return self.index.remove_subject(subject_id, sequence)

    def mark_applied(self, sequence: int) -> None:
        self.index.mark_applied(sequence)

    def bulk_loading(self):
        return contextlib.nullcontext()

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
        return self.index.minutiae_count() * _BYTES_PER_MINUTIA

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

