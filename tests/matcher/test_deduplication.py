"""De-duplication runs on a gallery seeded with known duplicates: real AT&T photos, the same person under two ids.

Twelve people are enrolled once each from photo 1; six of them again, as another subject, from
photo 5.  The six (P, D) pairs are the truth recall and precision are read against.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.evaluation.datasets import default_data_dir
from enrollment import models
from matcher.deduplication import DONE, DedupOptions, Deduplication, pair_search_id
from matcher.galleries import EnrollItem, Galleries
from matcher.store.base import DedupJobRecord, DedupPairRecord, GalleryRecord, ModalitySpec, Store
from matcher.store.redis import RedisStore
from matcher.store.sqlite import SQLiteStore
from matcher.adjudication import from_stored
from tests.conftest import model_cache

PEOPLE, DUPLICATED = 12, 6


@pytest.fixture(scope="module")
def extractor():
    directory = model_cache()
    if models.check(directory, ("fr_detect", "fr_landmark", "fr_feature", "mfn_feature", "fr_pose", "fr_eye", "fr_liveness")):
        pytest.skip("face models not available; run `python -m enrollment.models fetch`")
    from enrollment.face.pipeline import FaceExtractor

    return FaceExtractor(directory, threads=1)


@pytest.fixture(scope="module")
def seeded(extractor) -> tuple[list[EnrollItem], set[tuple[str, str]]]:
    """Enrolments (one gallery) and the true duplicate pairs, as (lower id, higher id)."""
    root = default_data_dir() / "face" / "att_orl" / "images" / "resources" / "att_faces"
    if not root.is_dir():
        pytest.skip(f"AT&T faces not found under {root}")

    def template(person: int, photo: int):
        return extractor.extract((root / f"s{person}" / f"{photo}.pgm").read_bytes(), largest_face=True)[0].template

    items = [EnrollItem("people", f"P{person:02d}", (template(person, 1),)) for person in range(1, PEOPLE + 1)]
    items += [EnrollItem("people", f"D{person:02d}", (template(person, 5),)) for person in range(1, DUPLICATED + 1)]
    truth = {(f"D{p:02d}", f"P{p:02d}") for p in range(1, DUPLICATED + 1)}
    return items, truth


def _galleries(store: Store, extractor, items: list[EnrollItem]) -> Galleries:
    galleries = Galleries(store, None, lambda spec: extractor.calibration())
    spec = ModalitySpec(items[0].templates[0].modality, items[0].templates[0].model_id, items[0].templates[0].vector.size)
    galleries.create(GalleryRecord("people", 1e-4, (spec,)))
    for outcome in galleries.enroll(items):
        assert not isinstance(outcome, Exception), outcome
    return galleries


def _pair_set(pairs) -> set[tuple[str, str]]:
    return {(p.subject_a, p.subject_b) for p in pairs}


def test_a_run_finds_the_seeded_duplicates_with_identify_scores(tmp_path: Path, extractor, seeded) -> None:
    items, truth = seeded
    galleries = _galleries(SQLiteStore(tmp_path / "s.sqlite3"), extractor, items)
    dedup = Deduplication(galleries, DedupOptions(batch=4, neighbours=5, threads=2))
    job = dedup.start("people", "", 0.0, "merge check 1/2026", "k1", "admin one")
    finished = dedup.wait(job.job_id, timeout=60)
    assert finished.state == DONE and finished.subjects_done == finished.subjects_total == len(items)
    report = dedup.report(job.job_id)
    found = _pair_set(report.pairs)
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / max(len(found), 1)
    print(f"recall {recall:.3f} precision {precision:.3f} ({len(found)} pairs)")
    assert recall >= 5 / 6 and precision >= 0.8
    assert finished.pairs_found == len(report.pairs) == len(found)  # each pair once
    # A pair's score is what Identify returns for one subject's templates against the other.
    by_id = {i.subject_id: i for i in items}
    for pair in report.pairs:
        candidates = galleries.identify(list(by_id[pair.subject_a].templates), ["people"], top=20)
        score = next(c.score for c in candidates if c.subject_id == pair.subject_b)
        assert pair.score == pytest.approx(score, abs=1e-4)
    # Clusters: every true pair is one cluster of two here.
    assert {frozenset(c.members) for c in report.clusters} >= {frozenset({f"people/{a}", f"people/{b}"}) for a, b in found & truth}
    # Each pair is adjudicable in its probe subject's search record.
    for pair in report.pairs:
        record = from_stored(galleries.store.get_search(pair_search_id(finished, pair)))
        assert record.candidate(pair.gallery_b, pair.subject_b).score == pytest.approx(pair.score)
        assert job.job_id in record.purpose


def test_a_stopped_run_resumes_to_the_same_pairs(tmp_path: Path, extractor, seeded) -> None:
    """However far the first process got, the second finishes with exactly the uninterrupted pairs, each once."""
    items, _ = seeded
    whole = Deduplication(_galleries(SQLiteStore(tmp_path / "a.sqlite3"), extractor, items), DedupOptions(batch=3))
    reference = whole.wait(whole.start("people", "", 0.0, "reference", "k1", "admin").job_id, 60)
    expected = {(p.key, round(p.score, 5)) for p in whole.report(reference.job_id).pairs}

    store = SQLiteStore(tmp_path / "b.sqlite3")
    first = Deduplication(_galleries(store, extractor, items), DedupOptions(batch=1, threads=1))
    first._stopping.set()  # stops before its first batch: nothing searched yet
    job = first.start("people", "", 0.0, "interrupted", "k1", "admin")
    first.wait(job.job_id, 10)
    assert store.get_dedup_job(job.job_id).subjects_done == 0
    second = Deduplication(first.galleries, DedupOptions(batch=1, threads=1))
    assert second.resume() == [job.job_id]
    done = second.wait(job.job_id, 60)
    assert done.state == DONE
    assert {(p.key, round(p.score, 5)) for p in second.report(job.job_id).pairs} == expected
    assert done.pairs_found == len(expected)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_checkpoints_are_idempotent_and_keep_the_higher_score(tmp_path: Path, request, backend: str) -> None:
    """A batch checkpointed twice (crash after commit, before the cursor was read back) adds no pair twice."""
    store: Store = SQLiteStore(tmp_path / "c.sqlite3") if backend == "sqlite" else RedisStore(request.getfixturevalue("redis_server").url)
    store.put_dedup_job(DedupJobRecord("d1", "g", "", 4.0, "p", "k1", "admin", 1, 1.0, subjects_total=3))
    assert store.claim_dedup_job("d1", "r1", 100.0, 1.0) is not None
    assert store.claim_dedup_job("d1", "r2", 100.0, 2.0) is None  # leased to r1
    low, high = DedupPairRecord("g", "a", "g", "b", 5.0, {"face": 5.0}), DedupPairRecord("g", "a", "g", "b", 6.5, {"face": 6.5})
    other = DedupPairRecord("g", "a", "g", "c", 4.5, {"face": 4.5})
    assert store.checkpoint_dedup_job("d1", "r1", "a", 1, 3, [low, other], 100.0).pairs_found == 2
    again = store.checkpoint_dedup_job("d1", "r1", "b", 2, 3, [high, other], 100.0)
    assert again.pairs_found == 2 and again.cursor == "b" and again.subjects_done == 2
    assert {p.key: p.score for p in store.dedup_pairs("d1")} == {low.key: 6.5, other.key: 4.5}
    assert store.checkpoint_dedup_job("d1", "r2", "c", 3, 3, [], 100.0) is None  # not r2's
    assert store.finish_dedup_job("d1", 4, 5.0) is not None  # cancelled
    assert store.checkpoint_dedup_job("d1", "r1", "c", 3, 3, [], 100.0) is None  # a cancelled run takes no more pairs
    assert store.finish_dedup_job("d1", 2, 6.0) is None
    assert [j.job_id for j in store.dedup_jobs()] == ["d1"] and store.get_dedup_job("d1").state == 4
