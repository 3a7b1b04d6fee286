"""Embedding a labelled face set, and the pair and identification protocols the face report uses.

Shared by ``benchmarks/calibrate.py face`` and ``benchmarks/face_accuracy.py`` so both read the
data and count failures the same way: a failure to acquire (no face, refused image) keeps its
slot with a zero vector, which scores 0 against everything, i.e. it counts as a non-match.  In
the open-set (1:N) protocol a probe that failed to acquire makes no search: a mated one is a miss,
a non-mated one returns nothing (as the server would refuse the image).
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.evaluation.datasets import Sample, split_enrolled
from benchmarks.evaluation.metrics import Searches, Trials
from enrollment.face.pipeline import FaceExtractor
from enrollment.face.quality import QualityPolicy
from matcher.calibration import Calibration
from matcher.errors import InvalidArgument

log = logging.getLogger(__name__)

CANDIDATES = 10  # candidate list length L of the open-set protocol

# Evaluation measures the matcher, not the gate: nothing is refused for quality.
_ACCEPT_ALL = QualityPolicy(min_inter_eye_px=None, min_sharpness=None, max_abs_yaw_deg=None, max_abs_pitch_deg=None)


@dataclass(frozen=True)
class EmbeddedSet:
    """One set's templates in sample order (zero rows where acquisition failed), with what failed and why."""

    labels: np.ndarray  # [N] str
    vectors: np.ndarray  # [N, D]; zero rows where acquisition failed
    acquired: np.ndarray  # [N] bool
    errors: dict[str, str]  # relpath → error message
    relpaths: tuple[str, ...]
    fallbacks: int  # faces found only through the whole-image fallback

    @property
    def failure_to_acquire(self) -> float:
        return float(1.0 - self.acquired.mean()) if len(self.acquired) else 0.0


def embed_set(
    extractor: FaceExtractor,
    samples: Sequence[Sample],
    pre_aligned: bool,
    timings: MutableMapping[str, float] | None = None,
) -> EmbeddedSet:
    """One template per sample (the main face, as enrolment with ``largest_face`` would pick)."""
    vectors = np.zeros((len(samples), extractor.dimension), dtype=np.float32)
    acquired = np.zeros(len(samples), dtype=bool)
    errors: dict[str, str] = {}
    fallbacks = 0
    for i, sample in enumerate(samples):
        data = sample.path.read_bytes()
        try:
            if pre_aligned:
                result = extractor.extract_aligned(data, policy=_ACCEPT_ALL)
            else:
                (result,) = extractor.extract(
                    data, mode="enroll", largest_face=True, policy=_ACCEPT_ALL, timings=timings
                )
        except InvalidArgument as exc:
            errors[sample.relpath] = str(exc)
            log.info("failure to acquire %s: %s", sample.relpath, exc)
            continue
        vectors[i] = result.template.vector
        acquired[i] = True
        fallbacks += int(result.quality.fallback_whole_image)
    return EmbeddedSet(
        labels=np.array([s.label for s in samples]),
        vectors=vectors,
        acquired=acquired,
        errors=errors,
        relpaths=tuple(s.relpath for s in samples),
        fallbacks=fallbacks,
    )


def pair_scores(embedded: EmbeddedSet, scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores of all genuine pairs and all impostor pairs (each unordered pair once).

    ``scores`` is the [N, N] comparison matrix (a peer's own measure); by default the cosines.
    """
    sims = embedded.vectors @ embedded.vectors.T if scores is None else scores
    upper = np.triu_indices(len(embedded.labels), 1)
    same = (embedded.labels[:, None] == embedded.labels[None, :])[upper]
    values = sims[upper]
    return values[same], values[~same]


def impostor_scores(embedded: EmbeddedSet) -> np.ndarray:
    """Impostor cosines between *acquired* samples only (calibration must not learn from zero vectors)."""
    ok = embedded.acquired
    sub = EmbeddedSet(embedded.labels[ok], embedded.vectors[ok], ok[ok], {}, (), 0)
    return pair_scores(sub)[1]


def pair_trials(embedded: EmbeddedSet, scores: np.ndarray | None = None) -> Trials:
    """All pairs of the set (as :func:`pair_scores`) with each pair's identities, for the identity bootstrap."""
    ids = identity_indices(embedded.labels)
    genuine, impostor = pair_scores(embedded, scores)
    a, b = np.triu_indices(len(ids), 1)
    same = ids[a] == ids[b]
    return Trials(
        genuine, impostor, ids[a][same], np.stack([ids[a][~same], ids[b][~same]], axis=1), int(ids.max(initial=-1) + 1)
    )


def identity_indices(labels: np.ndarray) -> np.ndarray:
    """Each label's position among the sorted distinct labels."""
    return np.unique(labels, return_inverse=True)[1].astype(np.int64).reshape(-1)


def one_enrolled_hits(embedded: EmbeddedSet, scores: np.ndarray | None = None) -> np.ndarray:
    """Closed-set rank-1 per probe: the first image of each identity enrolled (a failed enrolment stays a zero
    template), every other image probes; True where the best template is the probe's own identity.

    ``scores`` as in :func:`pair_scores`; a probe that failed to acquire is a miss.
    """
    first: dict[str, int] = {}
    for i, label in enumerate(embedded.labels):
        first.setdefault(str(label), i)
    gallery = np.array(list(first.values()))
    enrolled = set(gallery.tolist())
    probes = np.array([i for i in range(len(embedded.labels)) if i not in enrolled], dtype=np.int64)
    if len(probes) == 0:
        return np.zeros(0, dtype=bool)
    if scores is None:
        sims = embedded.vectors[probes] @ embedded.vectors[gallery].T
    else:
        sims = scores[np.ix_(probes, gallery)]
    best = gallery[np.argmax(sims, axis=1)]
    return (embedded.labels[best] == embedded.labels[probes]) & embedded.acquired[probes]


def rank1_one_enrolled(embedded: EmbeddedSet, scores: np.ndarray | None = None) -> float:
    """The rate of :func:`one_enrolled_hits` (NaN when no identity has a second image)."""
    hits = one_enrolled_hits(embedded, scores)
    return float(hits.mean()) if len(hits) else math.nan


@dataclass(frozen=True)
class OpenSet:
    """One set's 1:N experiment: the searches and what the gallery and probes were."""

    name: str
    searches: Searches  # calibrated scores, as the server reports them
    cosines: Searches  # the same searches on the raw cosines (no table, so no clamp)
    enrolled: int  # identities of the set enrolled (their first image)
    left_out: int  # identities of the set not enrolled (all their images are non-mated searches)
    subjects: int  # gallery subjects, distractors included
    templates: int  # gallery templates
    distractor_subjects: int
    distractor_templates: int


def open_set(
    name: str,
    probe_set: EmbeddedSet,
    distractors: Sequence[tuple[str, EmbeddedSet]],
    calibration: Calibration,
    length: int = CANDIDATES,
) -> OpenSet:
    """Enrol the first image of every :func:`split_enrolled` identity of ``probe_set``, pad the gallery with every
    acquired image of ``distractors`` (one subject per identity of each set, all its images as templates), and
    search with the other images of the enrolled identities (mated) and every image of the others (non-mated).

    Candidates are the ``length`` subjects with the highest cosine (a subject scores its best template);
    scores are calibrated with ``calibration``, as the server reports them.
    """
    enrolled, left_out = split_enrolled(probe_set.labels)
    first = {label: int(np.flatnonzero(probe_set.labels == label)[0]) for label in enrolled}
    own = [first[label] for label in enrolled if probe_set.acquired[first[label]]]
    vectors = [probe_set.vectors[own]] + [e.vectors[e.acquired] for _, e in distractors]
    subjects = [np.array([f"{name}/{probe_set.labels[i]}" for i in own], dtype=object)]
    subjects += [
        np.array([f"{other}/{label}" for label in e.labels[e.acquired]], dtype=object) for other, e in distractors
    ]
    gallery, owners = np.concatenate(vectors), np.concatenate(subjects)
    ids = identity_indices(probe_set.labels)
    is_first = np.zeros(len(probe_set.labels), dtype=bool)
    is_first[list(first.values())] = True
    mated = np.flatnonzero(np.isin(probe_set.labels, enrolled) & ~is_first)
    nonmated = np.flatnonzero(np.isin(probe_set.labels, left_out))
    names, best = _best_per_subject(probe_set.vectors, gallery, owners)
    mate_rows = [
        _mate_score(best[i], names, f"{name}/{probe_set.labels[i]}", length) if probe_set.acquired[i] else -np.inf
        for i in mated
    ]
    top = np.where(probe_set.acquired[nonmated], best[nonmated].max(axis=1, initial=-np.inf), -np.inf)
    cosines = Searches(
        np.array(mate_rows, dtype=np.float64), top, ids[mated], ids[nonmated], int(ids.max(initial=-1) + 1)
    )
    searches = Searches(
        _calibrated(calibration, cosines.mated),
        _calibrated(calibration, cosines.nonmated),
        cosines.mated_ids,
        cosines.nonmated_ids,
        cosines.identities,
    )
    distractor_subjects = len({s for part in subjects[1:] for s in part})
    return OpenSet(
        name,
        searches,
        cosines,
        len(enrolled),
        len(left_out),
        len(names),
        len(gallery),
        distractor_subjects,
        int(sum(len(part) for part in subjects[1:])),
    )


def _best_per_subject(probes: np.ndarray, gallery: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject names, [probes, subjects] best cosine of each subject's templates)."""
    names, codes = np.unique(owners.astype(str), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    sims = probes @ gallery[order].T
    return names, np.maximum.reduceat(sims, starts, axis=1) if len(starts) else np.zeros((len(probes), 0))


def _mate_score(row: np.ndarray, names: np.ndarray, mate: str, length: int) -> float:
    """The mate's cosine when it is among the ``length`` best subjects of this search, else −inf."""
    listed = np.argsort(-row, kind="stable")[:length]
    hit = [k for k in listed if names[k] == mate]
    return float(row[hit[0]]) if hit else -np.inf


def _calibrated(calibration: Calibration, cosines: np.ndarray) -> np.ndarray:
    """Calibrated scores, −inf (no search, no candidate) kept."""
    out = np.full(len(cosines), -np.inf)
    finite = np.isfinite(cosines)
    out[finite] = calibration.score(cosines[finite]).astype(np.float64)
    return out
