"""N:N search: many enrolled subjects searched against a gallery at once, scored as Identify scores them.

Why a module of its own: a de-duplication run (``matcher.deduplication``) searches every subject of
a gallery, a million at a time, so the per-subject path of ``Gallery.identify`` (one FAISS call per
probe) would cost twice what the index needs.  Here the probe templates of a whole batch of
subjects go to the index in one call per modality (``VectorIndex.search_bulk``), and each
subject's hits are then calibrated and fused exactly as ``Gallery.modality_scores`` and
``Gallery.identify`` do: per modality ``ModalityMatcher.fuse`` over the subject's probes of it,
across modalities ``fusion.independent`` over the modalities probed.  So a pair's score is the
score Identify returns for the one subject's templates against the other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from matcher import fusion
from matcher.gallery import FUSION_DEPTH, Gallery, distinct_evidence
from matcher.modality import Modality
from matcher.store.base import Store
from matcher.templates import Template


@dataclass(frozen=True)
class ProbeSubject:
    """An enrolled subject as a probe: its templates, one piece of evidence each (``distinct_evidence``)."""

    subject_id: str
    templates: tuple[Template, ...]


@dataclass(frozen=True)
class Match:
    """One subject found for a probe subject: fused calibrated score and the score per modality label."""

    subject_id: str
    score: float
    modality_scores: dict[str, float]


def probe_subjects(gallery: Gallery, store: Store, subject_ids: Sequence[str]) -> list[ProbeSubject]:
    """The subjects' templates as probes: from the in-memory index where it keeps vectors (faces), else from the store.

    A subject gone since the list was made is skipped (deleted during the run).
    """
    found: dict[str, list[Template]] = defaultdict(list)
    from_store: list[str] = []
    for modality, index in gallery.indexes.items():
        vectors_of = getattr(index, "subject_vectors", None)
        if vectors_of is None:
            from_store.extend(s for s in subject_ids if index.contains(s))
            continue
        model_id = gallery.record.spec(modality).model_id
        for subject in subject_ids:
            for vector in vectors_of(subject):
                found[subject].append(Template(modality, model_id, vector))
    if from_store:
        wanted = set(from_store)
        modalities = {m for m, i in gallery.indexes.items() if not hasattr(i, "subject_vectors")}
        ids = [t.template_id for s in dict.fromkeys(from_store) for t in _infos(store, gallery.name, s) if t.modality in modalities]
        for row in store.templates_by_id(ids):
            if row.subject_id in wanted:
                found[row.subject_id].append(Template(row.modality, row.model_id, row.vector, row.finger_position))
    probes = []
    for subject in subject_ids:
        templates = found.get(subject)
        if templates:
            probes.append(ProbeSubject(subject, tuple(templates if len(templates) == 1 else distinct_evidence(templates))))
    return probes


def _infos(store: Store, gallery: str, subject: str):
    try:
        return store.get_subject(gallery, subject).templates
    except Exception:  # deleted meanwhile  # noqa: BLE001 - NotFound from any store
        return ()


def search_subjects(
    probes: Sequence[ProbeSubject], gallery: Gallery, neighbours: int, exclude_self: bool, threads: int = 1
) -> list[list[Match]]:
    """For each probe subject, its ``neighbours`` best other subjects of ``gallery``, best first.

    ``exclude_self``: the probes are enrolled in ``gallery`` itself, so each one's own record is
    dropped (searched one deeper, so that ``neighbours`` others remain).
    """
    top = neighbours + int(exclude_self)
    # (probe row, modality) → list of (subject, calibrated score) over that modality's probes.
    found: list[dict[Modality, dict[str, list[float]]]] = [defaultdict(lambda: defaultdict(list)) for _ in probes]
    counts: list[dict[Modality, int]] = [defaultdict(int) for _ in probes]
    for modality, index in gallery.indexes.items():
        # Identify searches a lone probe ``top`` deep and several probes FUSION_DEPTH deep: group by depth.
        by_depth: dict[int, list[tuple[int, Template]]] = defaultdict(list)
        for row, probe in enumerate(probes):
            depth = top if len(probe.templates) == 1 else max(top, FUSION_DEPTH)
            for template in probe.templates:
                if template.modality is modality:
                    by_depth[depth].append((row, template))
                    counts[row][modality] += 1
        calibration = gallery.calibrations[modality]
        for depth, group in by_depth.items():
            queries = index.stack([t.vector for _, t in group])
            bulk = getattr(index, "search_bulk", None)
            hits = bulk(queries, depth, threads) if bulk is not None else index.search(queries, depth)
            sizes = [len(h.subject_ids) for h in hits]
            scores = calibration.score(np.concatenate([h.similarities for h in hits])) if sum(sizes) else np.empty(0)
            offsets = np.cumsum([0, *sizes])
            for (row, _), hit, start in zip(group, hits, offsets[:-1].tolist()):
                mine = found[row][modality]
                for subject, score in zip(hit.subject_ids, scores[start : start + len(hit.subject_ids)].tolist()):
                    mine[subject].append(score)
    results = []
    for row, probe in enumerate(probes):
        per_modality = {
            modality: {s: gallery.matchers[modality].fuse(v, counts[row][modality], gallery.calibrations[modality]) for s, v in by_subject.items()}
            for modality, by_subject in found[row].items()
        }
        parts = len(counts[row])
        subjects = dict.fromkeys(s for scores in per_modality.values() for s in scores)
        if exclude_self:
            subjects.pop(probe.subject_id, None)
        fused = {s: fusion.independent([m[s] for m in per_modality.values() if s in m], parts) for s in subjects}
        ranked = sorted(fused.items(), key=lambda item: -item[1])[:neighbours]
        results.append(
            [Match(s, float(score), {m.label: float(v[s]) for m, v in per_modality.items() if s in v}) for s, score in ranked]
        )
    return results
