"""Gallery-wide de-duplication runs: every subject of a gallery searched against it (or against another gallery, for a merge).

A run is a store record (``DedupJobRecord``) worked on by a background thread.  Subjects are taken
in subject-id order in batches; each batch is searched at once (``matcher.duplicates``) and its
pairs are stored together with the new cursor in one atomic write (``Store.checkpoint_dedup_job``),
so a ``kill -9`` loses at most the batch in flight, which the restarted server searches again:
pairs are keyed by their two subjects and a pair stored twice keeps its higher score, so nothing is
repeated and nothing lost.  Within one gallery a pair is (a, b) with a < b, found from both sides
and reported once with the higher score.

When every subject is searched the run writes one search record per probe subject with its
candidate duplicates (``matcher.adjudication``), under an id derived from the run and the subject,
so that writing them again after a crash finds them there; then it is DONE.  Those records are
adjudicated with the ordinary RecordDecision and VerificationQueue.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from matcher import fusion
from matcher.adjudication import CandidateRecord, SearchRecord, to_stored
from matcher.duplicates import probe_subjects, search_subjects
from matcher.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ShanakhtError
from matcher.galleries import Galleries
from matcher.gallery import Gallery
from matcher.store.base import DedupJobRecord, DedupPairRecord

log = logging.getLogger(__name__)

# Values of the proto's DeduplicationState.
RUNNING, DONE, FAILED, CANCELLED = 1, 2, 3, 4
FINISHED = frozenset({DONE, FAILED, CANCELLED})
LEASE_S = 60.0  # a replica that stops checkpointing for this long leaves its run to another


@dataclass(frozen=True)
class DedupOptions:
    """How runs work: subjects per checkpoint, neighbours kept per probe, search threads."""

    batch: int = 1024
    neighbours: int = 10
    threads: int = 2


@dataclass(frozen=True)
class Cluster:
    """Subjects connected by pairs, as "gallery/subject" sorted, and the best pair score inside."""

    members: tuple[str, ...]
    max_score: float


@dataclass(frozen=True)
class Report:
    job: DedupJobRecord
    pairs: tuple[DedupPairRecord, ...]  # best first
    clusters: tuple[Cluster, ...]  # largest first


def search_id_for(job_id: str, gallery: str, subject_id: str) -> str:
    """The adjudication record of one probe subject of a run: derived, so writing it twice finds it there."""
    return "s" + hashlib.sha256(f"{job_id}\x1f{gallery}\x1f{subject_id}".encode()).hexdigest()[:16]


def decision_score(gallery: Gallery, searched_subjects: int) -> float:
    """The lowest score that is a hit in ``gallery``: its FMR threshold, or the score whose FPIR at this size is its FPIR threshold."""
    if not gallery.record.threshold_fpir:
        return gallery.threshold_score
    per_comparison = -math.expm1(math.log1p(-gallery.record.threshold_fpir) / max(searched_subjects, 1))
    return -math.log10(per_comparison)


def clusters_of(pairs: Sequence[DedupPairRecord]) -> list[Cluster]:
    """Connected components of the pair graph (union-find), largest first."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        parent[root(f"{p.gallery_a}/{p.subject_a}")] = root(f"{p.gallery_b}/{p.subject_b}")
    members: dict[str, list[str]] = defaultdict(list)
    best: dict[str, float] = defaultdict(float)
    for node in list(parent):
        members[root(node)].append(node)
    for p in pairs:
        r = root(f"{p.gallery_a}/{p.subject_a}")
        best[r] = max(best[r], p.score)
    found = [Cluster(tuple(sorted(m)), best[r]) for r, m in members.items()]
    return sorted(found, key=lambda c: (-len(c.members), -c.max_score, c.members))


class Deduplication:
    """Starts, runs, resumes and cancels de-duplication runs over one ``Galleries``."""

    def __init__(self, galleries: Galleries, options: DedupOptions = DedupOptions()) -> None:
        self.galleries = galleries
        self.store = galleries.store
        self.options = options
        self.runner = "r" + secrets.token_hex(6)  # this process
        self._threads: dict[str, threading.Thread] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()

    # -- requests -------------------------------------------------------------------------------
    def start(self, gallery: str, against: str, min_score: float, purpose: str, started_by: str, started_by_name: str) -> DedupJobRecord:
        """Validate and store a new run, then start it in the background."""
        if not purpose.strip():
            raise InvalidArgument("purpose", "is required: why the run is made (recorded in the audit log)")
        source = self.galleries.get(gallery, "gallery")
        target = source
        if against:
            if against == gallery:
                raise InvalidArgument("against", "names the gallery itself; leave it empty to de-duplicate one gallery")
            target = self.galleries.get(against, "against")
            mine = sorted((s.modality.value, s.model_id) for s in source.record.modalities)
            theirs = sorted((s.modality.value, s.model_id) for s in target.record.modalities)
            if mine != theirs:
                raise InvalidArgument("against", f"gallery {against!r} holds other modalities or models than {gallery!r}; their scores do not compare")
        if not math.isfinite(min_score) or min_score < 0:
            raise InvalidArgument("min_score", f"must be 0 (the gallery's threshold) or a positive score, got {min_score}")
        threshold = min_score or decision_score(target, target.subject_count)
        job = DedupJobRecord(
            job_id="d" + secrets.token_hex(8), gallery=source.name, against=against, min_score=float(threshold), purpose=purpose.strip(),
            started_by=started_by, started_by_name=started_by_name, state=RUNNING, started_at=time.time(),
            subjects_total=source.subject_count,
        )
        self.store.put_dedup_job(job)
        self._launch(job.job_id, steal=True)
        return job

    def get(self, job_id: str) -> DedupJobRecord:
        job = self.store.get_dedup_job(job_id) if job_id else None
        if job is None:
            raise NotFound(f"de-duplication job {job_id!r} does not exist")
        return job

    def jobs(self) -> list[DedupJobRecord]:
        return self.store.dedup_jobs()

    def cancel(self, job_id: str) -> DedupJobRecord:
        job = self.get(job_id)
        if job.state in FINISHED:
            raise FailedPrecondition(f"de-duplication job {job_id!r} has finished ({_STATE_NAMES[job.state]}); there is nothing to cancel")
        cancelled = self.store.finish_dedup_job(job_id, CANCELLED, time.time())
        self._notify()
        return cancelled or self.get(job_id)

    def report(self, job_id: str) -> Report:
        job = self.get(job_id)
        pairs = sorted(self.store.dedup_pairs(job_id), key=lambda p: (-p.score, p.key))
        return Report(job, tuple(pairs), tuple(clusters_of(pairs)))

    def watch(self, job_id: str, timeout: float) -> DedupJobRecord:
        """The run once it differs from what the caller last saw, or after ``timeout`` (callers poll with their last state)."""
        with self._changed:
            self._changed.wait(timeout)
        return self.get(job_id)

    # -- lifecycle ------------------------------------------------------------------------------
    def resume(self) -> list[str]:
        """At start-up: take over every RUNNING run (a single-writer store's are ours; a shared store's once their lease ran out)."""
        resumed = []
        for job in self.store.dedup_jobs():
            if job.state == RUNNING and self._launch(job.job_id, steal=self.store.single_writer):
                resumed.append(job.job_id)
        return resumed

    def stop(self, timeout: float = 10.0) -> None:
        """Let runs stop after their current batch (they stay RUNNING and resume at the next start)."""
        self._stopping.set()
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def wait(self, job_id: str, timeout: float | None = None) -> DedupJobRecord:
        """Block until this process's thread of the run ends (tests, tools)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(job_id)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _launch(self, job_id: str, steal: bool) -> bool:
        now = time.time()
        job = self.store.claim_dedup_job(job_id, self.runner, now + LEASE_S, now, steal=steal)
        if job is None:
            return False
        thread = threading.Thread(target=self._run, args=(job,), name=f"dedup-{job_id}", daemon=True)
        self._threads[job_id] = thread
        thread.start()
        return True

    # -- the work -------------------------------------------------------------------------------
    def _run(self, job: DedupJobRecord) -> None:
        try:
            self._work(job)
        except Exception as error:  # noqa: BLE001 - the run records why it stopped
            log.exception("de-duplication job failed", extra={"job": job.job_id})
            message = str(error) if isinstance(error, ShanakhtError) else f"{type(error).__name__}: {error}"
            self.store.finish_dedup_job(job.job_id, FAILED, time.time(), message, runner=self.runner)
        finally:
            self._notify()

    def _work(self, job: DedupJobRecord) -> None:
        source = self.galleries.get(job.gallery)
        target = self.galleries.get(job.against) if job.against else source
        within = not job.against
        subjects = sorted(set().union(*(index.subject_ids() for index in source.indexes.values())))
        remaining = subjects[_after(subjects, job.cursor):]
        done = job.subjects_done
        total = done + len(remaining)
        batch = max(1, self.options.batch)
        for start in range(0, len(remaining), batch):
            if self._stopping.is_set():
                return
            chunk = remaining[start : start + batch]
            pairs = self._pairs(chunk, source, target, job, within)
            done += len(chunk)
            checkpointed = self.store.checkpoint_dedup_job(
                job.job_id, self.runner, chunk[-1], done, total, pairs, time.time() + LEASE_S
            )
            self._notify()
            if checkpointed is None:  # cancelled, or another replica took it over
                return
        if self._stopping.is_set():
            return
        self._write_search_records(job, target)
        self.store.finish_dedup_job(job.job_id, DONE, time.time(), runner=self.runner)

    def _pairs(self, chunk: Sequence[str], source: Gallery, target: Gallery, job: DedupJobRecord, within: bool) -> list[DedupPairRecord]:
        probes = probe_subjects(source, self.store, chunk)
        threads = max(1, self.options.threads)
        if threads == 1 or len(probes) < 2 * threads:
            found = search_subjects(probes, target, self.options.neighbours, within)
        else:  # one OpenMP thread per part, the parts side by side (FAISS releases the GIL)
            step = math.ceil(len(probes) / threads)
            parts = [probes[i : i + step] for i in range(0, len(probes), step)]
            results: list[list] = [[] for _ in parts]

            def search(i: int) -> None:
                results[i] = search_subjects(parts[i], target, self.options.neighbours, within)

            workers = [threading.Thread(target=search, args=(i,)) for i in range(len(parts))]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            found = [m for part in results for m in part]
        best: dict[tuple[str, str, str, str], DedupPairRecord] = {}
        for probe, matches in zip(probes, found):
            for match in matches:
                if match.score < job.min_score:
                    continue
                a, b = (source.name, probe.subject_id), (target.name, match.subject_id)
                if within and b[1] < a[1]:
                    a, b = b, a
                pair = DedupPairRecord(a[0], a[1], b[0], b[1], match.score, match.modality_scores)
                if pair.key not in best or best[pair.key].score < pair.score:
                    best[pair.key] = pair
        return list(best.values())

    def _write_search_records(self, job: DedupJobRecord, target: Gallery) -> None:
        """One search record per probe subject (the pair's first subject), its candidates the other subjects."""
        by_probe: dict[tuple[str, str], list[DedupPairRecord]] = defaultdict(list)
        for pair in self.store.dedup_pairs(job.job_id):
            by_probe[(pair.gallery_a, pair.subject_a)].append(pair)
        searched = target.subject_count
        for (gallery, subject), pairs in sorted(by_probe.items()):
            pairs.sort(key=lambda p: (-p.score, p.key))
            record = SearchRecord(
                search_id=search_id_for(job.job_id, gallery, subject), created_at=time.time(), examiner_id=job.started_by,
                examiner=job.started_by_name, role="admin",
                purpose=f"de-duplication {job.job_id} of {gallery}/{subject}: {job.purpose}",
                galleries=(target.name,), gallery_sizes={target.name: searched}, searched_subjects=searched,
                candidates=tuple(
                    CandidateRecord(p.subject_b, p.gallery_b, p.score, fusion.fpir(p.score, searched), True, dict(p.modality_scores))
                    for p in pairs
                ),
                probe_modalities=(), probe_has_image=(),
            )
            try:
                self.store.put_search(to_stored(record), {})
            except AlreadyExists:  # written before a restart
                continue


def _after(subjects: Sequence[str], cursor: str) -> int:
    """Index of the first subject after the cursor in the sorted list."""
    import bisect

    return bisect.bisect_right(subjects, cursor) if cursor else 0


_STATE_NAMES = {RUNNING: "running", DONE: "done", FAILED: "failed", CANCELLED: "cancelled"}


def pair_search_id(job: DedupJobRecord, pair: DedupPairRecord) -> str:
    """The search record a pair is adjudicated in (once the run is DONE)."""
    return search_id_for(job.job_id, pair.gallery_a, pair.subject_a)



