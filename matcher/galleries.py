"""``Galleries``: the matching library's public face.

It owns the store (truth) and one ``Gallery`` per gallery (speed), and keeps them in step:
every write is committed to the store first and then applied to the index, under one write
lock so the indexes see changes in sequence order.  On start-up each gallery loads its
snapshot and replays the change-log tail, or is rebuilt from the store's templates.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import native
from matcher.calibration import Calibration
from matcher.errors import AlreadyExists, DeadlineExceeded, InvalidArgument, NotFound, ShanakhtError, StoreUnavailable
from matcher.policy import IndexPolicy
from matcher.gallery import Candidate, Gallery, Verification, check_deadline, check_distinct_probes, distinct_evidence, validate_gallery_name, validate_subject_id
from matcher.modalities import matcher_for
from matcher.store.base import (
    EnrollmentResult,
    GalleryRecord,
    ModalitySpec,
    NewEnrollment,
    Store,
    StoredTemplate,
    SubjectRecord,
)
from matcher.templates import Template

log = logging.getLogger(__name__)

MAX_CANDIDATES = 1000


def split_samples(templates: Sequence[Template], field: str = "samples") -> list[tuple[int, Template]]:
    """A request's template samples as the templates galleries check and store, each numbered by its sample.

    Each modality says what one sent template stands for (``ModalityMatcher.split``: a finger
    record of three views is three templates); nothing is dropped, and errors keep naming the
    sample (``samples[i]``) the caller sent.
    """
    return [
        (i, part)
        for i, template in enumerate(templates)
        for part in matcher_for(template.modality).split(template, f"{field}[{i}].template")
    ]


def _check_samples(gallery: Gallery, numbered: Sequence[tuple[int, Template]], field: str = "samples") -> None:
    for i, template in numbered:
        gallery.check_template(template, f"{field}[{i}].template")


@dataclass(frozen=True)
class EnrollItem(NewEnrollment):
    """One subject to enrol, as the caller describes it: what the store is handed, and whether to look for duplicates first."""

    check_duplicates: bool = False


@dataclass(frozen=True)
class Enrolled:
    """A committed enrolment and the likely duplicates found before it was stored."""

    result: EnrollmentResult
    duplicates: tuple[Candidate, ...] = ()


@dataclass(frozen=True)
class IndexStatistics:
    """One modality's index in a gallery, as an operator sees it (``GalleryStats``)."""

    modality: str  # the modality's label
    templates: int
    index_type: str  # e.g. "Flat" or "IVF500,PQ32x4fs+rescore(nprobe=100)"
    bytes_per_template: float  # process memory the index holds, per template
    applied_sequence: int  # every change-log entry up to this one is reflected
    rebuilding: bool = False  # a background build runs (one core busy; searches go on)


@dataclass(frozen=True)
class GalleryStatistics:
    gallery: str
    subjects: int
    indexes: tuple[IndexStatistics, ...]


def default_calibration(spec: ModalitySpec) -> Calibration:
    """A model without a measured table: its modality's null model (``ModalityMatcher.default_calibration``).

    Some modalities have none (finger scores): their table is measured and must be passed in.
    """
    return matcher_for(spec.modality).default_calibration(spec)


class Galleries:
    """All galleries of one store, searchable in memory."""

    def __init__(
        self,
        store: Store,
        snapshot_dir: Path | None,
        calibration_for: Callable[[ModalitySpec], Calibration] = default_calibration,
        policy: IndexPolicy = IndexPolicy(),
    ) -> None:
        self.store = store
        self.policy = policy
        self.snapshot_dir = snapshot_dir
        self._calibration_for = calibration_for
        self._galleries: dict[str, Gallery] = {}
        self._write_lock = threading.Lock()
        self._applied = threading.Condition(threading.Lock())
        self._caught_up_to = 0
        self._follower: threading.Thread | None = None
        self._stop_following = threading.Event()
        self._load()

    # -- start-up -------------------------------------------------------------------------
    def _load(self) -> None:
        """Snapshot + log tail where a snapshot exists, full rebuild otherwise."""
        store_sequence = self.store.last_sequence()
        for record in self.store.galleries():
            gallery = self._new_gallery(record)
            covered = gallery.load_snapshots()
            if covered is None or covered > store_sequence:
                gallery.rebuild(self.store, store_sequence)
                log.info("gallery rebuilt from store", extra={"gallery": record.name, "sequence": store_sequence})
            else:
                log.info("gallery loaded from snapshot", extra={"gallery": record.name, "sequence": covered})
                for index in gallery.indexes.values():
                    index.apply_policy()
            gallery.count_subjects()
            self._galleries[record.name] = gallery
        self._caught_up_to = min((g.applied_sequence for g in self._galleries.values()), default=0)
        self.catch_up()

    def _new_gallery(self, record: GalleryRecord) -> Gallery:
        return Gallery(record, self._calibration_for, self.policy, self.snapshot_dir)

    @property
    def caught_up_to(self) -> int:
        """Every change-log entry up to this sequence is reflected in the indexes."""
        return self._caught_up_to

    def catch_up(self) -> int:
        """Apply every change-log entry after the cursor (other replicas' writes); return how many."""
        applied = 0
        while True:
            with self._write_lock:
                changes = self.store.changes_since(self._caught_up_to)
                for change in changes:
                    gallery = self._galleries.get(change.gallery)
                    if gallery is None and change.op == "gallery":
                        record = next(r for r in self.store.galleries() if r.name == change.gallery)
                        gallery = self._galleries[record.name] = self._new_gallery(record)
                    if gallery is not None:
                        gallery.apply(change, self.store)
                        applied += 1
                if changes:
                    self._advance(changes[-1].sequence)
                    for gallery in self._galleries.values():
                        gallery.prune_sequences(self._caught_up_to)
            if not changes:
                return applied

    def _advance(self, sequence: int) -> None:
        with self._applied:
            if sequence > self._caught_up_to:
                self._caught_up_to = sequence
                self._applied.notify_all()

    def _applied_locally(self, sequence: int) -> None:
        """A single-writer store sees every change pass through here, in order: the cursor follows."""
        if self.store.single_writer:
            self._advance(sequence)

    def wait_for_sequence(self, sequence: int, deadline: float | None) -> None:
        """Read-your-writes across replicas: block until ``sequence`` is applied, or the deadline passes."""
        with self._applied:
            while self._caught_up_to < sequence:
                if self.store.single_writer and sequence > self.store.last_sequence():
                    raise InvalidArgument("min_sequence", f"{sequence} is beyond the store's last sequence {self.store.last_sequence()}")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded(f"sequence {sequence} not yet applied here (at {self._caught_up_to})")
                self._applied.wait(0.05 if remaining is None else min(0.05, remaining))

    def start_following(self, poll_timeout: float = 1.0) -> None:
        """Follow the change log in the background (replicas sharing a store)."""
        if self._follower is not None:
            return

        def follow() -> None:
            backoff = 0.1
            while not self._stop_following.is_set():
                try:
                    if self.store.wait_for_changes(self._caught_up_to, poll_timeout):
                        self.catch_up()
                    backoff = 0.1
                except StoreUnavailable as error:
                    log.warning("change log unavailable; retrying", extra={"error": str(error), "retry_s": backoff})
                    self._stop_following.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                except Exception:
                    log.exception("applying the change log failed; retrying")
                    self._stop_following.wait(1.0)

        self._follower = threading.Thread(target=follow, name="change-log-follower", daemon=True)
        self._follower.start()

    def stop_following(self) -> None:
        self._stop_following.set()
        if self._follower is not None:
            self._follower.join(timeout=10)
            self._follower = None

    # -- galleries ------------------------------------------------------------------------
    def create(self, record: GalleryRecord) -> Gallery:
        validate_gallery_name(record.name, "name")
        if not (0.0 < record.threshold_fmr < 1.0):
            raise InvalidArgument("threshold_fmr", f"must be between 0 and 1, got {record.threshold_fmr}")
        if not (0.0 <= record.threshold_fpir < 1.0):
            raise InvalidArgument("threshold_fpir", f"must be 0 (use threshold_fmr) or between 0 and 1, got {record.threshold_fpir}")
        if not record.modalities:
            raise InvalidArgument("modalities", "a gallery needs at least one modality")
        for i, spec in enumerate(record.modalities):
            if not spec.model_id:
                raise InvalidArgument(f"modalities[{i}].model_id", "must not be empty")
            try:
                matcher = matcher_for(spec.modality)
            except InvalidArgument as error:
                raise error.under(f"modalities[{i}]") from None
            matcher.check_spec(spec, f"modalities[{i}]")
        with self._write_lock:
            if record.name in self._galleries:
                raise AlreadyExists(f"gallery {record.name!r} already exists")
            sequence = self.store.create_gallery(record)
            gallery = self._new_gallery(record)
            for index in gallery.indexes.values():
                index.mark_applied(sequence)
            self._galleries[record.name] = gallery
            self._applied_locally(sequence)
            return gallery

    def get(self, name: str, field: str = "gallery") -> Gallery:
        validate_gallery_name(name, field)
        gallery = self._galleries.get(name)
        if gallery is None:
            raise NotFound(f"gallery {name!r} does not exist")
        return gallery

    def names(self) -> list[str]:
        return sorted(self._galleries)

    # -- writes ---------------------------------------------------------------------------
    def enroll(self, items: Sequence[EnrollItem]) -> list[Enrolled | ShanakhtError]:
        """Validate, check duplicates, commit all items in one durable write, then index them.

        One bad item fails alone; the others are stored.  Returns one outcome per item.
        """
        outcomes: list[Enrolled | ShanakhtError | None] = [None] * len(items)
        pending: list[tuple[int, NewEnrollment, tuple[Candidate, ...]]] = []
        for position, item in enumerate(items):
            try:
                gallery = self.get(item.gallery)
                validate_subject_id(item.subject_id)
                if not item.templates:
                    raise InvalidArgument("samples", "at least one sample is required")
                numbered = split_samples(item.templates)
                _check_samples(gallery, numbered)
                item = replace(item, templates=tuple(t for _, t in numbered))
                duplicates: tuple[Candidate, ...] = ()
                if item.check_duplicates:
                    found = gallery.identify(distinct_evidence(item.templates), 10, gallery.subject_count)
                    duplicates = tuple(c for c in found if c.hit and c.subject_id != item.subject_id)
                pending.append((position, item, duplicates))
            except ShanakhtError as error:
                outcomes[position] = error
        self._prefetch([p[1] for p in pending])
        if pending:
            with self._write_lock:
                results = self.store.enroll([p[1] for p in pending])
                for (position, request, duplicates), result in zip(pending, results):
                    if isinstance(result, ShanakhtError):
                        outcomes[position] = result
                        continue
                    self._index_enrollment(request, result)
                    self._applied_locally(result.sequence)
                    outcomes[position] = Enrolled(result, duplicates)
        return outcomes  # type: ignore[return-value]

    @contextlib.contextmanager
    def bulk_loading(self):
        """A bulk load (an ``EnrollStream``): no index retraining until it ends, then one build where needed."""
        with contextlib.ExitStack() as stack:
            for gallery in list(self._galleries.values()):
                for index in gallery.indexes.values():
                    stack.enter_context(index.bulk_loading())
            yield

    def _prefetch(self, items: Sequence[EnrollItem]) -> None:
        """Let indexes that can prepare a batch's templates ahead of the write, outside the write lock (fingers: cylinders on every core)."""
        batches: dict[int, tuple[object, list]] = {}
        for item in items:
            gallery = self._galleries.get(item.gallery)
            for template in item.templates if gallery is not None else ():
                index = gallery.indexes.get(template.modality)
                if hasattr(index, "prefetch"):
                    batches.setdefault(id(index), (index, []))[1].append(template.vector)
        for index, vectors in batches.values():
            index.prefetch(vectors)

    def _index_enrollment(self, request: NewEnrollment, result: EnrollmentResult) -> None:
        templates = [
            StoredTemplate(template_id, request.subject_id, t.modality, t.model_id, t.finger_position, t.vector)
            for template_id, t in zip(result.template_ids, request.templates)
        ]
        self._galleries[request.gallery].index_subject(request.subject_id, templates, result.sequence)

    def remove(self, gallery_name: str, subject_id: str) -> int:
        """Delete a subject from the store and the indexes; absent from every later search."""
        gallery = self.get(gallery_name)
        validate_subject_id(subject_id)
        with self._write_lock:
            sequence, _ = self.store.delete_subject(gallery.name, subject_id)
            gallery.forget_subject(subject_id, sequence)
            self._applied_locally(sequence)
            return sequence

    # -- reads ----------------------------------------------------------------------------
    def identify(
        self,
        probes: Sequence[Template],
        gallery_names: Sequence[str],
        top: int = 10,
        min_score: float = 0.0,
        deadline: float | None = None,
    ) -> list[Candidate]:
        """1:N over one or more galleries; candidates merged by calibrated score, best first."""
        if not probes:
            raise InvalidArgument("samples", "at least one sample is required")
        if not gallery_names:
            raise InvalidArgument("galleries", "at least one gallery is required")
        if not (1 <= top <= MAX_CANDIDATES):
            raise InvalidArgument("max_candidates", f"must be 1–{MAX_CANDIDATES}, got {top}")
        if not math.isfinite(min_score):
            raise InvalidArgument("min_score", "must be a finite number")
        galleries = [self.get(name, f"galleries[{i}]") for i, name in enumerate(dict.fromkeys(gallery_names))]
        numbered = split_samples(probes)
        for gallery in galleries:
            _check_samples(gallery, numbered)
        probes = [t for _, t in numbered]
        check_distinct_probes(probes, [i for i, _ in numbered])
        searched = self.subjects_in([g.name for g in galleries])  # FPIR is over the whole search, every gallery in it
        candidates: list[Candidate] = []
        for gallery in galleries:
            check_deadline(deadline)
            candidates.extend(c for c in gallery.identify(probes, top, searched) if c.score >= min_score)
        if len(galleries) == 1:
            return candidates[:top]
        order = native.top_k(np.array([c.score for c in candidates], dtype=np.float32), top)
        return [candidates[i] for i in order]

    def subjects_in(self, gallery_names: Sequence[str]) -> int:
        """People in these galleries: the N a search of them compares a probe with."""
        return sum(self.get(name).subject_count for name in dict.fromkeys(gallery_names))

    def verify(self, gallery_name: str, subject_id: str, probes: Sequence[Template]) -> Verification:
        gallery = self.get(gallery_name)
        validate_subject_id(subject_id)
        if not probes:
            raise InvalidArgument("samples", "at least one sample is required")
        numbered = split_samples(probes)
        _check_samples(gallery, numbered)
        probes = [t for _, t in numbered]
        check_distinct_probes(probes, [i for i, _ in numbered])
        return gallery.verify(subject_id, probes)

    def candidate_metadata(self, candidates: Sequence[Candidate]) -> dict[tuple[str, str], dict[str, str]]:
        """(gallery, subject) → metadata of each candidate still enrolled."""
        found: dict[tuple[str, str], dict[str, str]] = {}
        for name in dict.fromkeys(c.gallery for c in candidates):
            ids = [c.subject_id for c in candidates if c.gallery == name]
            found.update(((name, s), m) for s, m in self._galleries[name].subject_metadata(ids, self.store).items())
        return found

    def get_subject(self, gallery_name: str, subject_id: str) -> SubjectRecord:
        gallery = self.get(gallery_name)
        validate_subject_id(subject_id)
        return self.store.get_subject(gallery.name, subject_id)

    def statistics(self, names: Sequence[str] = ()) -> list[GalleryStatistics]:
        selected = [self.get(n, f"galleries[{i}]") for i, n in enumerate(names)] if names else [
            self._galleries[n] for n in self.names()
        ]
        return [
            GalleryStatistics(
                gallery=g.name,
                subjects=self.store.count_subjects(g.name),
                indexes=tuple(
                    IndexStatistics(
                        modality=m.label,
                        templates=i.size,
                        index_type=i.index_type,
                        bytes_per_template=(i.memory_bytes() / i.size) if i.size else 0.0,
                        applied_sequence=i.applied_sequence,
                        rebuilding=i.rebuilding,
                    )
                    for m, i in g.indexes.items()
                ),
            )
            for g in selected
        ]

    # -- snapshots ------------------------------------------------------------------------
    def snapshot(self) -> None:
        """Write every gallery's snapshot, under the write lock so each matches its sequence."""
        if self.snapshot_dir is None:
            return
        with self._write_lock:
            for gallery in self._galleries.values():
                # Every change up to the cursor is applied, including other galleries' (which this
                # one has nothing to do with): without this an idle gallery's snapshot would hold
                # the whole log after it back for replay at the next start.
                for index in gallery.indexes.values():
                    index.mark_applied(self._caught_up_to)
                gallery.save_snapshots()
