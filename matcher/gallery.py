"""One gallery's search side: its indexes per modality, calibration, and decision threshold.

A ``Gallery`` holds no truth of its own: ``Galleries`` writes to the store first and then
applies the committed change here, so the index can always be rebuilt from the store.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matcher import fusion
from matcher.calibration import Calibration
from matcher.errors import DeadlineExceeded, InvalidArgument, NotFound
from matcher.metadata_cache import Metadata, MetadataCache
from matcher.modalities import matcher_for
from matcher.modality import ModalityIndex, ModalityMatcher
from matcher.policy import IndexPolicy
from matcher.store.base import Change, GalleryRecord, ModalitySpec, Store, StoredTemplate
from matcher.templates import Modality, Template

GALLERY_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_SUBJECT_ID_LENGTH = 128
FUSION_DEPTH = 50  # candidates per probe kept for score fusion


@dataclass(frozen=True)
class Scored:
    """Calibrated scores only, ``-log10(FMR)``: fused, and per modality (by label)."""

    score: float
    modality_scores: dict[str, float]


@dataclass(frozen=True)
class Candidate(Scored):
    """One ranked identity of a 1:N search.

    ``fpir``: the chance that a search of the galleries searched, at their current size, returns a
    stranger scoring this high (``matcher.fusion.fpir``).  ``hit``: the candidate reaches its
    gallery's threshold (an FPIR when the gallery has one, else an FMR).
    """

    subject_id: str
    gallery: str
    hit: bool
    fpir: float = 1.0


@dataclass(frozen=True)
class Verification(Scored):
    """The outcome of a 1:1 comparison."""

    match: bool
    threshold: float


def validate_gallery_name(name: str, field: str = "gallery") -> str:
    if not GALLERY_NAME.match(name or ""):
        raise InvalidArgument(field, f"{name!r} is not a gallery name (1–64 characters of a–z, 0–9, '_', '-')")
    return name


def validate_subject_id(subject_id: str, field: str = "subject_id") -> str:
    """Subject ids are record numbers: printable, no surrounding spaces, at most 128 characters."""
    if not subject_id:
        raise InvalidArgument(field, "must not be empty")
    if len(subject_id) > MAX_SUBJECT_ID_LENGTH:
        raise InvalidArgument(field, f"is {len(subject_id)} characters long; at most {MAX_SUBJECT_ID_LENGTH} allowed")
    if not subject_id.isprintable() or subject_id != subject_id.strip():
        raise InvalidArgument(field, "must be printable without leading or trailing spaces")
    return subject_id


def check_distinct_probes(probes: Sequence[Template], samples: Sequence[int] | None = None) -> None:
    """Refuse a probe that repeats itself: the same template twice, or what its modality counts as the same.

    Evidence counted twice is a false confidence: the same finger sent twice would double its
    score, the same photo twice would pass for two views.  ``samples``: the request sample each
    probe came from (one sample may stand for several probes, ``ModalityMatcher.split``); by
    default the probes are the samples.
    """
    numbers = list(range(len(probes))) if samples is None else list(samples)
    seen: dict[tuple, int] = {}
    for j, probe in zip(numbers, probes):
        key = (probe.modality, probe.vector.tobytes())
        if key in seen:
            again = f"repeats samples[{seen[key]}]" if seen[key] != j else "holds the same part twice"
            raise InvalidArgument(f"samples[{j}]", f"{again}: the same {probe.modality.label} sample counts once")
        seen[key] = j
    by_modality: dict[Modality, list[tuple[int, Template]]] = defaultdict(list)
    for j, probe in zip(numbers, probes):
        by_modality[probe.modality].append((j, probe))
    for modality, numbered in by_modality.items():
        matcher_for(modality).check_probes(numbered)


def distinct_evidence(templates: Sequence[Template]) -> list[Template]:
    """The first of each piece of evidence among ``templates``, in order (what ``check_distinct_probes`` accepts).

    An enrolment may hold several impressions of one finger; searching them as one probe for
    duplicates would count that finger several times over.
    """
    kept: list[Template] = []
    for template in templates:
        try:
            check_distinct_probes([*kept, template])
        except InvalidArgument:
            continue
        kept.append(template)
    return kept


def check_deadline(deadline: float | None) -> None:
    """Raise before expensive work once the caller's deadline (``time.monotonic()`` based) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("deadline exceeded before the search could run")


class Gallery:
    """Search and verification over one gallery's in-memory indexes."""

    def __init__(
        self,
        record: GalleryRecord,
        calibration_for: Callable[[ModalitySpec], Calibration],
        policy: IndexPolicy = IndexPolicy(),
        data_dir: Path | None = None,
    ) -> None:
        self.record = record
        self.policy = policy
        # Snapshots and the float32 vectors of approximate indexes live here (None: memory only).
        self.data_dir = data_dir
        self.matchers: dict[Modality, ModalityMatcher] = {spec.modality: matcher_for(spec.modality) for spec in record.modalities}
        self.indexes: dict[Modality, ModalityIndex] = {spec.modality: self._new_index(spec) for spec in record.modalities}
        self._subject_sequence: dict[str, int] = {}
        self.subject_count = 0  # people with a template in any index: the N of 1:N (``count_subjects``)
        self._metadata = MetadataCache()
        self.calibrations: dict[Modality, Calibration] = {spec.modality: calibration_for(spec) for spec in record.modalities}

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def threshold_score(self) -> float:
        return -math.log10(self.record.threshold_fmr)

    # -- validation -----------------------------------------------------------------------
    def check_template(self, template: Template, field: str) -> None:
        """Refuse templates this gallery cannot hold: other modality, other model, or what the modality refuses."""
        spec = self.record.spec(template.modality)
        if spec is None:
            raise InvalidArgument(
                f"{field}.modality", f"gallery {self.name!r} holds no {template.modality.label} templates"
            )
        if template.model_id != spec.model_id:
            raise InvalidArgument(
                f"{field}.model_id",
                f"{template.model_id!r} does not match gallery {self.name!r}'s {spec.modality.label} model {spec.model_id!r}",
            )
        self.matchers[spec.modality].check_template(template, spec, field)

    # -- index maintenance ----------------------------------------------------------------
    def _newer(self, subject_id: str, sequence: int) -> bool:
        """Whether ``sequence`` is newer than what the indexes hold for this subject.

        Replicas may apply their own writes before older entries of other replicas reach
        them; tracking the last sequence per subject makes every apply order-safe.
        """
        if sequence and sequence <= self._subject_sequence.get(subject_id, 0):
            return False
        self._subject_sequence[subject_id] = sequence
        return True

    def index_subject(self, subject_id: str, templates: Sequence[StoredTemplate], sequence: int) -> None:
        """Make the subject's indexed templates exactly ``templates`` (as of change ``sequence``)."""
        if not self._newer(subject_id, sequence):
            return
        self._metadata.invalidate(subject_id)
        was_enrolled = self.contains(subject_id)
        for modality, index in self.indexes.items():
            mine = [t for t in templates if t.modality is modality]
            ids = np.array([t.template_id for t in mine], dtype=np.int64)
            index.set_subject(subject_id, ids, index.stack([t.vector for t in mine]), sequence)
        self.subject_count += int(self.contains(subject_id)) - int(was_enrolled)

    def forget_subject(self, subject_id: str, sequence: int) -> None:
        if not self._newer(subject_id, sequence):
            return
        self._metadata.invalidate(subject_id)
        self.subject_count -= int(self.contains(subject_id))
        for index in self.indexes.values():
            index.remove_subject(subject_id, sequence)

    def contains(self, subject_id: str) -> bool:
        return any(index.contains(subject_id) for index in self.indexes.values())

    def count_subjects(self) -> None:
        """Recount the people in the indexes (after a rebuild or a snapshot load); writes keep it current."""
        self.subject_count = len(set().union(*(index.subject_ids() for index in self.indexes.values())))

    def apply(self, change: Change, store: Store) -> None:
        """Apply one committed change-log entry to the indexes (idempotent, order-safe)."""
        if change.op == "delete":
            self.forget_subject(change.subject_id, change.sequence)
        elif change.op == "upsert":
            if change.sequence > self._subject_sequence.get(change.subject_id, 0):
                self.index_subject(change.subject_id, store.templates_by_id(change.template_ids), change.sequence)
        else:
            for index in self.indexes.values():
                index.mark_applied(change.sequence)

    def prune_sequences(self, caught_up_to: int) -> None:
        """Forget per-subject sequences the change-log cursor has passed: no older entry can come back."""
        if len(self._subject_sequence) > 50_000:
            self._subject_sequence = {s: q for s, q in self._subject_sequence.items() if q > caught_up_to}

    def _new_index(self, spec: ModalitySpec) -> ModalityIndex:
        return self.matchers[spec.modality].new_index(spec, self.policy, self._vector_dir(spec.modality))

    def _vector_dir(self, modality: Modality) -> Path | None:
        return None if self.data_dir is None else self.data_dir / self.name / f"{modality.label}-vectors"

    def _snapshot_path(self, modality: Modality) -> Path | None:
        return None if self.data_dir is None else self.data_dir / self.name / f"{modality.label}.npz"

    def rebuild(self, store: Store, sequence: int) -> None:
        """Fill every index from the store's templates (no snapshot, or a stale one)."""
        for spec in self.record.modalities:
            fresh = self._new_index(spec)
            with fresh.bulk_loading():
                for batch in store.iter_templates(self.name, spec.modality):
                    fresh.add_many(
                        [t.subject_id for t in batch],
                        np.array([t.template_id for t in batch], dtype=np.int64),
                        fresh.stack([t.vector for t in batch]),
                    )
                fresh.mark_applied(sequence)
            self.indexes[spec.modality] = fresh

    def save_snapshots(self) -> None:
        for modality, index in self.indexes.items():
            path = self._snapshot_path(modality)
            if path is not None:
                index.save(path)

    def load_snapshots(self) -> int | None:
        """Load every modality's snapshot; return the lowest sequence they cover, or ``None``."""
        loaded: dict[Modality, ModalityIndex] = {}
        for spec in self.record.modalities:
            path = self._snapshot_path(spec.modality)
            index = None if path is None else self.matchers[spec.modality].load_index(spec, self.policy, path, self._vector_dir(spec.modality))
            if index is None:
                return None
            loaded[spec.modality] = index
        self.indexes.update(loaded)
        return min((i.applied_sequence for i in loaded.values()), default=0)

    @property
    def applied_sequence(self) -> int:
        return min((i.applied_sequence for i in self.indexes.values()), default=0)

    # -- search ---------------------------------------------------------------------------
    def modality_scores(self, probes: Sequence[Template], top: int) -> dict[Modality, dict[str, float]]:
        """Per modality, each candidate subject's calibrated score over the probes of that modality.

        The modality says how its probes combine (``ModalityMatcher.fuse``): several face photos
        are views of one face, so the best counts; several fingers are independent evidence, so
        two fingers that each match moderately outrank one that matches alone.
        """
        by_modality: dict[Modality, list[Template]] = defaultdict(list)
        for probe in probes:
            by_modality[probe.modality].append(probe)
        scores: dict[Modality, dict[str, float]] = {}
        # When scores combine, a subject first on the combination may be below ``top`` on one probe alone.
        depth = top if len(probes) == 1 else max(top, FUSION_DEPTH)
        for modality, group in by_modality.items():
            index = self.indexes.get(modality)
            if index is None:
                continue
            per_subject: dict[str, list[float]] = defaultdict(list)
            calibration = self.calibrations[modality]
            for hit in index.search(index.stack([p.vector for p in group]), depth):
                for subject, score in zip(hit.subject_ids, calibration.score(hit.similarities)):
                    per_subject[subject].append(float(score))
            fuse, probes_here = self.matchers[modality].fuse, len(group)
            scores[modality] = {subject: fuse(found, probes_here, calibration) for subject, found in per_subject.items()}
        return scores

    def identify(self, probes: Sequence[Template], top: int, searched_subjects: int) -> list[Candidate]:
        """The ``top`` best subjects, modalities fused as independent evidence (``matcher.fusion``).

        ``searched_subjects`` is the N of the whole search (every gallery searched), for each
        candidate's FPIR.  A modality of the probe that found nothing for a subject counts as 0.
        """
        per_modality = self.modality_scores(probes, top)
        parts = len(per_modality)
        # In the order the searches found them, so that equal scores keep the matcher's raw order.
        subjects = dict.fromkeys(subject for scores in per_modality.values() for subject in scores)
        fused = {subject: fusion.independent([s[subject] for s in per_modality.values() if subject in s], parts) for subject in subjects}
        ranked = sorted(fused.items(), key=lambda item: -item[1])[:top]
        return [
            self._candidate(subject, score, {m.label: s[subject] for m, s in per_modality.items() if subject in s}, searched_subjects)
            for subject, score in ranked
        ]

    def _candidate(self, subject: str, score: float, modality_scores: dict[str, float], searched_subjects: int) -> Candidate:
        at = fusion.fpir(score, searched_subjects)
        fpir_threshold = self.record.threshold_fpir
        hit = at <= fpir_threshold if fpir_threshold else score >= self.threshold_score
        return Candidate(score=score, modality_scores=modality_scores, subject_id=subject, gallery=self.name, hit=hit, fpir=at)

    def subject_metadata(self, subject_ids: Sequence[str], store: Store) -> dict[str, Metadata]:
        """Candidates' metadata, from memory where it can be (``matcher.metadata_cache``)."""
        return self._metadata.get_many(subject_ids, lambda missing: store.subject_metadata(self.name, missing))

    def verify(self, subject_id: str, probes: Sequence[Template]) -> Verification:
        """1:1: per probe, its best similarity to the subject's templates, calibrated; probes and modalities fused as in ``identify``."""
        if not self.contains(subject_id):
            raise NotFound(f"subject {subject_id!r} is not enrolled in gallery {self.name!r}")
        modality_scores: dict[str, float] = {}
        for modality, index in self.indexes.items():
            group = [p.vector for p in probes if p.modality is modality]
            if not group or not index.contains(subject_id):
                continue
            matcher, calibration = self.matchers[modality], self.calibrations[modality]
            # Independent probes are compared one by one; views of one trait together (their best counts).
            comparisons = [[vector] for vector in group] if matcher.independent_probes else [group]
            best = [index.best_similarity(index.stack(c), subject_id) for c in comparisons]
            found = [float(calibration.score(b)) for b in best if b is not None]
            if found:
                modality_scores[modality.label] = matcher.fuse(found, len(group), calibration)
        # Modalities the subject has no template of were not compared: they are not parts of the evidence.
        score = fusion.independent(list(modality_scores.values()))
        threshold = self.threshold_score
        return Verification(score=score, match=score >= threshold, threshold=threshold, modality_scores=modality_scores)
