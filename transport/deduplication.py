"""De-duplication runs as the RPCs see them: protobuf in, ``matcher.deduplication`` calls, protobuf out.

Who may call each RPC is ``transport.auth.ROLES``; errors are the library's typed ones, mapped to
status codes in ``transport.interceptors``.
"""

from __future__ import annotations

from collections.abc import Iterator

from matcher.deduplication import DONE, FINISHED, Deduplication, Report, pair_search_id
from matcher.store.base import DedupJobRecord, Principal
from shanakht.v1 import identity_pb2 as pb

WATCH_POLL_S = 1.0  # a watcher re-reads the run at least this often (another replica may be working on it)


def job_message(job: DedupJobRecord) -> pb.DeduplicationJob:
    return pb.DeduplicationJob(
        job_id=job.job_id, gallery=job.gallery, against=job.against, min_score=job.min_score, purpose=job.purpose,
        started_by=job.started_by_name or job.started_by, state=job.state, subjects_total=job.subjects_total,
        subjects_done=job.subjects_done, pairs_found=job.pairs_found, started_at=job.started_at, finished_at=job.finished_at,
        error=job.error,
    )


def report_message(report: Report) -> pb.DeduplicationReport:
    done = report.job.state == DONE
    return pb.DeduplicationReport(
        job=job_message(report.job),
        pairs=[
            pb.DuplicatePair(
                subject_a=p.subject_a, gallery_a=p.gallery_a, subject_b=p.subject_b, gallery_b=p.gallery_b, score=p.score,
                modality_scores=p.modality_scores, search_id=pair_search_id(report.job, p) if done else "",
            )
            for p in report.pairs
        ],
        clusters=[pb.DuplicateCluster(members=list(c.members), max_score=c.max_score) for c in report.clusters],
    )


class DeduplicationService:
    """The five de-duplication RPCs over one ``Deduplication``."""

    def __init__(self, runs: Deduplication) -> None:
        self.runs = runs

    def start(self, request: pb.StartDeduplicationRequest, principal: Principal) -> pb.DeduplicationJob:
        job = self.runs.start(request.gallery, request.against, request.min_score, request.purpose, principal.key_id, principal.name)
        return job_message(job)

    def cancel(self, request: pb.DeduplicationJobRequest) -> pb.DeduplicationJob:
        return job_message(self.runs.cancel(request.job_id))

    def list(self) -> pb.ListDeduplicationJobsResponse:
        return pb.ListDeduplicationJobsResponse(jobs=[job_message(j) for j in self.runs.jobs()])

    def report(self, request: pb.DeduplicationJobRequest) -> pb.DeduplicationReport:
        return report_message(self.runs.report(request.job_id))

    def watch(self, request: pb.DeduplicationJobRequest, active) -> Iterator[pb.DeduplicationJob]:
        """The run now, then each time it changes, until it finishes or the caller leaves (``active()`` false)."""
        job = self.runs.get(request.job_id)
        yield job_message(job)
        while job.state not in FINISHED and active():
            latest = self.runs.watch(job.job_id, WATCH_POLL_S)
            if latest != job:
                job = latest
                yield job_message(job)
